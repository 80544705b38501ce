// Video visits in Debian's Chromium: each person in a browser context of their own (their
// own cookies, IndexedDB and device keys), with Chromium's fake camera and microphone.
// Which journey runs is HAVEN_JOURNEY:
//
// `visit`: a patient and their clinician. The patient joins and waits: no call on their
// page, no peer in its statistics. The clinician starts the visit, sees the patient in the
// lobby and admits them. Both decode each other's video; the frames leaving each browser
// are SFrame-sealed (they open with the sender's current key and not with a random one),
// and the frame encryption sealed at least as many frames as the connections sent;
// each names the other's device as checked against the transparency log. The clinician
// sends a chat line carrying the marker, which the patient reads. The clinician ends the
// visit for everyone: both pages say so, and reopening the visit says it has ended.
//
// `relay`: the patient, their clinician and a nurse of their care team (a second host),
// every page with `?relay=only`, so all media goes through the TURN relay. Everyone decodes
// both others, relayed. The nurse leaves: the two others see the nurse's tile go, and keep
// decoding each other after they rotated their keys (longer than the old keys' grace).
//
// `admission`: another patient opening this patient's visit is refused (no join button);
// the patient opening a visit booked hours ahead is told it is not open yet; declined, the
// patient is told so; admitted and then ended by the clinician, the patient is told so, and
// can neither see a join button again nor open the visit's socket.
//
// `guest-recording`: the clinician invites an interpreter with a link; the guest (no
// account) opens it in a browser of their own, waits, and is admitted; everyone decodes
// everyone, and the clinician's page names the guest's device as made for the visit. The
// clinician asks to record; the patient and the guest each agree on their page; the
// clinician records a few seconds, stops and files it; then writes the visit's note.
//
// Input (environment): HAVEN_URL, HAVEN_PASSWORD, HAVEN_JOURNEY, HAVEN_VISIT (the
// appointment's id), HAVEN_PATIENT_LOGIN, HAVEN_CLINICIAN_LOGIN, HAVEN_CLINICIAN_TOTP
// (base32), HAVEN_TOTP_STEP_MIN, HAVEN_SCREENSHOTS; for `visit`, HAVEN_MARKER; for `relay`,
// HAVEN_NURSE_LOGIN and HAVEN_NURSE_TOTP; for `admission`, HAVEN_OTHER_PATIENT_LOGIN and
// HAVEN_LATER_VISIT. Output: one JSON line, the journal of what the pages showed and did.
import { currentStep, describeFailure, env, heading as waitForHeading, launch, screenshotter, totp, watchedPage } from './harness.mjs';

const url = env('HAVEN_URL');
const password = env('HAVEN_PASSWORD');
const journey = env('HAVEN_JOURNEY');
const visit = env('HAVEN_VISIT');
const patientLogin = env('HAVEN_PATIENT_LOGIN');
const clinicianLogin = env('HAVEN_CLINICIAN_LOGIN');
const clinicianSecret = env('HAVEN_CLINICIAN_TOTP');
const stepMin = Number(env('HAVEN_TOTP_STEP_MIN'));
const screenshots = env('HAVEN_SCREENSHOTS');

const origin = new URL(url).origin;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long a call may take to carry video both ways, on a loaded two-core machine. */
const MEDIA_WAIT_MS = 60_000;
/** How long a page may take to show what the room told it (a lobby, an ending). */
const ROOM_WAIT_MS = 20_000;
/** How often the call's statistics are read while waiting. */
const POLL_MS = 500;
/** The camera width the visit page asks for (`getUserMedia` in pages/visit.tsx). */
const CAMERA_WIDTH = 640;

/** Chromium's generated camera and microphone, with their permission prompt answered yes. */
const FAKE_MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** The last TOTP step used per secret: Haven refuses a code used before. */
const lastSteps = new Map();
/** A code Haven accepts now (it allows one step of drift) that has not been used. */
async function nextCode(secret) {
  const step = Math.max((lastSteps.get(secret) ?? stepMin - 1) + 1, currentStep());
  while (step > currentStep() + 1) await sleep(1000);
  lastSteps.set(secret, step);
  return totp(secret, step);
}

