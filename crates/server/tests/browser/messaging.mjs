// Secure messages in Debian's Chromium, between three browsers: a patient (A), their
// clinician (B), and the same clinician in a second browser (C), which becomes a second
// device of theirs. Each browser makes its own keys and registers them; messages are
// sealed in one browser and opened in the others.
//
// Phase 1: B and C sign in (each registers a device). A signs in, starts a conversation
// with the clinician from their care team and sends a message carrying a marker, with a
// file. B's and C's inboxes show the conversation, then its unread message, as they arrive
// (over the event stream, without reloading); each opens and decrypts it, and decrypts the
// file and saves it: the bytes are the file's. B files the message to the chart. C answers;
// A, in the conversation, sees the answer arrive and "Seen" under their message. Then the script prints its first JSON line and waits for a line on stdin.
//
// Phase 2, once the test has written a device for the clinician straight into Haven's
// database (so no audit entry publishes it): A reloads the conversation and is warned that
// the clinician's device is not in the transparency log; A's next message withholds it
// (the request names it in `withheld_devices` and seals no key to it) and still reaches B.
// C's account page flags that device among the clinician's own. Then C removes itself from
// the clinician's devices: it says so and is set up again with new keys, the patient is
// told of the clinician's new device with its safety number, and C reads what is sent from
// then on, not what was sealed to its old keys.
//
// Input (environment): HAVEN_URL, HAVEN_PASSWORD, HAVEN_PATIENT_LOGIN,
// HAVEN_CLINICIAN_LOGIN, HAVEN_CLINICIAN_TOTP (base32), HAVEN_TOTP_STEP_MIN, HAVEN_MARKER
// (planted in the messages and the file), HAVEN_SCREENSHOTS. On stdin, between the phases:
// one JSON line `{ "spy": "<device id>", "label": "<its label>" }`. Output: one JSON line
// per phase.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { currentStep, describeFailure, env, heading as waitForHeading, launch, screenshotter, totp, watchedPage } from './harness.mjs';

const url = env('HAVEN_URL');
const password = env('HAVEN_PASSWORD');
const patientLogin = env('HAVEN_PATIENT_LOGIN');
const clinicianLogin = env('HAVEN_CLINICIAN_LOGIN');
const clinicianSecret = env('HAVEN_CLINICIAN_TOTP');
const stepMin = Number(env('HAVEN_TOTP_STEP_MIN'));
const marker = env('HAVEN_MARKER');
const screenshots = env('HAVEN_SCREENSHOTS');

const origin = new URL(url).origin;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Lines from the test, read one at a time. */
const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

let lastStep = stepMin - 1;
/** A code Haven accepts now (it allows one step of drift) that has not been used. */
async function nextCode() {
  const step = Math.max(lastStep + 1, currentStep());
  while (step > currentStep() + 1) await sleep(1000);
  lastStep = step;
  return totp(clinicianSecret, step);
}

/** What the event stream brought each page: the types of the events, in order. */
function watchEvents(page, into) {
  page.on('websocket', (socket) => {
    if (!socket.url().endsWith('/api/v1/events')) return;
    socket.on('framereceived', (frame) => {
      try {
        into.push(JSON.parse(frame.payload).type);
      } catch {
        into.push('unreadable');
      }
    });
  });
}

async function signInClinician(page) {
  await page.goto(`${url}/sign-in`);
  await waitForHeading(page, 'Sign in to Haven');
  await page.getByLabel('Email or login').fill(clinicianLogin);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Code').fill(await nextCode());
  await page.getByRole('button', { name: 'Continue' }).click();
  await waitForHeading(page, 'Patients');
}

/** Waits on the account page until this browser's device is registered; its safety number. */
async function registeredDevice(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account' }).click();
  await waitForHeading(page, 'Your account');
  const mine = page.getByTestId('message-devices').getByRole('listitem').filter({ hasText: '(this browser)' });
  await mine.waitFor();
  return (await mine.locator('code.safety-number').innerText()).trim();
}

async function openMessages(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: /^Messages/ }).click();
  await waitForHeading(page, 'Messages');
}

/** Saves the attachment named `name` from the message list, and reads the saved bytes. */
async function download(page, name) {
  const [saved] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: `Download ${name}` }).first().click(),
  ]);
  return { name: saved.suggestedFilename(), bytes: readFileSync(await saved.path()) };
}

