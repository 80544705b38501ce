// An administrator's journey through Haven's web app, in Debian's Chromium, in two phases
// so that the test can move Haven's clock between them, as if the administrator had been
// signed in for a while: their sign-in is then too old for sensitive changes.
//
// Phase `sign-in`: password and code; the browser's state (its session cookie) is saved to
// HAVEN_STATE. Phase `manage`, with that state: create an invitation link (the page asks
// for a fresh proof of identity, step-up, first), change the idle time-out, disable a
// user, and read where key rotation stands.
//
// Input (environment): HAVEN_URL, HAVEN_PHASE, HAVEN_STATE (a file), HAVEN_PASSWORD,
// HAVEN_LOGIN, HAVEN_TOTP (base32), HAVEN_TOTP_STEP_MIN, HAVEN_CLOCK_OFFSET_SECS (how far
// Haven's clock is ahead of real time), HAVEN_DISABLE (a login to disable),
// HAVEN_SCREENSHOTS. Output: one JSON object.
import {
  describeFailure,
  env,
  heading as waitForHeading,
  launch,
  screenshotter,
  totp,
  watchedPage,
} from './harness.mjs';

const url = env('HAVEN_URL');
const phase = env('HAVEN_PHASE');
const state = env('HAVEN_STATE');
const password = env('HAVEN_PASSWORD');
const login = env('HAVEN_LOGIN');
const secret = env('HAVEN_TOTP');
const stepMin = Number(env('HAVEN_TOTP_STEP_MIN'));
const offsetSecs = Number(env('HAVEN_CLOCK_OFFSET_SECS'));
const screenshots = env('HAVEN_SCREENSHOTS');

/** The code Haven expects now, by its own clock, never one already used. */
const code = () => totp(secret, Math.max(stepMin, Math.floor((Date.now() / 1000 + offsetSecs) / 30)));

const out = {};
const browser = await launch();
try {
  const page = await watchedPage(browser, new URL(url).origin, out, phase === 'manage' ? state : undefined);
  const shoot = screenshotter(page, screenshots, out);
  const heading = (name) => waitForHeading(page, name);
  if (phase === 'sign-in') {
    await page.goto(`${url}/sign-in`);
    await heading('Sign in to Haven');
    await page.getByLabel('Email or login').fill(login);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByLabel('Code').fill(code());
    await page.getByRole('button', { name: 'Continue' }).click();
    await heading('Administration');
    await page.context().storageState({ path: state });
    out.signedIn = true;
  } else {
    const disable = env('HAVEN_DISABLE');
    await page.goto(`${url}/admin`);
    await heading('Administration');

    // An invitation: the sign-in is too old, so the page asks for step-up, then retries.
    await page.getByLabel('Role').selectOption('nurse');
    await page.getByRole('button', { name: 'Create the invitation link' }).click();
    const dialog = page.getByRole('dialog', { name: 'Confirm it is you' });
    await dialog.waitFor();
    out.steppedUp = true;
    // The page behind the dialog takes no focus or clicks while it is open.
    out.inertUnderDialog = await page.evaluate(() => document.getElementById('app').hasAttribute('inert'));
    await shoot('admin-step-up');
    await dialog.getByLabel('Your password').fill(password);
    await dialog.getByLabel('Code from your app').fill(code());
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    out.invitationLink = await page.getByTestId('invitation-link').innerText();
    // Closing the dialog gives the page back (the effect's clean-up may follow the paint).
    await page.waitForFunction(() => !document.getElementById('app').hasAttribute('inert'), null, { timeout: 5000 });
    out.inertAfterDialog = await page.evaluate(() => document.getElementById('app').hasAttribute('inert'));

    // The idle time-out, now without asking again (the proof is fresh).
    await page.getByLabel('Idle time-out (minutes)').fill('10');
    await page.getByRole('button', { name: 'Save policies' }).click();
    await page.getByText('Saved.').waitFor();
    out.policySaved = true;

    // A user disabled.
    const row = page.getByTestId('users').getByRole('row').filter({ hasText: disable });
    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByText('Disabled').waitFor();
    out.disabledRow = await row.innerText();
    await page.getByTestId('key-status').waitFor();
    out.keyStatus = await page.getByTestId('key-status').innerText();
    await shoot('admin');
  }
  console.log(JSON.stringify(out));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  await browser.close();
}
