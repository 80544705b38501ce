// A patient's journey through Haven's web app, in Debian's Chromium, as a person would make
// it: enrol from the invitation link, set up an authenticator app (the codes come from an
// independent RFC 6238 implementation below), sign out, sign in with password and code,
// read a result, open "who accessed my record", then leave the browser alone until the idle
// time-out signs it out.
//
// All along it records what the pages must never do: load anything from another origin, or
// break the Content Security Policy. After the time-out it looks for the result's marker in
// the DOM and for anything in localStorage, sessionStorage or IndexedDB.
//
// Input (environment): HAVEN_URL, HAVEN_INVITATION, HAVEN_LOGIN, HAVEN_PASSWORD, HAVEN_MARKER
// (text of the seeded result), HAVEN_SCREENSHOTS (a folder). Output: one JSON object.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
};
const url = env('HAVEN_URL');
const invitation = env('HAVEN_INVITATION');
const login = env('HAVEN_LOGIN');
const password = env('HAVEN_PASSWORD');
const marker = env('HAVEN_MARKER');
const screenshots = env('HAVEN_SCREENSHOTS');
mkdirSync(screenshots, { recursive: true });

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), written here from the RFC so that Haven's own
// implementation is checked by another one.
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of text.replace(/[\s=]/g, '').toUpperCase()) {
    const value = alphabet.indexOf(char);
    if (value < 0) throw new Error(`not base32: ${char}`);
    bits += value.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}
function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, '0');
}
const currentStep = () => Math.floor(Date.now() / 1000 / 30);

const origin = new URL(url).origin;
const out = {
  foreignRequests: [],
  cspViolations: [],
  documentsWithoutCsp: [],
  consoleErrors: [],
  screenshots: [],
};

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on('request', (request) => {
    const requested = new URL(request.url());
    if (requested.origin !== origin && requested.protocol !== 'data:') out.foreignRequests.push(request.url());
  });
  page.on('response', async (response) => {
    if (response.request().resourceType() === 'document' && !response.headers()['content-security-policy']) {
      out.documentsWithoutCsp.push(response.url());
    }
  });
  page.on('console', (message) => {
    const text = message.text();
    if (/Content Security Policy|Trusted Type/i.test(text)) out.cspViolations.push(text);
    // The app asks for the session on its first load, before anyone has signed in: that
    // 401 is expected. Any other error is not.
    else if (message.type() === 'error' && !(out.signedIn === undefined && text.includes('status of 401'))) {
      out.consoleErrors.push(text);
    }
  });
  page.on('pageerror', (error) => out.consoleErrors.push(String(error)));
  // The page's own report of each violation, beside the console's.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`Content Security Policy violation: ${event.violatedDirective} ${event.blockedURI}`);
    });
  });

  const shoot = async (name) => {
    for (const [size, viewport] of [
      ['desktop', { width: 1280, height: 800 }],
      ['phone', { width: 360, height: 740 }],
    ]) {
      await page.setViewportSize(viewport);
      const file = join(screenshots, `${name}-${size}.png`);
      await page.screenshot({ path: file, fullPage: true });
      out.screenshots.push(file);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  };
  const heading = (name) => page.getByRole('heading', { level: 1, name }).waitFor();

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
  out.signedIn = true;
  out.afterEnrolment = new URL(page.url()).pathname;

  // Sign out, and in again with the password and the next code.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await heading('Sign in to Haven');
  await shoot('sign-in');
  await page.getByLabel('Email or login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByLabel('Code').fill(totp(secret, Math.max(setupStep + 1, currentStep())));
  await page.getByRole('button', { name: 'Continue' }).click();
  await heading('Your health at a glance');

  // The result, on the home page and in the record.
  await page.getByText(marker).first().waitFor();
  out.homeText = await page.locator('main').innerText();
  await shoot('portal-home');
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My record', exact: true }).click();
  await heading('Your record');
  await page.getByText(marker).first().waitFor();
  out.resultRow = await page.getByRole('row').filter({ hasText: marker }).first().innerText();
  await shoot('portal-record');

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
  out.afterIdle.markerInDom = out.afterIdle.html.includes(marker);
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
  // What the page showed when a step failed, for whoever reads the test's output.
  const [page] = browser.contexts().flatMap((c) => c.pages());
  if (page) {
    await page.screenshot({ path: join(screenshots, 'failure.png'), fullPage: true }).catch(() => undefined);
    console.error(`the page at ${page.url()} showed:\n${await page.locator('body').innerText().catch(() => '?')}`);
  }
  throw error;
} finally {
  await browser.close();
}