async function signInStaff(page, login, secret) {
  await page.goto(`${url}/sign-in`);
  await waitForHeading(page, 'Sign in to Haven');
  await page.getByLabel('Email or login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Code').fill(await nextCode(secret));
  await page.getByRole('button', { name: 'Continue' }).click();
  await waitForHeading(page, 'Patients');
}

async function signInPatient(page, login) {
  await page.goto(`${url}/sign-in`);
  await waitForHeading(page, 'Sign in to Haven');
  await page.getByLabel('Email or login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await waitForHeading(page, 'Your health at a glance');
}

/** Opens a visit's page (through the app's router, as its links do) and waits for it. */
async function openVisit(page, appointment, query = '') {
  await page.goto(`${url}/visits/${appointment}${query}`);
  await waitForHeading(page, 'Video visit');
}

/** Presses Join once the page has this browser's device and the log's key. */
async function join(page) {
  const button = page.getByTestId('join');
  await button.waitFor({ timeout: ROOM_WAIT_MS });
  await button.click();
}

/** `window.havenVisit.stats()`: per peer, frames decoded and whether the relay carries them. */
function stats(page) {
  return page.evaluate(() => (window.havenVisit ? window.havenVisit.stats() : null));
}

/** This page's member number in the call. */
function memberOf(page) {
  return page.evaluate(() => window.havenVisit?.snapshot()?.me ?? null);
}

/**
 * Waits until `page` decodes video from every one of `members` (and, with `relayed`, over
 * the relay), and answers its statistics and how long that took.
 */
async function untilDecoding(page, members, { relayed = false, after = {} } = {}) {
  const started = Date.now();
  let last = null;
  while (Date.now() - started < MEDIA_WAIT_MS) {
    last = await stats(page);
    const ok = members.every((member) => {
      const peer = last?.find((p) => p.member === member);
      return peer && peer.framesDecoded > (after[member] ?? 0) && (!relayed || peer.relayed);
    });
    if (ok) return { stats: last, waitedMs: Date.now() - started };
    await sleep(POLL_MS);
  }
  throw new Error(`no video from ${JSON.stringify(members)} within ${MEDIA_WAIT_MS} ms: ${JSON.stringify(last)}`);
}

/** The latest video frame `page` decoded from `member`: its size, and frames so far. */
async function frameShapeFrom(page, member) {
  const peer = (await stats(page))?.find((p) => p.member === member);
  return { width: peer?.frameWidth ?? 0, height: peer?.frameHeight ?? 0, framesDecoded: peer?.framesDecoded ?? 0 };
}

/** Waits until `page` decodes frames from `member` whose shape passes `wanted`. */
async function untilFrameShape(page, member, wanted) {
  const started = Date.now();
  let last = null;
  while (Date.now() - started < MEDIA_WAIT_MS) {
    last = await frameShapeFrom(page, member);
    if (last.width > 0 && wanted(last)) return last;
    await sleep(POLL_MS);
  }
  throw new Error(`no frames of the expected shape from ${member} within ${MEDIA_WAIT_MS} ms: ${JSON.stringify(last)}`);
}

/** Frames decoded from `member`, by `page`. */
async function decodedFrom(page, member) {
  return (await stats(page))?.find((p) => p.member === member)?.framesDecoded ?? 0;
}

/** The page's check of its own outgoing frames. */
function probe(page, count) {
  return page.evaluate((n) => window.havenVisit.probe(n), count);
}

/**
 * The page's account of its outgoing frames: how many its connections sent and how many
 * its frame encryption sealed. Every frame sent was sealed when `framesSealed >= framesSent`
 * (a probe alone cannot tell: it sees only the frames that pass through the encryption).
 */
function sealing(page) {
  return page.evaluate(() => window.havenVisit.sealing());
}

/** The safety number this browser shows for itself in the call's key holders. */
async function ownSafetyNumber(page) {
  return (await page.getByTestId('key-holders').getByRole('listitem').first().locator('code').innerText()).trim();
}

/** Waits for the lobby to list someone waiting, and admits (or declines) them. */
async function answerLobby(page, button) {
  const lobby = page.getByTestId('lobby');
  await lobby.getByRole('listitem').first().waitFor({ timeout: ROOM_WAIT_MS });
  const text = await lobby.innerText();
  await lobby.getByRole('button', { name: button }).first().click();
  return text;
}

/**
 * Tries the visit's signaling socket from the page: whether it opened, and how it closed.
 * Chromium logs the refused handshake as a console error: that one is this check's own
 * doing, so it is taken off the journal's errors.
 */
async function trySocket(page, appointment) {
  const errorsBefore = out.consoleErrors.length;
  const result = await page.evaluate(
    (id) =>
      new Promise((resolve) => {
        const socket = new WebSocket(`${location.origin.replace('http', 'ws')}/api/v1/visits/${id}/signal`);
        let opened = false;
        socket.onopen = () => (opened = true);
        socket.onclose = (event) => resolve({ opened, code: event.code, reason: event.reason });
      }),
    appointment,
  );
  // The console message may come a moment after the close event.
  await sleep(200);
  const added = out.consoleErrors.splice(errorsBefore);
  result.consoleErrors = added;
  out.consoleErrors.push(...added.filter((text) => !/^WebSocket connection to '.*\/signal' failed/.test(text)));
  return result;
}

const out = { journey, timings: {} };
const started = Date.now();
const mark = (name) => (out.timings[name] = Date.now() - started);
const browser = await launch(FAKE_MEDIA);
try {
  if (journey === 'visit') await twoPersonVisit();
  else if (journey === 'relay') await threePersonVisitThroughTheRelay();
  else if (journey === 'admission') await admission();
  else if (journey === 'guest-recording') await guestAndRecording();
  else throw new Error(`no journey ${journey}`);
  console.log(JSON.stringify(out));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  await browser.close();
}

async function twoPersonVisit() {
  const marker = env('HAVEN_MARKER');
  const patient = await watchedPage(browser, origin, out);
  const clinician = await watchedPage(browser, origin, out);
  const shootPatient = screenshotter(patient, screenshots, out);
  const shootClinician = screenshotter(clinician, screenshots, out);
  // What crossed Haven's signaling socket, both ways, as Haven saw it: the kinds of what
  // was relayed, and whether the marker was ever there in the clear.
  out.relayedKinds = [];
  out.markerOnTheWire = 0;
  for (const page of [patient, clinician]) {
    page.on('websocket', (socket) => {
      if (!socket.url().includes('/signal')) return;
      const look = (frame) => {
        if (String(frame.payload).includes(marker)) out.markerOnTheWire += 1;
        try {
          const kind = JSON.parse(frame.payload).kind;
          if (kind && !out.relayedKinds.includes(kind)) out.relayedKinds.push(kind);
        } catch {
          // Not JSON: counted above all the same.
        }
      };
      socket.on('framesent', look);
      socket.on('framereceived', look);
    });
  }

  // The patient arrives first, from the link on their home page.
  await signInPatient(patient, patientLogin);
  const link = patient.getByRole('link', { name: 'Join video visit' });
  await link.waitFor();
  out.homeLink = await link.getAttribute('href');
  await link.click();
  await waitForHeading(patient, 'Video visit');
  await shootPatient('visit-before-joining');
  await join(patient);
  await patient.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  mark('patientWaiting');
  out.waitingRoom = await patient.getByTestId('waiting-room').innerText();
  // Waiting, the patient has no call and no peer: nothing of the call reaches them.
  out.callWhileWaiting = await patient.getByTestId('call').count();
  out.statsWhileWaiting = await stats(patient);
  await shootPatient('visit-waiting-room');

  // The clinician starts the visit from their schedule's link, and admits the patient.
  await signInStaff(clinician, clinicianLogin, clinicianSecret);
  const start = clinician.getByRole('link', { name: 'Start video visit' });
  await start.waitFor();
  out.scheduleLink = await start.getAttribute('href');
  await start.click();
  await waitForHeading(clinician, 'Video visit');
  await join(clinician);
  await clinician.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  await clinician.getByTestId('lobby').getByRole('listitem').first().waitFor({ timeout: ROOM_WAIT_MS });
  await shootClinician('visit-lobby');
  out.lobby = await answerLobby(clinician, 'Admit');
  mark('admitted');
  await patient.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });

  const patientMember = await memberOf(patient);
  const clinicianMember = await memberOf(clinician);
  out.members = { patient: patientMember, clinician: clinicianMember };
  const seenByPatient = await untilDecoding(patient, [clinicianMember]);
  const seenByClinician = await untilDecoding(clinician, [patientMember]);
  mark('videoBothWays');
  out.patientStats = seenByPatient.stats;
  out.clinicianStats = seenByClinician.stats;
  await clinician.getByTestId(`peer-${patientMember}`).waitFor();
  await patient.getByTestId(`peer-${clinicianMember}`).waitFor();

  // What leaves each browser is sealed under its current key.
  out.patientProbe = await probe(patient, 10);
  out.clinicianProbe = await probe(clinician, 10);
  out.patientSealing = await sealing(patient);
  out.clinicianSealing = await sealing(clinician);
  mark('probed');

  // Each names the other's device, checked, with the safety number the other shows itself.
  await patient.getByTestId('key-holders').getByText('device checked against the transparency log').waitFor({ timeout: ROOM_WAIT_MS });
  await clinician.getByTestId('key-holders').getByText('device checked against the transparency log').waitFor({ timeout: ROOM_WAIT_MS });
  out.patientKeyHolders = await patient.getByTestId('key-holders').innerText();
  out.clinicianKeyHolders = await clinician.getByTestId('key-holders').innerText();
  out.patientSafetyNumber = await ownSafetyNumber(patient);
  out.clinicianSafetyNumber = await ownSafetyNumber(clinician);
  out.deviceWarnings = (await patient.getByTestId('device-warning').count()) + (await clinician.getByTestId('device-warning').count());

  // A chat line, sealed to the patient's device.
  const line = `Please hold the rash up to the camera ${marker}`;
  const chat = clinician.getByRole('region', { name: 'Chat' });
  await chat.getByLabel('Message').fill(line);
  await chat.getByRole('button', { name: 'Send' }).click();
  await patient.getByTestId('chat').getByText(line).waitFor({ timeout: ROOM_WAIT_MS });
  out.patientChat = await patient.getByTestId('chat').innerText();
  out.clinicianChat = await clinician.getByTestId('chat').innerText();
  await shootPatient('visit-in-call-patient');
  await shootClinician('visit-in-call-clinician');

  // The clinician shares their screen in place of the camera, then takes it back. The
  // patient is told, and decodes the screen (1280 px wide; the page asks the camera for 640,
  // and the sender may send less while the bandwidth estimate grows) through the same sealed
  // sender.
  out.screenShare = { camera: await frameShapeFrom(patient, clinicianMember) };
  await clinician.getByRole('button', { name: 'Share screen' }).click();
  await patient.getByTestId(`peer-${clinicianMember}`).getByText('sharing their screen').waitFor({ timeout: ROOM_WAIT_MS });
  out.screenShare.sharing = await untilFrameShape(patient, clinicianMember, (shape) => shape.width > CAMERA_WIDTH);
  out.screenShare.probe = await probe(clinician, 10);
  await shootPatient('visit-screen-shared');
  await clinician.getByRole('button', { name: 'Stop sharing' }).click();
  await patient.getByTestId(`peer-${clinicianMember}`).getByText('sharing their screen').waitFor({ state: 'detached', timeout: ROOM_WAIT_MS });
  out.screenShare.after = await untilFrameShape(patient, clinicianMember, (shape) => shape.width <= CAMERA_WIDTH);
  mark('screenShared');

  // The clinician ends the visit for everyone.
  await clinician.getByRole('button', { name: 'End visit for everyone' }).click();
  for (const [name, page] of [
    ['patient', patient],
    ['clinician', clinician],
  ]) {
    const ended = page.getByTestId('visit-ended');
    await ended.waitFor({ timeout: ROOM_WAIT_MS });
    out[`${name}Ended`] = { phase: await ended.getAttribute('data-phase'), text: await ended.innerText() };
  }
  mark('ended');
  await shootPatient('visit-ended');
  // Reopened, the visit says it has ended, and offers no way back in.
  for (const [name, page] of [
    ['patient', patient],
    ['clinician', clinician],
  ]) {
    await openVisit(page, visit);
    const closed = page.getByTestId('visit-closed');
    await closed.waitFor({ timeout: ROOM_WAIT_MS });
    out[`${name}Reopened`] = { state: await closed.getAttribute('data-state'), text: await closed.innerText(), join: await page.getByTestId('join').count() };
  }
  await shootPatient('visit-closed-ended');
}