const out = { events: { patient: [], desk: [], laptop: [] } };
const browser = await launch();
try {
  // Three browsers: separate contexts, so separate cookies and IndexedDB.
  const patient = await watchedPage(browser, origin, out);
  const desk = await watchedPage(browser, origin, out);
  const laptop = await watchedPage(browser, origin, out);
  watchEvents(patient, out.events.patient);
  watchEvents(desk, out.events.desk);
  watchEvents(laptop, out.events.laptop);
  const shootPatient = screenshotter(patient, screenshots, out);
  const shootDesk = screenshotter(desk, screenshots, out);
  const shootLaptop = screenshotter(laptop, screenshots, out);

  // The clinician at their desk, then on their laptop: two devices of theirs.
  await signInClinician(desk);
  out.deskSafetyNumber = await registeredDevice(desk);
  await signInClinician(laptop);
  out.laptopSafetyNumber = await registeredDevice(laptop);
  out.clinicianDevices = await laptop.getByTestId('message-devices').getByRole('listitem').count();
  await shootLaptop('account-devices');
  await openMessages(desk);
  await openMessages(laptop);

  // The patient writes to their clinician.
  await patient.goto(`${url}/sign-in`);
  await waitForHeading(patient, 'Sign in to Haven');
  await patient.getByLabel('Email or login').fill(patientLogin);
  await patient.getByLabel('Password').fill(password);
  await patient.getByRole('button', { name: 'Sign in', exact: true }).click();
  await waitForHeading(patient, 'Your health at a glance');
  await patient.getByTestId('home-messages').getByText('No unread messages.').waitFor();
  await registeredDevice(patient);
  await openMessages(patient);
  await patient.getByRole('link', { name: 'New conversation' }).click();
  await waitForHeading(patient, 'New conversation');
  await patient.getByRole('checkbox', { name: /^Clinician/ }).check();
  await shootPatient('messages-new');
  await patient.getByRole('button', { name: 'Start the conversation' }).click();
  await waitForHeading(patient, 'Conversation');
  await patient.getByText('No messages yet.').waitFor();
  out.threadPath = new URL(patient.url()).pathname;
  const thread = out.threadPath.split('/').pop();

  // The new conversation appears in both of the clinician's inboxes as it starts.
  const deskRow = desk.getByTestId('conversations').getByRole('listitem').first();
  await deskRow.waitFor();
  const laptopRow = laptop.getByTestId('conversations').getByRole('listitem').first();
  await laptopRow.waitFor();
  // Marks on the pages that a reload would wipe: what arrives, arrives live.
  await desk.evaluate(() => (window.journeyMark = 'desk'));
  await laptop.evaluate(() => (window.journeyMark = 'laptop'));

  const text = `My rash is spreading, photo attached ${marker}`;
  const file = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.from(`rash photo, day 3 ${marker}\n`),
    Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251)),
  ]);
  await patient.getByLabel('Message', { exact: true }).fill(text);
  await patient.getByLabel('Attach a file (optional)').setInputFiles({ name: 'rash.png', mimeType: 'image/png', buffer: file });
  await patient.getByRole('button', { name: 'Send' }).click();
  await patient.getByTestId('messages').getByText(text).waitFor();
  out.patientSees = await patient.getByTestId('messages').innerText();

  // Both inboxes show it unread as it arrives (unread is the clinician's, not a device's:
  // reading it in one browser reads it in both, so they are looked at before either opens it).
  await deskRow.getByTestId('unread-badge').waitFor();
  await laptopRow.getByTestId('unread-badge').waitFor();
  out.deskUnread = await deskRow.innerText();
  out.deskNavigation = await desk.getByRole('navigation', { name: 'Main' }).innerText();
  await shootDesk('messages-inbox');
  out.liveWithoutReload = {
    desk: await desk.evaluate(() => window.journeyMark),
    laptop: await laptop.evaluate(() => window.journeyMark),
  };
  // Each opens it, and decrypts it in its own browser.
  for (const [name, page, row] of [
    ['desk', desk, deskRow],
    ['laptop', laptop, laptopRow],
  ]) {
    await row.getByRole('link').click();
    await waitForHeading(page, 'Conversation');
    await page.getByTestId('messages').getByText(text).waitFor();
    out[`${name}Sees`] = await page.getByTestId('messages').innerText();
  }

  // Both decrypt the file in the browser and save it: the same bytes the patient sent.
  for (const [name, page] of [
    ['desk', desk],
    ['laptop', laptop],
  ]) {
    const saved = await download(page, 'rash.png');
    out[`${name}Download`] = { name: saved.name, size: saved.bytes.length, same: saved.bytes.equals(file) };
  }

  // The clinician files the message to the chart, from the desk.
  await desk.getByRole('button', { name: 'File to chart' }).click();
  await desk.getByText(/^Filed to chart/).waitFor();
  out.filed = await desk.getByText(/^Filed to chart/).innerText();
  await shootDesk('messages-filed');

  // The answer, from the laptop; the patient sees it, and that their message was seen.
  const answer = `Thank you, it looks like contact dermatitis ${marker}`;
  await laptop.getByLabel('Message', { exact: true }).fill(answer);
  await laptop.getByRole('button', { name: 'Send' }).click();
  await laptop.getByTestId('messages').getByText(answer).waitFor();
  await patient.getByTestId('messages').getByText(answer).waitFor();
  await patient.getByTestId('seen').waitFor();
  out.seenUnder = await patient.getByTestId('messages').getByRole('listitem').filter({ has: patient.getByTestId('seen') }).innerText();
  out.patientThread = await patient.getByTestId('messages').innerText();
  out.patientWith = await patient.getByTestId('thread-with').innerText();
  await shootPatient('messages-thread');
  await patient.getByRole('button', { name: 'Show the devices' }).click();
  out.safetyList = await patient.getByTestId('safety-list').innerText();
  await shootPatient('messages-safety-numbers');
  await patient.getByRole('button', { name: 'Hide the devices' }).click();
  await shootLaptop('messages-thread-clinician');
  out.warningsBefore = await patient.getByTestId('withheld-warning').count();

  console.log(JSON.stringify({ phase: 'first', ...out }));
  const next = await stdin.next();
  if (next.done) throw new Error('the test sent nothing for the second phase');
  const { spy, label } = JSON.parse(next.value);

  // Phase 2: a device Haven's log never published. The patient's browser finds it out.
  const sent = [];
  patient.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === `/api/v1/threads/${thread}/messages`) {
      sent.push(JSON.parse(request.postData() ?? '{}'));
    }
  });
  await patient.reload();
  await waitForHeading(patient, 'Conversation');
  const warning = patient.getByTestId('withheld-warning');
  await warning.waitFor();
  out.withheldWarning = await warning.innerText();
  await shootPatient('messages-withheld');
  const after = `Only for my care team ${marker}`;
  await patient.getByLabel('Message', { exact: true }).fill(after);
  await patient.getByRole('button', { name: 'Send' }).click();
  await patient.getByTestId('messages').getByText(after).waitFor();
  await desk.getByTestId('messages').getByText(after).waitFor();
  out.deskSeesAfter = true;
  out.spy = spy;
  out.spyNamed = out.withheldWarning.includes(label);
  out.deskLiveAfter = await desk.evaluate(() => window.journeyMark ?? null);

  // The laptop is removed from the clinician's devices (from itself): it says so, and is
  // set up again with new keys. The patient is told of the new device, with its number.
  await laptop.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account' }).click();
  await waitForHeading(laptop, 'Your account');
  // The clinician's own list flags the device they never added.
  const spyRow = laptop.getByTestId('message-devices').getByRole('listitem').filter({ hasText: label });
  await spyRow.waitFor();
  out.accountSpyRow = await spyRow.innerText();
  const thisLaptop = laptop.getByTestId('message-devices').getByRole('listitem').filter({ hasText: '(this browser)' });
  await thisLaptop.getByRole('button', { name: /^Remove/ }).click();
  await laptop.getByTestId('device-removed').waitFor();
  out.removedNotice = await laptop.getByTestId('device-removed').innerText();
  await shootLaptop('account-device-removed');
  await laptop.getByRole('button', { name: 'Set up this browser again' }).click();
  await laptop.getByTestId('device-removed').waitFor({ state: 'detached' });
  await thisLaptop.waitFor();
  out.newLaptopSafetyNumber = (await thisLaptop.locator('code.safety-number').innerText()).trim();
  const notice = patient.getByTestId('new-devices');
  await notice.waitFor();
  out.newDeviceNotice = await notice.innerText();
  await shootPatient('messages-new-device');
  await notice.getByRole('button', { name: /^I have noted/ }).click();
  await notice.waitFor({ state: 'detached' });
  // The new keys cannot open what was sealed to the old ones.
  await openMessages(laptop);
  await laptop.getByTestId('conversations').getByRole('link').first().click();
  await waitForHeading(laptop, 'Conversation');
  await laptop.getByTestId('messages').getByText(/^Sent before this browser was set up/).first().waitFor();
  const last = `Thank you both ${marker}`;
  await patient.getByLabel('Message', { exact: true }).fill(last);
  await patient.getByRole('button', { name: 'Send' }).click();
  await laptop.getByTestId('messages').getByText(last).waitFor();
  out.laptopAfterSetUpAgain = await laptop.getByTestId('messages').innerText();
  out.sentRequests = sent.map((body) => ({
    keys: body.keys.map((k) => k.device),
    withheld: body.withheld_devices,
  }));
  console.log(JSON.stringify({ phase: 'second', ...out }));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  stdin.return?.();
  process.stdin.destroy();
  await browser.close();
}
