// Runs the browser's SFrame library (web/src/visit/sframe.ts) inside Debian's Chromium
// against RFC 9605's own test vectors, so the encryption of video visits is held to the
// bytes of the standard, on the WebCrypto that people's browsers will run:
//
// - Appendix C.1, header encoding and decoding: every (KID, CTR) case, both directions;
// - Appendix C.2, the AES-CTR + HMAC compound AEAD: subkeys, encryption, decryption;
// - Appendix C.3, SFrame encryption and decryption for all five cipher suites, with the
//   intermediate labels, secret, key, salt, nonce and AAD checked on the way;
// - and checks of the library's own behaviour that no vector covers: the media framing the
//   transform worker applies (clear codec bytes, authenticated), tampering refused, unknown
//   and removed keys, the counter that never repeats nor wraps, the limits;
// - and a call: two peer connections in one page, a canvas's video and an oscillator's
//   audio, sealed by one MediaE2ee (media-e2ee.ts and its worker) and opened by another,
//   under Haven's Content Security Policy with Trusted Types as the app will serve it
//   (`trusted-types haven-worker`): the frames that leave are sealed, the receiver decodes
//   them, a rotation goes through, and without the keys nothing is passed on.
//
// The library is bundled with the web app's own Vite as an IIFE defining
// `window.HavenSFrame`; the call page loads media-e2ee.ts built with the app's own Vite
// config, so the worker is the file Vite emits under /assets/. Both are served from
// 127.0.0.1, a secure context, so WebCrypto and WebRTC are there.
//
// Usage: node sframe-vectors.mjs <input.json> <output.json>   (web/ is found beside crates/,
// or at $HAVEN_WEB_DIR; it needs `npm ci` there, as the app's build does)
//
// Input:  { vectors_file }   (crates/server/tests/vectors/rfc9605-sframe.json)
// Output: { run, passed, failures, by_section: { header, aead, sframe: { run, passed } },
//           self_checks: { run, passed, failures }, call: { run, passed, failures } }
// `run` counts vectors, one per case of the file, whatever the number of checks in each.
// The output is written whenever the page ran; the caller judges it. The exit code is 1
// only if nothing could be run (bundle, browser, page).
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleLibrary, launch } from './harness.mjs';

/** The whole run, bundling included; the vectors themselves take well under a second. */
const RUN_TIMEOUT_MS = 180_000;

const here = dirname(fileURLToPath(import.meta.url));
const webDir = process.env.HAVEN_WEB_DIR ?? resolve(here, '../../../../web');

const [inputPath, outputPath] = process.argv.slice(2);
if (!inputPath || !outputPath) {
  console.error('usage: node sframe-vectors.mjs <input.json> <output.json>');
  process.exit(2);
}

const timer = setTimeout(() => {
  console.error(`sframe-vectors: gave up after ${RUN_TIMEOUT_MS} ms`);
  process.exit(1);
}, RUN_TIMEOUT_MS);
timer.unref();

/** web/src/visit/sframe.ts as one IIFE script defining `window.HavenSFrame`. */
function bundle() {
  return bundleLibrary(webDir, 'src/visit/sframe.ts', 'HavenSFrame');
}

/**
 * media-e2ee.ts built as the app builds it (the app's vite.config.ts), from an entry that
 * puts the module on `window.HavenMediaE2ee`: a map of `/assets/…` paths to their code,
 * the worker among them, and the entry's path.
 */
async function bundleCall() {
  const vite = await import(pathToFileURL(createRequire(join(webDir, 'package.json')).resolve('vite')).href);
  const entryId = '\0haven-sframe-call-entry';
  const mediaE2ee = join(webDir, 'src/visit/media-e2ee.ts');
  const result = await vite.build({
    root: webDir,
    configFile: join(webDir, 'vite.config.ts'),
    publicDir: false,
    logLevel: 'error',
    plugins: [
      {
        name: 'haven-sframe-call-entry',
        resolveId: (id) => (id === 'haven-sframe-call-entry' ? entryId : null),
        load: (id) => (id === entryId ? `import * as M from ${JSON.stringify(mediaE2ee)};\nwindow.HavenMediaE2ee = M;\n` : null),
      },
    ],
    build: { write: false, emptyOutDir: false, rollupOptions: { input: 'haven-sframe-call-entry' } },
  });
  const outputs = (Array.isArray(result) ? result : [result]).flatMap((r) => r.output);
  const assets = new Map(outputs.map((o) => [`/${o.fileName}`, o.type === 'chunk' ? o.code : Buffer.from(o.source)]));
  const entry = outputs.find((o) => o.type === 'chunk' && o.isEntry);
  if (!entry) throw new Error('the call bundle has no entry');
  if (![...assets.keys()].some((path) => /^\/assets\/sframe-worker-[^/]+\.js$/.test(path))) {
    throw new Error(`Vite emitted no worker file under /assets/: ${[...assets.keys()].join(', ')}`);
  }
  return { assets, entry: `/${entry.fileName}` };
}