async function threePersonVisitThroughTheRelay() {
  const nurseLogin = env('HAVEN_NURSE_LOGIN');
  const nurseSecret = env('HAVEN_NURSE_TOTP');
  const patient = await watchedPage(browser, origin, out);
  const clinician = await watchedPage(browser, origin, out);
  const nurse = await watchedPage(browser, origin, out);
  const shootPatient = screenshotter(patient, screenshots, out);
  const shootNurse = screenshotter(nurse, screenshots, out);
  // Every candidate each browser gathers (with `?relay=only`, relay candidates alone), and
  // the media keys each seals to whom: the key id is the one clear field of a sealed key.
  out.candidateTypes = [];
  out.keysSent = { patient: [], clinician: [], nurse: [] };
  for (const [name, page] of Object.entries({ patient, clinician, nurse })) {
    page.on('websocket', (socket) => {
      if (!socket.url().includes('/signal')) return;
      socket.on('framesent', (frame) => {
        try {
          const sent = JSON.parse(frame.payload);
          if (sent.kind === 'key') out.keysSent[name].push({ to: sent.to, id: JSON.parse(sent.payload).id });
          if (sent.kind !== 'candidate') return;
          const candidate = JSON.parse(sent.payload).candidate ?? '';
          const type = / typ (\w+)/.exec(candidate)?.[1];
          if (type) out.candidateTypes.push(type);
        } catch {
          // Not JSON: nothing of ours.
        }
      });
    });
  }

  await signInStaff(clinician, clinicianLogin, clinicianSecret);
  await signInStaff(nurse, nurseLogin, nurseSecret);
  await signInPatient(patient, patientLogin);
  mark('signedIn');

  await openVisit(clinician, visit, '?relay=only');
  await join(clinician);
  await clinician.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  await openVisit(patient, visit, '?relay=only');
  await join(patient);
  await patient.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  await answerLobby(clinician, 'Admit');
  await patient.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  // The nurse, a host too, goes straight in.
  await openVisit(nurse, visit, '?relay=only');
  await join(nurse);
  await nurse.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  mark('allIn');

  const members = {
    patient: await memberOf(patient),
    clinician: await memberOf(clinician),
    nurse: await memberOf(nurse),
  };
  out.members = members;
  const pages = { patient, clinician, nurse };
  out.decoding = {};
  for (const [name, page] of Object.entries(pages)) {
    const others = Object.entries(members)
      .filter(([other]) => other !== name)
      .map(([, member]) => member);
    const seen = await untilDecoding(page, others, { relayed: true });
    out.decoding[name] = seen.stats;
  }
  mark('allDecodingRelayed');
  out.patientKeyHolders = await patient.getByTestId('key-holders').innerText();
  await shootNurse('visit-three-nurse');
  await screenshotter(clinician, screenshots, out)('visit-three-clinician');
  out.nurseProbe = await probe(nurse, 10);
  out.sealing = {};
  for (const [name, page] of Object.entries(pages)) out.sealing[name] = await sealing(page);

  // The nurse hangs up: the others see the tile go, rotate their keys, and carry on.
  out.keysBeforeLeave = { patient: out.keysSent.patient.length, clinician: out.keysSent.clinician.length };
  await nurse.getByRole('toolbar', { name: 'Call controls' }).getByRole('button', { name: 'Leave', exact: true }).click();
  const left = nurse.getByTestId('visit-ended');
  await left.waitFor({ timeout: ROOM_WAIT_MS });
  out.nurseLeft = { phase: await left.getAttribute('data-phase'), text: await left.innerText() };
  for (const page of [patient, clinician]) {
    await page.getByTestId(`peer-${members.nurse}`).waitFor({ state: 'detached', timeout: ROOM_WAIT_MS });
  }
  mark('nurseGone');
  out.peersAfterLeave = {
    patient: (await stats(patient)).map((p) => p.member),
    clinician: (await stats(clinician)).map((p) => p.member),
  };
  // Longer than the grace (KEY_GRACE_MS, 5 s) in which the old keys still open frames in
  // flight: from then on, only the rotated keys do.
  await sleep(7_000);
  const before = {
    patient: await decodedFrom(patient, members.clinician),
    clinician: await decodedFrom(clinician, members.patient),
  };
  const afterPatient = await untilDecoding(patient, [members.clinician], { relayed: true, after: { [members.clinician]: before.patient + 10 } });
  const afterClinician = await untilDecoding(clinician, [members.patient], { relayed: true, after: { [members.patient]: before.clinician + 10 } });
  mark('decodingAfterRotation');
  out.afterRotation = {
    before,
    patient: afterPatient.stats,
    clinician: afterClinician.stats,
  };
  // What they send now is sealed under their current (rotated) key.
  out.patientProbeAfter = await probe(patient, 10);
  out.clinicianProbeAfter = await probe(clinician, 10);
  out.sealingAfter = { patient: await sealing(patient), clinician: await sealing(clinician) };
  await shootPatient('visit-after-nurse-left');
}

