// The care team's journey through Haven's web app, in Debian's Chromium: a clinician signs
// in with password and code, adds a passkey (Chromium's virtual authenticator), signs out
// and back in with the passkey alone, finds a patient in their care, opens the chart and
// writes a note, accepting the patient's correction request on the way; then finds a patient
// outside their care and breaks the glass. In a second
// browser, the privacy officer signs in and finds that break-the-glass in the review queue,
// marks it justified, and finds it again in the audit log (whose checkpoint signature the
// page checks), sorted and exported as CSV.
//
// Input (environment): HAVEN_URL, HAVEN_PASSWORD, HAVEN_CLINICIAN_LOGIN,
// HAVEN_CLINICIAN_TOTP, HAVEN_OFFICER_LOGIN, HAVEN_OFFICER_TOTP (base32 secrets),
// HAVEN_TOTP_STEP_MIN (the first time step whose code neither has used yet), HAVEN_CARED and
// HAVEN_STRANGER (family names), HAVEN_NOTE (a note's text), HAVEN_CORRECTION (what the
// pending correction request asks for), HAVEN_REASON (why the glass is broken),
// HAVEN_SCREENSHOTS. Output: one JSON object.
import { readFileSync } from 'node:fs';
import {
  currentStep,
  describeFailure,
  env,
  heading as waitForHeading,
  JOURNAL_LISTS,
  launch,
  screenshotter,
  totp,
  watchedPage,
} from './harness.mjs';

const url = env('HAVEN_URL');
const password = env('HAVEN_PASSWORD');
const clinician = { login: env('HAVEN_CLINICIAN_LOGIN'), secret: env('HAVEN_CLINICIAN_TOTP') };
const officer = { login: env('HAVEN_OFFICER_LOGIN'), secret: env('HAVEN_OFFICER_TOTP') };
const stepMin = Number(env('HAVEN_TOTP_STEP_MIN'));
const cared = env('HAVEN_CARED');
const stranger = env('HAVEN_STRANGER');
const note = env('HAVEN_NOTE');
const correction = env('HAVEN_CORRECTION');
const reason = env('HAVEN_REASON');
const screenshots = env('HAVEN_SCREENSHOTS');

const origin = new URL(url).origin;
const out = {};
const browser = await launch();

async function signInWithPassword(page, who) {
  await page.goto(`${url}/sign-in`);
  await waitForHeading(page, 'Sign in to Haven');
  await page.getByLabel('Email or login').fill(who.login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Code').fill(totp(who.secret, Math.max(stepMin, currentStep())));
  await page.getByRole('button', { name: 'Continue' }).click();
}

async function openPatient(page, family) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Patients' }).click();
  await waitForHeading(page, 'Patients');
  await page.getByLabel('Family name').fill(family);
  await page.getByRole('button', { name: 'Search' }).click();
  const found = page.getByRole('region', { name: /patients? found/ }).getByRole('listitem').filter({ hasText: family });
  await found.first().waitFor();
  const listed = await found.first().innerText();
  await found.first().getByRole('link').click();
  return listed;
}

