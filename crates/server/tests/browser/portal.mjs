// A patient's journey through Haven's web app, in Debian's Chromium, as a person would make
// it: enrol from the invitation link, set up an authenticator app (the codes come from an
// independent RFC 6238 implementation in harness.mjs), sign out, sign in with password and code,
// complete the intake form, read a result, ask for its correction, download all their data, open "who accessed my record", then leave the browser alone until the idle
// time-out signs it out.
//
// All along it records what the pages must never do: load anything from another origin, or
// break the Content Security Policy. After the time-out it looks for the result's marker in
// the DOM and for anything in localStorage, sessionStorage or IndexedDB: IndexedDB may hold
// only `haven-device`, this browser's keys for secure messages (non-extractable CryptoKeys)
// and what it trusts (public keys, fingerprints, ids), which the test reads back whole.
//
// Input (environment): HAVEN_URL, HAVEN_INVITATION, HAVEN_LOGIN, HAVEN_PASSWORD, HAVEN_MARKER
// (text of the seeded result), HAVEN_FORM_ANSWER (what to write in the form's free text),
// HAVEN_SCREENSHOTS (a folder). Output: one JSON object.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { currentStep, describeFailure, env, heading as waitForHeading, launch, screenshotter, totp, watchedPage } from './harness.mjs';

const url = env('HAVEN_URL');
const invitation = env('HAVEN_INVITATION');
const login = env('HAVEN_LOGIN');
const password = env('HAVEN_PASSWORD');
const marker = env('HAVEN_MARKER');
const formAnswer = env('HAVEN_FORM_ANSWER');
const screenshots = env('HAVEN_SCREENSHOTS');

/**
 * In the page: every record of the `haven-device` database, with each CryptoKey described
 * (type, algorithm, extractable) instead of its bytes; `null` when there is no such database.
 */
async function describeDeviceDatabase() {
  if (!(await indexedDB.databases()).some((d) => d.name === 'haven-device')) return null;
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open('haven-device');
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const describe = (value) => {
    if (value instanceof CryptoKey) {
      return { cryptoKey: value.type, algorithm: value.algorithm.name, extractable: value.extractable };
    }
    if (Array.isArray(value)) return value.map(describe);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
    }
    return value;
  };
  const stores = {};
  for (const name of db.objectStoreNames) {
    stores[name] = await new Promise((resolve, reject) => {
      const request = db.transaction(name).objectStore(name).getAll();
      request.onsuccess = () => resolve(request.result.map(describe));
      request.onerror = () => reject(request.error);
    });
  }
  db.close();
  return stores;
}