/**
 * Haven's Content Security Policy (crates/api/src/lib.rs) with the `haven-worker` Trusted
 * Types policy allowed, as the visit page needs it.
 */
const HAVEN_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
  "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; " +
  "frame-ancestors 'none'; form-action 'self'; " +
  "require-trusted-types-for 'script'; trusted-types haven-worker";

/**
 * A server at http://127.0.0.1:<port>/: `/` loads the SFrame bundle, then the page-side
 * functions below as a classic script, so they are globals the test calls; `/call` is the
 * call page, under Haven's CSP, loading the app-built media-e2ee.ts from /assets/.
 */
async function serve(script, call) {
  const pageFunctions = `${runVectors.toString()}\n${selfChecks.toString()}\n${inPage.toString()}\n`;
  const page =
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Haven SFrame vectors</title>' +
    '<script src="/sframe.js"></script><script src="/vectors.js"></script></html>';
  const callPage =
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Haven SFrame call</title>' +
    `<script src="/call.js"></script><script type="module" src="${call.entry}"></script></html>`;
  const sendScript = (response, body) =>
    response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'content-security-policy': HAVEN_CSP }).end(body);
  const server = createServer((request, response) => {
    if (request.url === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
    } else if (request.url === '/sframe.js') {
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
    } else if (request.url === '/vectors.js') {
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(pageFunctions);
    } else if (request.url === '/call') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': HAVEN_CSP }).end(callPage);
    } else if (request.url === '/call.js') {
      sendScript(response, `${inCall.toString()}\n`);
    } else if (call.assets.has(request.url)) {
      sendScript(response, call.assets.get(request.url));
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise((ready) => server.listen(0, '127.0.0.1', ready));
  return server;
}

// ------------------------------------------------------------------------------------------
// What runs in the pages: these functions are served as source into Chromium, so they may
// use only the page's globals and `window.HavenSFrame` (or, for `inCall`,
// `window.HavenMediaE2ee`).
// ------------------------------------------------------------------------------------------

async function inPage(vectors) {
  const S = window.HavenSFrame;
  if (!window.isSecureContext) throw new Error('the page is not a secure context');
  const tools = {
    fromHex: (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16)),
    toHex: (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join(''),
    describe: (e) => (e instanceof Error ? `${e.name}${e.code ? ` (${e.code})` : ''}: ${e.message}` : String(e)),
    codeOf: (promise) => promise.then(() => 'resolved', (e) => e?.code ?? String(e)),
  };
  return { ...(await runVectors(S, vectors, tools)), self_checks: await selfChecks(S, tools) };
}

/** RFC 9605 Appendix C, one entry of `run` per vector; a vector passes only if all its checks do. */
async function runVectors(S, vectors, { fromHex, toHex, describe, codeOf }) {
  const out = { run: 0, passed: 0, failures: [], by_section: {} };
  const number = (text) => BigInt(text);
  const section = async (name, list, check) => {
    const tally = { run: 0, passed: 0 };
    out.by_section[name] = tally;
    for (const [index, vector] of list.entries()) {
      out.run += 1;
      tally.run += 1;
      const problems = [];
      try {
        await check(vector, (ok, what) => ok || problems.push(what));
      } catch (e) {
        problems.push(describe(e));
      }
      if (problems.length === 0) {
        out.passed += 1;
        tally.passed += 1;
      } else {
        out.failures.push(`${name} #${index} ${JSON.stringify({ kid: vector.kid, ctr: vector.ctr, cipher_suite: vector.cipher_suite })}: ${problems.join('; ')}`);
      }
    }
  };

  // C.1: encoding gives the header; decoding gives back the KID and CTR, reading exactly the
  // header's bytes even with more behind it (a header is always followed by ciphertext).
  await section('header', vectors.header, async (v, check) => {
    const kid = number(v.kid);
    const ctr = number(v.ctr);
    const encoded = toHex(S.encodeHeader(kid, ctr));
    check(encoded === v.header, `encoded ${encoded}`);
    const header = fromHex(v.header);
    const trailed = new Uint8Array([...header, 0xde, 0xad]);
    const decoded = S.decodeHeader(trailed);
    check(decoded.kid === kid && decoded.ctr === ctr, `decoded kid ${decoded.kid} ctr ${decoded.ctr}`);
    check(decoded.length === header.length, `decoded length ${decoded.length}`);
    if (header.length > 1) {
      const truncated = await codeOf(Promise.resolve().then(() => S.decodeHeader(header.subarray(0, header.length - 1))));
      check(truncated === 'malformed_header', `a truncated header gave ${truncated}`);
    }
  });

  // C.2: AEAD.Encrypt(key, nonce, aad, pt) == ct and AEAD.Decrypt(key, nonce, aad, ct) == pt.
  await section('aead', vectors.aead, async (v, check) => {
    const suite = Number(v.cipher_suite);
    const key = fromHex(v.key);
    const { encKey, authKey } = S.compoundSubkeys(suite, key);
    check(toHex(encKey) === v.enc_key, `enc_key ${toHex(encKey)}`);
    check(toHex(authKey) === v.auth_key, `auth_key ${toHex(authKey)}`);
    const aead = await S.importAeadKey(suite, key);
    const ct = await S.aeadEncrypt(aead, fromHex(v.nonce), fromHex(v.aad), fromHex(v.pt));
    check(toHex(ct) === v.ct, `ct ${toHex(ct)}`);
    const pt = await S.aeadDecrypt(aead, fromHex(v.nonce), fromHex(v.aad), fromHex(v.ct));
    check(toHex(pt) === v.pt, `pt ${toHex(pt)}`);
    const altered = fromHex(v.ct);
    altered[0] ^= 1;
    const code = await codeOf(S.aeadDecrypt(aead, fromHex(v.nonce), fromHex(v.aad), altered));
    check(code === 'authentication_failed', `an altered ct gave ${code}`);
  });

  // C.3: encrypt(CTR, KID, metadata, pt) == ct and decrypt(metadata, ct) == pt, with an SFrame
  // context given base_key for kid; the intermediate values checked on the way.
  await section('sframe', vectors.sframe, async (v, check) => {
    const suite = Number(v.cipher_suite);
    const kid = number(v.kid);
    const ctr = number(v.ctr);
    const baseKey = fromHex(v.base_key);
    const metadata = fromHex(v.metadata);
    check(toHex(S.keyLabel(suite, kid)) === v.sframe_key_label, `sframe_key_label ${toHex(S.keyLabel(suite, kid))}`);
    check(toHex(S.saltLabel(suite, kid)) === v.sframe_salt_label, `sframe_salt_label ${toHex(S.saltLabel(suite, kid))}`);
    // HKDF-Extract("", base_key) is HMAC keyed with Nh zero bytes (RFC 5869 §2.2); computed here
    // apart from the library, which lets WebCrypto's HKDF do it unseen.
    const hash = S.cipherSuite(suite).hash;
    const zeros = new Uint8Array(S.cipherSuite(suite).nh);
    const hmac = await crypto.subtle.importKey('raw', zeros, { name: 'HMAC', hash }, false, ['sign']);
    const secret = toHex(await crypto.subtle.sign('HMAC', hmac, baseKey));
    check(secret === v.sframe_secret, `sframe_secret ${secret}`);
    const derived = await S.deriveKeyAndSalt(suite, kid, baseKey);
    check(toHex(derived.key) === v.sframe_key, `sframe_key ${toHex(derived.key)}`);
    check(toHex(derived.salt) === v.sframe_salt, `sframe_salt ${toHex(derived.salt)}`);
    check(toHex(S.frameNonce(derived.salt, ctr)) === v.nonce, `nonce ${toHex(S.frameNonce(derived.salt, ctr))}`);
    const aad = toHex(S.concatBytes(S.encodeHeader(kid, ctr), metadata));
    check(aad === v.aad, `aad ${aad}`);

    // Through the contexts, as the worker uses them; the base key once as bytes and once as
    // a non-extractable HKDF CryptoKey, as the visit page may hand it over.
    const sender = await S.SFrameSendContext.create({ suite, kid, baseKey, firstCounter: ctr });
    const sealed = await sender.encrypt(fromHex(v.pt), metadata);
    check(toHex(sealed.bytes) === v.ct, `ct ${toHex(sealed.bytes)}`);
    check(sealed.kid === kid && sealed.ctr === ctr, `sealed under kid ${sealed.kid} ctr ${sealed.ctr}`);
    const cryptoKey = await crypto.subtle.importKey('raw', baseKey, 'HKDF', false, ['deriveBits']);
    const receiver = new S.SFrameReceiveContext();
    await receiver.addKey(kid, cryptoKey, suite);
    const opened = await receiver.decrypt(fromHex(v.ct), metadata);
    check(toHex(opened.plaintext) === v.pt, `pt ${toHex(opened.plaintext)}`);
    check(opened.kid === kid && opened.ctr === ctr, `opened kid ${opened.kid} ctr ${opened.ctr}`);
    const otherMetadata = await codeOf(receiver.decrypt(fromHex(v.ct), new Uint8Array(0)));
    check(otherMetadata === 'authentication_failed', `other metadata gave ${otherMetadata}`);
  });
  return out;
}

/** The library's behaviour beyond the vectors, each something a person in a call would notice. */
async function selfChecks(S, { fromHex, toHex, describe, codeOf }) {
  const result = { run: 0, passed: 0, failures: [] };
  const check = async (name, body) => {
    result.run += 1;
    try {
      const problem = await body();
      if (problem === true) result.passed += 1;
      else result.failures.push(`${name}: ${problem}`);
    } catch (e) {
      result.failures.push(`${name}: ${describe(e)}`);
    }
  };
  const random = (n) => crypto.getRandomValues(new Uint8Array(n));
  const equal = (a, b) => toHex(a) === toHex(b);
  const pair = async (suite = S.DEFAULT_CIPHER_SUITE, kid = 5n) => {
    const baseKey = random(32);
    const sender = await S.SFrameSendContext.create({ suite, kid, baseKey });
    const receiver = new S.SFrameReceiveContext();
    await receiver.addKey(kid, baseKey, suite);
    return { sender, receiver, baseKey };
  };
  // A VP8 key frame (frame tag with the key-frame bit at 0, start code 9d 01 2a, 640x480),
  // an interframe (bit at 1), and an Opus packet (a TOC byte, then its payload).
  const vp8Key = () => new Uint8Array([0x50, 0x1f, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, ...random(300)]);
  const vp8Delta = () => new Uint8Array([0x31, 0x0a, 0x00, ...random(120)]);
  const opus = () => new Uint8Array([0x78, ...random(60)]);

  await check('media frames: codec headers stay clear and the rest is sealed, for VP8 key and delta frames and Opus', async () => {
    const { sender, receiver } = await pair();
    for (const [kind, frame, clear] of [
      ['video', vp8Key(), 10],
      ['video', vp8Delta(), 3],
      ['audio', opus(), 1],
    ]) {
      const sealed = await S.sealMediaFrame(sender, kind, frame);
      if (sealed.clearBytes !== clear) return `${kind}: ${sealed.clearBytes} clear bytes, not ${clear}`;
      if (!equal(sealed.bytes.subarray(0, clear), frame.subarray(0, clear))) return `${kind}: the prefix changed`;
      const header = S.decodeHeader(sealed.bytes.subarray(clear));
      if (header.kid !== sealed.kid || header.ctr !== sealed.ctr) return `${kind}: no SFrame header after the prefix`;
      const body = sealed.bytes.subarray(clear + header.length);
      if (body.length !== frame.length - clear + 16) return `${kind}: ${body.length} sealed bytes`;
      if (toHex(body).includes(toHex(frame.subarray(clear, clear + 16)))) return `${kind}: the payload is visible`;
      const opened = await S.openMediaFrame(receiver, kind, sealed.bytes);
      if (!equal(opened.plaintext, frame)) return `${kind}: the frame did not come back`;
    }
    return true;
  });

  await check('media frames: an altered clear byte, header, payload or tag is refused, never passed through', async () => {
    const { sender, receiver } = await pair();
    const sealed = (await S.sealMediaFrame(sender, 'video', vp8Key())).bytes;
    // Byte 3 is in the clear prefix (the start code), byte 11 is the CTR in the header
    // (KID 5 and CTR 0 fit in the config byte at 10, so alter the config byte's CTR bits),
    // then the payload and the tag's last byte.
    for (const [what, at, bit] of [
      ['clear prefix', 3, 0x01],
      ['header CTR', 10, 0x01],
      ['payload', 20, 0x80],
      ['tag', sealed.length - 1, 0x01],
    ]) {
      const altered = sealed.slice();
      altered[at] ^= bit;
      const code = await codeOf(S.openMediaFrame(receiver, 'video', altered));
      if (code !== 'authentication_failed') return `${what}: ${code}`;
    }
    // The key-frame bit itself decides how many bytes are clear; flipping it moves the
    // header, and the frame fails whatever it then finds there.
    const flipped = sealed.slice();
    flipped[0] ^= 0x01;
    const code = await codeOf(S.openMediaFrame(receiver, 'video', flipped));
    return code !== 'resolved' || 'a frame with its key-frame bit flipped opened';
  });

  await check('keys: an unknown or removed KID is refused; after a rotation the old key works until removed', async () => {
    const { sender, receiver } = await pair(S.DEFAULT_CIPHER_SUITE, 5n);
    const first = await S.sealMediaFrame(sender, 'audio', opus());
    const stranger = await S.SFrameSendContext.create({ kid: 6n, baseKey: random(32) });
    const foreign = await S.sealMediaFrame(stranger, 'audio', opus());
    const unknown = await codeOf(S.openMediaFrame(receiver, 'audio', foreign.bytes));
    if (unknown !== 'unknown_kid') return `a frame under an unknown KID: ${unknown}`;
    // The sender rotates to KID 6 with a new key (a participant left); the receiver is given it.
    const nextKey = random(32);
    const rotated = await S.SFrameSendContext.create({ kid: 6n, baseKey: nextKey });
    await receiver.addKey(6n, nextKey);
    const second = await S.sealMediaFrame(rotated, 'audio', opus());
    await S.openMediaFrame(receiver, 'audio', second.bytes);
    await S.openMediaFrame(receiver, 'audio', first.bytes);
    if (receiver.kids().join() !== '5,6') return `kids ${receiver.kids().join()}`;
    receiver.removeKey(5n);
    const removed = await codeOf(S.openMediaFrame(receiver, 'audio', first.bytes));
    if (removed !== 'unknown_kid') return `a frame under a removed KID: ${removed}`;
    // The stranger's frame under KID 6 is still refused: KID 6 now means the sender's key.
    const impostor = await codeOf(S.openMediaFrame(receiver, 'audio', foreign.bytes));
    return impostor === 'authentication_failed' || `another key under a known KID: ${impostor}`;
  });

  await check('counter: frames sealed at once get distinct CTRs in order, and the last CTR is used once, never wrapped', async () => {
    const { sender } = await pair();
    const sealed = await Promise.all(Array.from({ length: 50 }, () => sender.encrypt(random(40))));
    const ctrs = sealed.map((s) => s.ctr);
    if (ctrs.some((ctr, i) => ctr !== BigInt(i))) return `CTRs ${ctrs.join()}`;
    if (sender.nextCounter !== 50n) return `next CTR ${sender.nextCounter}`;
    const max = (1n << 64n) - 1n;
    const last = await S.SFrameSendContext.create({ kid: 1n, baseKey: random(32), firstCounter: max - 1n });
    await last.encrypt(random(8));
    const final = await last.encrypt(random(8));
    if (final.ctr !== max) return `the final CTR was ${final.ctr}`;
    if (last.nextCounter !== null) return 'the counter did not report itself spent';
    const refused = await codeOf(last.encrypt(random(8)));
    return refused === 'counter_exhausted' || `after 2^64 - 1: ${refused}`;
  });

  await check('headers: non-minimal, truncated and out-of-range encodings are refused', async () => {
    const decode = (hex) => codeOf(Promise.resolve().then(() => S.decodeHeader(fromHex(hex))));
    for (const hex of ['', '8005', '900001', '0800', '09000f', '8f', '0f01', 'f0ffffffffffffff']) {
      const code = await decode(hex);
      if (code !== 'malformed_header') return `header ${JSON.stringify(hex)}: ${code}`;
    }
    for (const [kid, ctr] of [[-1n, 0n], [0n, 1n << 64n], [1, 0n]]) {
      const code = await codeOf(Promise.resolve().then(() => S.encodeHeader(kid, ctr)));
      if (code !== 'malformed_header') return `encoding ${kid}, ${ctr}: ${code}`;
    }
    return true;
  });

  await check('limits: an oversized frame, a frame shorter than its codec header, a full key ring and an unknown suite are refused', async () => {
    const { sender } = await pair();
    const big = await codeOf(sender.encrypt(new Uint8Array(S.FRAME_BYTES_MAX + 1)));
    if (big !== 'frame_too_large') return `oversized frame: ${big}`;
    if (sender.nextCounter !== 0n) return 'a refused frame spent a CTR';
    const short = await codeOf(S.sealMediaFrame(sender, 'video', Uint8Array.of(0x50, 0x1f)));
    if (short !== 'malformed') return `a 2-byte VP8 key frame: ${short}`;
    const empty = await codeOf(S.sealMediaFrame(sender, 'audio', new Uint8Array(0)));
    if (empty !== 'malformed') return `an empty Opus frame: ${empty}`;
    const bare = await codeOf(S.openMediaFrame(new S.SFrameReceiveContext(), 'audio', Uint8Array.of(0x78)));
    if (bare !== 'malformed') return `a frame with only its clear byte: ${bare}`;
    const ring = new S.SFrameReceiveContext(2);
    await ring.addKey(1n, random(32));
    await ring.addKey(2n, random(32));
    await ring.addKey(2n, random(32));
    const full = await codeOf(ring.addKey(3n, random(32)));
    if (full !== 'too_many_keys') return `a third key in a ring of two: ${full}`;
    const suite = await codeOf(S.SFrameSendContext.create({ kid: 1n, baseKey: random(32), suite: 6 }));
    return suite === 'unsupported_suite' || `suite 6: ${suite}`;
  });

  await check('every suite round-trips a media frame; suites do not open each other’s frames', async () => {
    const baseKey = random(32);
    for (const id of [1, 2, 3, 4, 5]) {
      // KID 3 and CTR 0 fit in the config byte: a one-byte header.
      const sender = await S.SFrameSendContext.create({ suite: id, kid: 3n, baseKey });
      const receiver = new S.SFrameReceiveContext();
      await receiver.addKey(3n, baseKey, id);
      const frame = vp8Delta();
      const sealed = await S.sealMediaFrame(sender, 'video', frame);
      if (sealed.bytes.length !== frame.length + 1 + S.cipherSuite(id).nt) return `suite ${id}: ${sealed.bytes.length} bytes`;
      if (!equal((await S.openMediaFrame(receiver, 'video', sealed.bytes)).plaintext, frame)) return `suite ${id}: round trip`;
      const other = new S.SFrameReceiveContext();
      await other.addKey(3n, baseKey, id === 5 ? 4 : 5);
      const code = await codeOf(S.openMediaFrame(other, 'video', sealed.bytes));
      if (code !== 'authentication_failed') return `suite ${id} opened as another: ${code}`;
    }
    return true;
  });

  return result;
}

/**
 * A call in one page: Alice's peer connection sends a canvas's video and an oscillator's
 * audio to Bob's, each side with its own MediaE2ee (its own worker), as two browsers would.
 * Served under Haven's CSP: the workers exist only through the `haven-worker` policy.
 */
async function inCall() {
  const M = window.HavenMediaE2ee;
  const result = { run: 0, passed: 0, failures: [] };
  const describe = (e) => (e instanceof Error ? `${e.name}${e.code ? ` (${e.code})` : ''}: ${e.message}` : String(e));
  const codeOf = (promise) => promise.then(() => 'resolved', (e) => e?.code ?? e?.name ?? String(e));
  const check = async (name, body) => {
    result.run += 1;
    try {
      const problem = await body();
      if (problem === true) result.passed += 1;
      else result.failures.push(`${name}: ${problem}`);
    } catch (e) {
      result.failures.push(`${name}: ${describe(e)}`);
    }
  };
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  /** Polls `predicate` every 100 ms for at most `timeoutMs`; whether it came true. */
  const eventually = async (predicate, timeoutMs = 15_000) => {
    for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(100)) if (await predicate()) return true;
    return false;
  };
  const toHex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');

  // The media: a canvas that changes every frame, and a tone.
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 240;
  const pen = canvas.getContext('2d');
  let tick = 0;
  const drawing = setInterval(() => {
    tick += 1;
    pen.fillStyle = `hsl(${(tick * 7) % 360} 80% 50%)`;
    pen.fillRect(0, 0, 320, 240);
    pen.fillStyle = '#fff';
    pen.fillRect((tick * 5) % 300, 100, 20, 20);
  }, 33);
  const videoTrack = canvas.captureStream(30).getVideoTracks()[0];
  const audioContext = new AudioContext();
  const tone = audioContext.createOscillator();
  const toneOut = audioContext.createMediaStreamDestination();
  tone.connect(toneOut);
  tone.start();
  await audioContext.resume().catch(() => undefined);
  const audioTrack = toneOut.stream.getAudioTracks()[0];

  const alice = M.startMediaE2ee();
  const bob = M.startMediaE2ee();
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  a.onicecandidate = (event) => event.candidate && b.addIceCandidate(event.candidate);
  b.onicecandidate = (event) => event.candidate && a.addIceCandidate(event.candidate);
  const inbound = async (kind) => [...(await b.getStats()).values()].find((r) => r.type === 'inbound-rtp' && r.kind === kind);
  const framesDecoded = async () => (await inbound('video'))?.framesDecoded ?? 0;
  const dropped = (stats) => Object.values(stats.dropped).reduce((sum, n) => sum + n, 0);
  const key1 = alice.createSendKey();

  try {
    await check('the worker URL goes through the haven-worker policy; a plain string and other URLs are refused', async () => {
      if (typeof window.trustedTypes !== 'object') return 'this Chromium has no Trusted Types';
      const plain = await codeOf(Promise.resolve().then(() => new Worker('/assets/anything.js')));
      if (plain !== 'TypeError') return `a Worker from a plain string under the CSP: ${plain}`;
      const page = 'http://127.0.0.1:1/visit';
      for (const url of ['http://127.0.0.2:1/assets/a.js', '/assets/../evil.js', '/assets/sub/a.js', '/assets/a.js?x=1', '/src/visit/sframe-worker.ts', 'data:text/javascript,1']) {
        const code = await codeOf(Promise.resolve().then(() => M.checkWorkerScriptUrl(url, page, false)));
        if (code !== 'worker_url_refused') return `${url}: ${code}`;
      }
      const fine = M.checkWorkerScriptUrl('/assets/sframe-worker-AbC_1.js', page, false);
      return fine === 'http://127.0.0.1:1/assets/sframe-worker-AbC_1.js' || `accepted as ${fine}`;
    });

    const video = a.addTransceiver(videoTrack, { direction: 'sendonly' });
    const audio = a.addTransceiver(audioTrack, { direction: 'sendonly' });
    M.preferSFrameCodecs(video, 'video');
    M.preferSFrameCodecs(audio, 'audio');
    alice.attachSender(video.sender, 'bob');
    alice.attachSender(audio.sender, 'bob');
    b.ontrack = (event) => bob.attachReceiver(event.receiver, 'alice');
    // Bob holds Alice's key before she sends under it.
    await bob.addReceiveKey('alice', { kid: key1.kid, baseKey: key1.baseKey });
    await alice.setSendKey(key1);
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);

    await check('video and audio leave sealed: clear codec bytes, an SFrame header, one counter across both', async () => {
      const frames = await alice.probe(24);
      const kinds = new Set(frames.map((f) => f.kind));
      if (!kinds.has('video') || !kinds.has('audio')) return `only ${[...kinds].join()} frames`;
      let last = -1n;
      for (const f of frames) {
        const input = new Uint8Array(f.input);
        const output = new Uint8Array(f.output);
        const wanted = f.kind === 'audio' ? 1 : (input[0] & 1) === 0 ? 10 : 3;
        if (f.clearBytes !== wanted) return `${f.kind}: ${f.clearBytes} clear bytes, not ${wanted}`;
        if (toHex(output.subarray(0, wanted)) !== toHex(input.subarray(0, wanted))) return `${f.kind}: the codec bytes changed`;
        if (f.kid !== key1.kid) return `sealed under KID ${f.kid}, not ${key1.kid}`;
        if (f.ctr <= last) return `CTR ${f.ctr} after ${last}`;
        last = f.ctr;
        const headerBytes = output.length - input.length - 16;
        if (headerBytes < 1 || headerBytes > 17) return `${f.kind}: ${output.length} bytes out for ${input.length} in`;
        const payload = toHex(input.subarray(wanted, wanted + 8));
        if (input.length >= wanted + 8 && toHex(output).includes(payload)) return `${f.kind}: the payload left in the clear`;
      }
      return true;
    });

    await check('the receiver opens and decodes them; nothing is dropped while the keys are in place', async () => {
      if (!(await eventually(async () => (await framesDecoded()) >= 15))) return `${await framesDecoded()} video frames decoded`;
      const [sent, got] = [await alice.stats(), await bob.stats()];
      if (dropped(sent) !== 0 || dropped(got) !== 0) return `dropped: sender ${JSON.stringify(sent.dropped)}, receiver ${JSON.stringify(got.dropped)}`;
      return (sent.encrypted > 0 && got.decrypted > 0) || `sealed ${sent.encrypted}, opened ${got.decrypted}`;
    });

    const key2 = alice.createSendKey();
    await check('a rotation: the new key is given, then used; the old one goes after its grace; video goes on', async () => {
      await bob.addReceiveKey('alice', { kid: key2.kid, baseKey: key2.baseKey });
      await alice.setSendKey(key2);
      await bob.removeReceiveKey('alice', key1.kid, 300);
      const frames = await alice.probe(3);
      if (frames.some((f) => f.kid !== key2.kid)) return `after the rotation, KIDs ${frames.map((f) => f.kid).join()}`;
      const before = await framesDecoded();
      if (!(await eventually(async () => (await framesDecoded()) >= before + 15))) return 'video stopped decoding after the rotation';
      const kids = (await bob.stats()).receiveKids.alice ?? [];
      if (kids.length !== 1 || kids[0] !== key2.kid) return `Bob still holds ${kids.join()}`;
      const got = await bob.stats();
      return got.dropped.authentication_failed === 0 || `${got.dropped.authentication_failed} frames failed to authenticate`;
    });

    await check('a send key cannot be set twice (its counter would start over)', async () => {
      const code = await codeOf(alice.setSendKey(key1));
      return code === 'kid_reused' || `setting KID ${key1.kid} again: ${code}`;
    });

    await check('without the sender’s keys, frames are dropped and counted, never passed on; with them back, video resumes', async () => {
      await bob.removeParticipant('alice');
      await sleep(300);
      const [stopped, decoded] = [await bob.stats(), await framesDecoded()];
      await sleep(1_000);
      const later = await bob.stats();
      if (later.decrypted !== stopped.decrypted) return `${later.decrypted - stopped.decrypted} frames opened without a key`;
      if (later.dropped.unknown_kid <= stopped.dropped.unknown_kid) return 'no frame was counted as dropped';
      const decodedLater = await framesDecoded();
      if (decodedLater > decoded + 2) return `${decodedLater - decoded} frames decoded without a key`;
      await bob.addReceiveKey('alice', { kid: key2.kid, baseKey: key2.baseKey });
      return (await eventually(async () => (await framesDecoded()) > decodedLater + 5)) || 'video did not resume with the key back';
    });
  } finally {
    clearInterval(drawing);
    a.close();
    b.close();
    alice.close();
    bob.close();
    await audioContext.close();
  }
  return result;
}