try {
  const page = await watchedPage(browser, origin, out);
  const shoot = screenshotter(page, screenshots, out);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      ctap2Version: 'ctap2_1',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  // Password and code, then a passkey for next time.
  await signInWithPassword(page, clinician);
  await waitForHeading(page, 'Patients');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account' }).click();
  await waitForHeading(page, 'Your account');
  await page.getByLabel('Name for a new passkey').fill('test laptop');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await page.getByTestId('passkeys').getByText('test laptop').waitFor();
  await shoot('account');
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await waitForHeading(page, 'Sign in to Haven');
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await waitForHeading(page, 'Patients');
  out.passkeySignIn = new URL(page.url()).pathname;
  const myPatients = page.getByRole('region', { name: 'My patients' });
  await myPatients.getByRole('link').first().waitFor();
  out.myPatients = await myPatients.innerText();
  await page.getByTestId('pending-requests').waitFor();
  out.pendingRequests = await page.getByTestId('pending-requests').innerText();
  await page.getByTestId('schedule').waitFor();
  out.schedule = await page.getByTestId('schedule').innerText();
  await shoot('workspace');

  // A patient in the clinician's care: the chart, and a note written in it.
  out.caredListed = await openPatient(page, cared);
  await page.getByRole('heading', { level: 1, name: new RegExp(cared) }).waitFor();
  // The title is set just after the page is drawn: wait for the workspace's to be gone.
  await page.waitForFunction(() => !document.title.startsWith('Patients'));
  out.chartWindowTitle = await page.title();
  // The vital signs over time, as the chart describes them to a screen reader.
  const vitals = page.getByTestId('vitals-charts').getByRole('img').first();
  await vitals.waitFor();
  out.vitalsChart = await vitals.getAttribute('aria-label');
  // The patient's correction request waits in the chart; accepting adds it to the record.
  const pending = page.getByTestId('pending-corrections').getByRole('listitem').filter({ hasText: correction });
  await pending.first().waitFor();
  await shoot('chart-correction-request');
  await pending.first().getByRole('button', { name: 'Accept: add the correction to the record' }).click();
  await page.getByRole('heading', { name: 'Correction requests from the patient' }).waitFor({ state: 'detached' });
  out.correctionAccepted = true;
  await page.getByLabel('Title').fill('Follow-up');
  await page.getByLabel('Note', { exact: true }).fill(note);
  await page.getByRole('button', { name: 'Save note' }).click();
  await page.locator('.note-text', { hasText: note }).waitFor();
  out.noteShown = true;
  await shoot('chart');

  // A stranger: the chart is closed until the glass is broken, with a reason.
  out.strangerListed = await openPatient(page, stranger);
  await waitForHeading(page, 'Chart closed');
  await shoot('break-glass');
  await page.getByLabel('Why do you need this chart now?').fill(reason);
  await page.getByRole('button', { name: 'Break the glass and open the chart' }).click();
  await page.getByRole('heading', { level: 1, name: new RegExp(stranger) }).waitFor();
  out.breakGlassBanner = await page.getByTestId('break-glass-banner').innerText();
  await shoot('chart-break-glass');

  // The privacy officer, in another browser, reviews it.
  const officerOut = {};
  const review = await watchedPage(browser, origin, officerOut);
  const shootReview = screenshotter(review, screenshots, officerOut);
  await signInWithPassword(review, officer);
  await waitForHeading(review, 'Break-the-glass review');
  const queued = review.getByTestId('break-glass-queue').getByRole('listitem').filter({ hasText: reason });
  await queued.first().waitFor();
  out.queued = await queued.count();
  out.queuedText = await queued.first().innerText();
  await shootReview('privacy-review-queue');
  await queued.first().getByRole('button', { name: 'Justified', exact: true }).click();
  await review.getByText('Nothing waits for review.').waitFor();
  out.reviewed = true;

  // The audit log: its checkpoint checked in the browser, the break-the-glass found by
  // action, sorted by a column, and exported as CSV.
  await review.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit log' }).click();
  await waitForHeading(review, 'Audit log');
  const status = review.getByTestId('checkpoint-status');
  await status.waitFor();
  out.checkpointStatus = await status.innerText();
  await review.getByRole('button', { name: 'Verify the whole log now' }).click();
  await review.getByTestId('last-verification').getByText(/the log is intact/).waitFor();
  out.lastVerification = await review.getByTestId('last-verification').innerText();
  await review.getByLabel('Action').selectOption('break_glass');
  await review.getByRole('button', { name: 'Search', exact: true }).click();
  // The filtered answer replaces the unfiltered one: wait until every row is the action.
  await review.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="audit-table"] tbody tr')];
    return rows.length > 0 && rows.every((row) => row.textContent.includes('break_glass'));
  });
  const rows = review.getByTestId('audit-table').locator('tbody tr');
  out.breakGlassRows = await rows.count();
  out.breakGlassRow = await rows.first().innerText();
  await review.getByRole('button', { name: 'Who', exact: true }).click();
  await review.locator('th[aria-sort="ascending"]', { hasText: 'Who' }).waitFor();
  await shootReview('privacy-audit-log');
  const [download] = await Promise.all([
    review.waitForEvent('download'),
    review.getByRole('link', { name: 'Export as CSV' }).click(),
  ]);
  out.csv = readFileSync(await download.path(), 'utf8');
  for (const list of JOURNAL_LISTS) out[list].push(...officerOut[list]);
  console.log(JSON.stringify(out));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  await browser.close();
}
