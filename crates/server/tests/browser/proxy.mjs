// A parent's journey as their child's proxy, in Debian's Chromium: they sign in to an account
// with no record of its own, enter the code the front desk gave them, and then see their
// child's results, and only what the delegation allows (here the record, not its access log).
//
// Input (environment): HAVEN_URL, HAVEN_LOGIN, HAVEN_PASSWORD, HAVEN_OFFER (the code),
// HAVEN_MARKER (text of the child's result), HAVEN_SCREENSHOTS. Output: one JSON object.
import { describeFailure, env, heading as waitForHeading, launch, screenshotter, watchedPage } from './harness.mjs';

const url = env('HAVEN_URL');
const login = env('HAVEN_LOGIN');
const password = env('HAVEN_PASSWORD');
const offer = env('HAVEN_OFFER');
const marker = env('HAVEN_MARKER');
const screenshots = env('HAVEN_SCREENSHOTS');

const out = {};
const browser = await launch();
try {
  const page = await watchedPage(browser, new URL(url).origin, out);
  const shoot = screenshotter(page, screenshots, out);
  const heading = (name) => waitForHeading(page, name);
  const nav = page.getByRole('navigation', { name: 'Main' });

  await page.goto(`${url}/sign-in`);
  await heading('Sign in to Haven');
  await page.getByLabel('Email or login').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await heading('No record to show yet');
  out.noRecordAtFirst = true;

  await nav.getByRole('link', { name: 'Account' }).click();
  await heading('Your account');
  await page.getByRole('form', { name: 'Act for someone' }).getByLabel('Code').fill(offer);
  await page.getByRole('button', { name: 'Accept' }).click();
  await page.getByText('Done.').waitFor();

  await nav.getByRole('link', { name: 'Home' }).click();
  await heading('At a glance');
  await page.getByText(marker).first().waitFor();
  out.homeText = await page.locator('main').innerText();
  out.navigation = await nav.innerText();
  await shoot('proxy-home');
  await nav.getByRole('link', { name: 'Record', exact: true }).click();
  await heading('Record');
  await page.getByText(marker).first().waitFor();
  out.correctionLinks = await page.getByRole('link', { name: 'Request a correction' }).count();
  console.log(JSON.stringify(out));
} catch (error) {
  await describeFailure(browser, screenshots, out);
  throw error;
} finally {
  await browser.close();
}