// ------------------------------------------------------------------------------------------

async function main() {
  const input = JSON.parse(readFileSync(inputPath, 'utf8'));
  if (!input.vectors_file) throw new Error('the input names no vectors_file');
  const file = JSON.parse(readFileSync(input.vectors_file, 'utf8'));
  const vectors = { header: file.header ?? [], aead: file.aead ?? [], sframe: file.sframe ?? [] };
  const script = await bundle();
  const call = await bundleCall();
  const server = await serve(script, call);
  const browser = await launch();
  const pageErrors = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => message.type() === 'error' && pageErrors.push(message.text()));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    if (!(await page.evaluate(() => typeof window.HavenSFrame === 'object' && typeof window.inPage === 'function'))) {
      throw new Error(`the sframe bundle did not load: ${pageErrors.join('; ')}`);
    }
    const output = await page.evaluate((data) => window.inPage(data), vectors);

    const callPage = await browser.newPage();
    const callErrors = [];
    callPage.on('pageerror', (error) => callErrors.push(String(error)));
    callPage.on('console', (message) => message.type() === 'error' && callErrors.push(message.text()));
    await callPage.goto(`http://127.0.0.1:${server.address().port}/call`);
    await callPage.waitForFunction(() => typeof window.HavenMediaE2ee === 'object' && typeof window.inCall === 'function', null, {
      timeout: 30_000,
    });
    output.call = await callPage.evaluate(() => window.inCall());
    // The page's own errors count against the call: a CSP or Trusted Types violation shows
    // here. One is the call's own doing: the check that a Worker from a plain string is refused.
    const deliberate = callErrors.findIndex((error) => /requires 'TrustedScriptURL' assignment/.test(error));
    if (deliberate >= 0) callErrors.splice(deliberate, 1);
    for (const error of callErrors) output.call.failures.push(`page error: ${error}`);

    writeFileSync(outputPath, `${JSON.stringify(output, null, 2)}\n`);
    const sections = Object.entries(output.by_section).map(([name, t]) => `${name} ${t.passed}/${t.run}`);
    const checks = output.self_checks;
    console.log(
      `sframe-vectors: vectors ${output.passed}/${output.run} (${sections.join(', ')}), ` +
        `self checks ${checks.passed}/${checks.run}, call ${output.call.passed}/${output.call.run}`,
    );
    for (const failure of [...output.failures, ...checks.failures, ...output.call.failures]) console.log(`  ${failure}`);
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(`sframe-vectors: ${e?.stack ?? e}`);
  process.exit(1);
});