const out = {};
const browser = await launch();
try {
  const page = await watchedPage(browser, new URL(url).origin, out);
  const shoot = screenshotter(page, screenshots, out);
  const heading = (name) => waitForHeading(page, name);

  // Enrol from the invitation link.
  await page.goto(`${url}/enrol#${encodeURIComponent(invitation)}`);
  await heading('Create your account');
  out.invitationLeftInAddressBar = page.url().includes(invitation);
  await shoot('enrol');
  await page.getByLabel('Email').fill(login);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Password again').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();

  // Set up the authenticator app.
  await heading('Protect your account');
  const secret = (await page.getByTestId('totp-secret').textContent()).replace(/\s+/g, '');
  out.qrCodeShown = await page.getByRole('img', { name: /QR code/ }).isVisible();
  await shoot('totp-setup');
  const setupStep = currentStep();
  await page.getByLabel('Six-digit code').fill(totp(secret, setupStep));
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.getByTestId('recovery-codes').waitFor();
  out.recoveryCodes = await page.getByTestId('recovery-codes').locator('li').count();
  await page.getByLabel('I have kept my recovery codes somewhere safe').check();
  await page.getByRole('button', { name: 'Continue' }).click();
  await heading('Your health at a glance');
  out.afterEnrolment = new URL(page.url()).pathname;

  // Sign out, and in again with the password and the next code.
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await heading('Sign in to Haven');
  await shoot('sign-in');
  await page.getByLabel('Email or login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Code').fill(totp(secret, Math.max(setupStep + 1, currentStep())));
  await page.getByRole('button', { name: 'Continue' }).click();
  await heading('Your health at a glance');

  // The intake form the clinic asks for, from the home page.
  const forms = page.getByRole('region', { name: 'Forms to complete' });
  await forms.getByRole('link', { name: 'Telehealth intake' }).click();
  await heading('Telehealth intake');
  await page.getByRole('group', { name: /Do you have a fever/ }).getByLabel('Yes').check();
  await page.getByRole('group', { name: /Main symptom/ }).getByLabel('Cough').check();
  await page.getByLabel('Since when?').fill('2026-11-20');
  await page.getByLabel('Anything else?').fill(formAnswer);
  await shoot('portal-form');
  await page.getByRole('button', { name: 'Send my answers' }).click();
  await heading('Forms');
  await page.getByText(/^Completed /).first().waitFor();
  out.formsAfter = await page.locator('main').innerText();
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Home' }).click();
  await heading('Your health at a glance');

  // The result, on the home page and in the record; the next visit beside it.
  await page.getByText(marker).first().waitFor();
  out.homeText = await page.locator('main').innerText();
  await page.getByTestId('next-visits').waitFor();
  out.nextVisits = await page.getByTestId('next-visits').innerText();
  await shoot('portal-home');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My record', exact: true }).click();
  await heading('Your record');
  await page.getByText(marker).first().waitFor();
  out.resultRow = await page.getByRole('row').filter({ hasText: marker }).first().innerText();
  await shoot('portal-record');

  // A correction request, from the result's row; then the list of requests.
  await page.getByRole('row').filter({ hasText: marker }).getByRole('link', { name: 'Request a correction' }).click();
  await heading('Request a correction');
  out.correctionFocus = await page.getByTestId('correction-focus').innerText();
  await page.getByLabel('What is wrong?').fill('The sample was taken the day after a transfusion.');
  await page.getByLabel('What should it say?').fill('Note that the sample followed a transfusion.');
  await page.getByRole('button', { name: 'Send the request' }).click();
  await heading('Correction requests');
  out.corrections = await page.getByTestId('corrections').innerText();
  await shoot('portal-corrections');

  // Download all my data.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My record', exact: true }).click();
  await heading('Your record');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Download all my data' }).click(),
  ]);
  const exported = readFileSync(await download.path(), 'utf8');
  out.exportTypes = exported
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line).resourceType);
  out.exportHasMarker = exported.includes(marker);

  // Privacy and sharing: a caregiver is given access to the record, then it is revoked.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Privacy and sharing' }).click();
  await heading('Privacy and sharing');
  await page.getByLabel('They are your').selectOption('caregiver');
  await page.getByRole('button', { name: 'Create a code for them' }).click();
  out.proxyOffer = await page.getByTestId('proxy-offer').innerText();
  const proxy = page.getByTestId('proxies').getByRole('listitem').filter({ hasText: 'caregiver' });
  await proxy.first().waitFor();
  await shoot('portal-privacy');
  await proxy.first().getByRole('button', { name: 'Revoke' }).click();
  await page.getByTestId('proxies').getByText(/revoked/).waitFor();
  out.proxiesAfterRevoke = await page.getByTestId('proxies').innerText();

  // Who accessed my record: the clinician's access is there.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Who accessed my record' }).click();
  await heading('Who accessed your record');
  const clinicianRows = page.locator('tr[data-role="clinician"]');
  await clinicianRows.first().waitFor();
  out.clinicianAccesses = await clinicianRows.count();
  out.clinicianAccess = await clinicianRows.first().innerText();
  await shoot('portal-access-log');

  // Leave it alone: the warning, then the sign-out that forgets everything.
  const idleStarted = Date.now();
  await page.getByRole('alertdialog').waitFor({ timeout: 120_000 });
  out.warningAfterSecs = Math.round((Date.now() - idleStarted) / 1000);
  await page.screenshot({ path: join(screenshots, 'idle-warning-desktop.png') });
  out.screenshots.push(join(screenshots, 'idle-warning-desktop.png'));
  await heading('Sign in to Haven');
  out.signedOutAfterSecs = Math.round((Date.now() - idleStarted) / 1000);
  out.afterIdle = await page.evaluate(async () => ({
    path: location.pathname,
    notice: document.querySelector('[data-testid="sign-in-notice"]')?.textContent ?? null,
    html: document.documentElement.outerHTML,
    localStorage: localStorage.length,
    sessionStorage: sessionStorage.length,
    indexedDb: (await indexedDB.databases()).map((d) => d.name),
  }));
  out.afterIdle.deviceDatabase = await page.evaluate(describeDeviceDatabase);
  out.afterIdle.markerInDom = out.afterIdle.html.includes(marker);
  const deviceDatabase = JSON.stringify(out.afterIdle.deviceDatabase);
  out.afterIdle.healthDataInDeviceDatabase = deviceDatabase.includes(marker) || deviceDatabase.includes(formAnswer);
  delete out.afterIdle.html;
  // Going back shows no health data either: the pages held it in memory, now gone.
  await page.goBack();
  await page.waitForTimeout(500);
  out.afterBack = {
    path: new URL(page.url()).pathname,
    markerInDom: (await page.content()).includes(marker),
  };
  console.log(JSON.stringify(out));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  await browser.close();
}