async function admission() {
  const otherLogin = env('HAVEN_OTHER_PATIENT_LOGIN');
  const later = env('HAVEN_LATER_VISIT');
  const patient = await watchedPage(browser, origin, out);
  const clinician = await watchedPage(browser, origin, out);
  const stranger = await watchedPage(browser, origin, out);
  const shootPatient = screenshotter(patient, screenshots, out);
  const shootStranger = screenshotter(stranger, screenshots, out);

  // Another patient with this patient's link: refused, with nothing to press.
  await signInPatient(stranger, otherLogin);
  await openVisit(stranger, visit);
  const refusal = stranger.getByRole('alert');
  await refusal.waitFor({ timeout: ROOM_WAIT_MS });
  out.strangerSees = await stranger.locator('main').innerText();
  out.strangerJoin = await stranger.getByTestId('join').count();
  out.strangerSocket = await trySocket(stranger, visit);
  await shootStranger('visit-not-yours');
  mark('strangerRefused');

  // A visit hours away: not open yet.
  await signInPatient(patient, patientLogin);
  await openVisit(patient, later);
  const notYet = patient.getByTestId('visit-closed');
  await notYet.waitFor({ timeout: ROOM_WAIT_MS });
  out.notOpenYet = { state: await notYet.getAttribute('data-state'), text: await notYet.innerText(), join: await patient.getByTestId('join').count() };
  await shootPatient('visit-not-open-yet');
  mark('notOpenYet');

  // Declined from the waiting room.
  await signInStaff(clinician, clinicianLogin, clinicianSecret);
  await openVisit(clinician, visit);
  await join(clinician);
  await clinician.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  await openVisit(patient, visit);
  await join(patient);
  await patient.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  await answerLobby(clinician, 'Decline');
  const declined = patient.getByTestId('visit-ended');
  await declined.waitFor({ timeout: ROOM_WAIT_MS });
  out.declined = { phase: await declined.getAttribute('data-phase'), text: await declined.innerText(), call: await patient.getByTestId('call').count() };
  await shootPatient('visit-declined');
  mark('declined');
  await clinician.getByTestId('lobby').waitFor({ state: 'detached', timeout: ROOM_WAIT_MS });

  // Trying again, admitted this time; then the clinician ends the visit.
  await openVisit(patient, visit);
  await join(patient);
  await patient.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  await answerLobby(clinician, 'Admit');
  await patient.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  await clinician.getByRole('button', { name: 'End visit for everyone' }).click();
  const ended = patient.getByTestId('visit-ended');
  await ended.waitFor({ timeout: ROOM_WAIT_MS });
  out.ended = { phase: await ended.getAttribute('data-phase'), text: await ended.innerText() };
  const endedHere = clinician.getByTestId('visit-ended');
  await endedHere.waitFor({ timeout: ROOM_WAIT_MS });
  out.clinicianEnded = await endedHere.getAttribute('data-phase');
  // No way back in: the page offers none, and Haven refuses the socket.
  await openVisit(patient, visit);
  const closed = patient.getByTestId('visit-closed');
  await closed.waitFor({ timeout: ROOM_WAIT_MS });
  out.afterEnd = { state: await closed.getAttribute('data-state'), text: await closed.innerText(), join: await patient.getByTestId('join').count() };
  out.socketAfterEnd = await trySocket(patient, visit);
  await shootPatient('visit-closed-after-end');
  mark('ended');
}

