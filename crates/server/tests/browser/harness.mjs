// What every browser journey shares: Debian's Chromium with the flags the tests use, the
// watch over what a page must never do (load from another origin, break the Content
// Security Policy, log an error), screenshots at desktop and phone widths, and TOTP codes
// from an RFC 6238 implementation written here, independent of Haven's.
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** A required environment variable. */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

/** What `watchedPage` records, each a list that should stay empty (but screenshots). */
export const JOURNAL_LISTS = [
  'foreignRequests',
  'cspViolations',
  'documentsWithoutCsp',
  'serverErrors',
  'consoleErrors',
  'phoneOverflow',
  'accessibility',
  'screenshots',
];

/**
 * Debian's Chromium with the flags every journey uses, and `extraArgs` after them (a video
 * visit adds the fake camera and microphone, and their permission prompt answered yes).
 */
export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}

/**
 * A page whose misbehaviour is written into `out`: `foreignRequests`, `cspViolations`,
 * `documentsWithoutCsp`, `serverErrors` (5xx answers) and `consoleErrors` (the app's own
 * faults and uncaught errors). Refusals Haven is meant to give (the 401 before signing in,
 * the 403 of a chart outside one's care) are the journeys' to check; Chromium's console
 * line for each failed request is left out.
 */
export async function watchedPage(browser, origin, out, storageState = undefined) {
  for (const list of JOURNAL_LISTS) {
    out[list] ??= [];
  }
  // `storageState`: a file a previous phase saved (its cookies), to carry on its session.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState });
  const page = await context.newPage();
  page.on('request', (request) => {
    if (new URL(request.url()).origin !== origin) out.foreignRequests.push(request.url());
  });
  page.on('response', (response) => {
    if (response.request().resourceType() === 'document' && !response.headers()['content-security-policy']) {
      out.documentsWithoutCsp.push(response.url());
    }
    if (response.status() >= 500) out.serverErrors.push(`${response.status()} ${response.url()}`);
  });
  page.on('console', (message) => {
    const text = message.text();
    if (/Content Security Policy|Trusted Type/i.test(text)) out.cspViolations.push(text);
    else if (message.type() === 'error' && !text.startsWith('Failed to load resource')) out.consoleErrors.push(text);
  });
  page.on('pageerror', (error) => out.consoleErrors.push(String(error)));
  // The page's own report of each violation, beside the console's.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`Content Security Policy violation: ${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  return page;
}

/**
 * Saves full-page screenshots of `page` at desktop and phone widths into `dir`, and notes
 * in `out.phoneOverflow` a page wider than the phone (sideways scrolling for the whole page).
 */
export function screenshotter(page, dir, out) {
  mkdirSync(dir, { recursive: true });
  return async (name) => {
    for (const problem of await accessibilityProblems(page)) out.accessibility.push(`${name}: ${problem}`);
    for (const [size, viewport] of [
      ['desktop', { width: 1280, height: 800 }],
      ['phone', { width: 360, height: 740 }],
    ]) {
      await page.setViewportSize(viewport);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      if (width > viewport.width) out.phoneOverflow.push(`${name} at ${size}: ${width} px wide`);
      const file = join(dir, `${name}-${size}.png`);
      await page.screenshot({ path: file, fullPage: true });
      out.screenshots.push(file);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  };
}

/**
 * What a screen-reader or keyboard user would trip over on the page: a form control with no
 * label, a button or link with no name, an image with no text, a page without one main
 * heading, or headings that skip a level.
 */
export function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const describe = (element) => `${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''}`;
    for (const control of document.querySelectorAll('input, select, textarea')) {
      if (control.type === 'hidden') continue;
      const named = control.labels?.length || control.getAttribute('aria-label') || control.getAttribute('aria-labelledby');
      if (!named) problems.push(`unlabelled ${describe(control)}`);
    }
    for (const element of document.querySelectorAll('button, a[href]')) {
      if (!element.textContent.trim() && !element.getAttribute('aria-label')) problems.push(`nameless ${describe(element)}`);
    }
    for (const image of document.querySelectorAll('img, svg[role="img"]')) {
      if (!(image.getAttribute('alt') ?? image.getAttribute('aria-label'))) problems.push(`image without text: ${describe(image)}`);
    }
    const mains = document.querySelectorAll('h1');
    if (mains.length !== 1) problems.push(`${mains.length} main headings`);
    let level = 1;
    for (const heading of document.querySelectorAll('h1, h2, h3, h4')) {
      const next = Number(heading.tagName[1]);
      if (next > level + 1) problems.push(`heading level skipped before "${heading.textContent.trim()}"`);
      level = next;
    }
    return problems;
  });
}

/** Waits for the page's main heading. */
export function heading(page, name) {
  return page.getByRole('heading', { level: 1, name }).waitFor();
}

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

/** The RFC 6238 code (SHA-1, 6 digits, 30 s steps) of `secret` at time step `step`. */
export function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, '0');
}

export const currentStep = () => Math.floor(Date.now() / 1000 / 30);

/** On a failed step: what the page showed, for whoever reads the test's output. */
export async function describeFailure(browser, dir, out) {
  console.error(`so far: ${JSON.stringify(out)}`);
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    await page.screenshot({ path: join(dir, 'failure.png'), fullPage: true }).catch(() => undefined);
    console.error(`the page at ${page.url()} showed:\n${await page.locator('body').innerText().catch(() => '?')}`);
    // A call's page also says how its connections stand and how they got there.
    const call = await page.evaluate(() => window.havenVisit?.diagnostics() ?? null).catch(() => null);
    if (call) console.error(`its call: ${JSON.stringify(call, null, 1)}`);
  }
}

/**
 * One module of the web app (`entry`, under `webDir`) as an IIFE script defining
 * `window[name]`, built with the web app's own Vite and written nowhere: how the interop
 * and vector scripts run the app's code in a page without serving the app.
 */
export async function bundleLibrary(webDir, entry, name) {
  const { createRequire } = await import('node:module');
  const { join } = await import('node:path');
  const { pathToFileURL } = await import('node:url');
  const vite = await import(pathToFileURL(createRequire(join(webDir, 'package.json')).resolve('vite')).href);
  const result = await vite.build({
    root: webDir,
    // Not the app's config: this is a library build, written nowhere.
    configFile: false,
    publicDir: false,
    logLevel: 'error',
    build: {
      write: false,
      emptyOutDir: false,
      minify: false,
      sourcemap: false,
      target: 'es2022',
      lib: {
        entry: join(webDir, entry),
        formats: ['iife'],
        name,
        fileName: () => `${name}.js`,
      },
    },
  });
  const outputs = (Array.isArray(result) ? result : [result]).flatMap((r) => r.output);
  const chunk = outputs.find((o) => o.type === 'chunk');
  if (!chunk) throw new Error(`the ${entry} bundle is empty`);
  return chunk.code;
}