async function guestAndRecording() {
  const patient = await watchedPage(browser, origin, out);
  const clinician = await watchedPage(browser, origin, out);
  const guest = await watchedPage(browser, origin, out);
  const shootClinician = screenshotter(clinician, screenshots, out);
  const shootGuest = screenshotter(guest, screenshots, out);

  await signInStaff(clinician, clinicianLogin, clinicianSecret);
  await openVisit(clinician, visit);
  await join(clinician);
  await clinician.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  await signInPatient(patient, patientLogin);
  await openVisit(patient, visit);
  await join(patient);
  await patient.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  await answerLobby(clinician, 'Admit');
  await patient.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });

  // The clinician makes an interpreter's link; the guest opens it (no account).
  await clinician.getByLabel('Who').selectOption('interpreter');
  await clinician.getByTestId('guest-invite').click();
  const link = (await clinician.getByTestId('guest-link').innerText()).trim();
  out.guestLinkShape = link.replace(/#.*/, '#…');
  await guest.goto(link);
  await waitForHeading(guest, 'Video visit');
  // The invitation left the address bar at once.
  out.guestAddress = guest.url();
  await guest.getByTestId('guest-join').click();
  await guest.getByTestId('waiting-room').waitFor({ timeout: ROOM_WAIT_MS });
  await shootGuest('visit-guest-waiting');
  out.guestLobby = await answerLobby(clinician, 'Admit');
  await guest.getByTestId('call').waitFor({ timeout: ROOM_WAIT_MS });
  mark('guestAdmitted');

  const members = {
    patient: await memberOf(patient),
    clinician: await memberOf(clinician),
    guest: await memberOf(guest),
  };
  out.members = members;
  out.decoding = {};
  for (const [name, page] of Object.entries({ patient, clinician, guest })) {
    const others = Object.entries(members)
      .filter(([other]) => other !== name)
      .map(([, member]) => member);
    out.decoding[name] = (await untilDecoding(page, others)).stats;
  }
  mark('allDecoding');
  await clinician.getByTestId('key-holders').getByText('a guest’s device', { exact: false }).waitFor({ timeout: ROOM_WAIT_MS });
  out.clinicianKeyHolders = await clinician.getByTestId('key-holders').innerText();
  out.guestKeyHolders = await guest.getByTestId('key-holders').innerText();
  out.guestProbe = await probe(guest, 10);

  // Recording: asked, agreed by each on their own page, then started.
  await clinician.getByTestId('recording-ask-button').click();
  for (const page of [patient, guest]) {
    await page.getByTestId('recording-ask').waitFor({ timeout: ROOM_WAIT_MS });
  }
  out.startDisabledBeforeAnswers = await clinician.getByTestId('recording-start').isDisabled();
  out.askText = await patient.getByTestId('recording-ask').innerText();
  await patient.getByTestId('recording-agree').click();
  await guest.getByTestId('recording-agree').click();
  const start = clinician.getByTestId('recording-start');
  await start.and(clinician.locator(':enabled')).waitFor({ timeout: ROOM_WAIT_MS });
  await start.click();
  for (const page of [patient, clinician, guest]) {
    await page.getByTestId('recording-on').waitFor({ timeout: ROOM_WAIT_MS });
  }
  mark('recording');
  await shootGuest('visit-guest-recorded');
  await sleep(4_000);
  await clinician.getByTestId('recording-stop').click();
  await clinician.getByTestId('recording-saved').waitFor({ timeout: MEDIA_WAIT_MS });
  out.patientAfterRecording = await patient.getByTestId('recording').getAttribute('data-phase');
  mark('recordingSaved');

  // The visit's note, filed to its Encounter.
  await clinician.getByLabel('Note for the patient’s record').fill('Reviewed the rash with an interpreter; follow up in two weeks.');
  await clinician.getByTestId('visit-note-save').click();
  await clinician.getByTestId('visit-note-saved').waitFor({ timeout: ROOM_WAIT_MS });
  await shootClinician('visit-recording-and-note');
  mark('noteSaved');
}
