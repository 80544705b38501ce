// Runs the browser's end-to-end messaging library (web/src/e2e) inside Debian's Chromium,
// against the Rust side's fixtures, so the two implementations are held to the same bytes:
//
// - RFC 9180's test vectors for Haven's HPKE suite, through @hpke/core on Chromium's
//   WebCrypto (every mode the vectors file holds);
// - a message the Rust side sealed, opened here;
// - a message sealed here by a fresh device (non-extractable keys from device-store, kept in
//   IndexedDB), for the Rust side to open.
//
// The code runs in the page, not in Node: Chromium's WebCrypto (X25519, Ed25519,
// non-extractable keys, IndexedDB's structured clone of CryptoKeys) is what people will
// run. The library is bundled with the web app's own Vite and served from 127.0.0.1, a
// secure context, so WebCrypto is available.
//
// Usage: node e2e-interop.mjs <input.json> <output.json>   (web/ is found beside crates/, or
// at $HAVEN_WEB_DIR; it needs `npm ci` there, as the app's build does)
//
// Input:  { vectors_file, rust_sealed: { recipient_ikm, thread_id, message_id, ciphertext,
//           enc, sealed_key, signature, sender_signing_public_key },
//           browser_seal: { thread_id, message_id, text, recipient_hpke_public_key } }
// Output: { vectors: { run, passed, failures }, rust_sealed_text, browser_sealed: {
//           ciphertext, enc, sealed_key, signature, sender_signing_public_key,
//           hpke_public_key, self_signature }, self_checks: { run, passed, failures },
//           errors: { rust_sealed?, browser_seal? } }
// Binary values are standard padded base64. A section missing from the input is null in the
// output. The output is written whenever the page ran; the caller judges it. The exit code
// is 1 only if nothing could be run (bundle, browser, page).
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleLibrary, launch } from './harness.mjs';

/** The whole run, bundling included; the vectors take a few seconds. */
const RUN_TIMEOUT_MS = 180_000;

const here = dirname(fileURLToPath(import.meta.url));
const webDir = process.env.HAVEN_WEB_DIR ?? resolve(here, '../../../../web');

const [inputPath, outputPath] = process.argv.slice(2);
if (!inputPath || !outputPath) {
  console.error('usage: node e2e-interop.mjs <input.json> <output.json>');
  process.exit(2);
}

const timer = setTimeout(() => {
  console.error(`e2e-interop: gave up after ${RUN_TIMEOUT_MS} ms`);
  process.exit(1);
}, RUN_TIMEOUT_MS);
timer.unref();

/** web/src/e2e as one IIFE script defining `window.HavenE2E`, built with the web app's Vite. */
function bundle() {
  return bundleLibrary(webDir, 'src/e2e/index.ts', 'HavenE2E');
}

/**
 * A page at http://127.0.0.1:<port>/ (a secure context) that loads the bundle, then the
 * page-side functions below as a classic script, so they are globals the test calls.
 */
async function serve(script) {
  const pageFunctions = `${selfChecks.toString()}\n${inPage.toString()}\n`;
  const page =
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>Haven e2e interop</title>' +
    '<script src="/e2e.js"></script><script src="/interop.js"></script></html>';
  const server = createServer((request, response) => {
    if (request.url === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
    } else if (request.url === '/e2e.js') {
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
    } else if (request.url === '/interop.js') {
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(pageFunctions);
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise((ready) => server.listen(0, '127.0.0.1', ready));
  return server;
}

// ------------------------------------------------------------------------------------------
// What runs in the page: `inPage` and `selfChecks` are served as source into Chromium, so
// they may use only the page's globals and `window.HavenE2E`.
// ------------------------------------------------------------------------------------------

async function inPage(input) {
  const E = window.HavenE2E;
  const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
  const toHex = (bytes) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
  const b64 = (text) => E.decodeBase64(text);
  const toB64 = (bytes) => E.encodeBase64(new Uint8Array(bytes));
  const describe = (e) => (e instanceof Error ? `${e.name}${e.code ? ` (${e.code})` : ''}: ${e.message}` : String(e));

  if (!window.isSecureContext) throw new Error('the page is not a secure context');
  const out = { vectors: null, rust_sealed_text: null, browser_sealed: null, self_checks: null, errors: {} };

  // RFC 9180 Appendix A.1 with @hpke/core on Chromium's WebCrypto.
  async function runVector(vector) {
    const problems = [];
    const check = (ok, what) => ok || problems.push(what);
    const suite = E.havenHpkeSuite();
    check(vector.kem_id === 0x20 && vector.kdf_id === 0x01 && vector.aead_id === 0x01, 'not Haven’s suite');
    const info = fromHex(vector.info);
    const recipient = await suite.kem.deriveKeyPair(fromHex(vector.ikmR));
    check(toHex(await suite.kem.serializePublicKey(recipient.publicKey)) === vector.pkRm, 'pkRm');
    if (vector.skRm) check(toHex(await suite.kem.serializePrivateKey(recipient.privateKey)) === vector.skRm, 'skRm');
    const ephemeral = await suite.kem.deriveKeyPair(fromHex(vector.ikmE));
    check(toHex(await suite.kem.serializePublicKey(ephemeral.publicKey)) === vector.pkEm, 'pkEm');
    const withPsk = vector.mode === 1 || vector.mode === 3;
    const withAuth = vector.mode === 2 || vector.mode === 3;
    const psk = withPsk ? { id: fromHex(vector.psk_id), key: fromHex(vector.psk) } : undefined;
    let sender;
    if (withAuth) {
      sender = await suite.kem.deriveKeyPair(fromHex(vector.ikmS));
      check(toHex(await suite.kem.serializePublicKey(sender.publicKey)) === vector.pkSm, 'pkSm');
    }
    const senderContext = await suite.createSenderContext({
      recipientPublicKey: recipient.publicKey,
      ekm: ephemeral,
      info,
      ...(psk ? { psk } : {}),
      ...(sender ? { senderKey: sender } : {}),
    });
    check(toHex(senderContext.enc) === vector.enc, 'enc');
    const recipientContext = await suite.createRecipientContext({
      recipientKey: recipient,
      enc: fromHex(vector.enc),
      info,
      ...(psk ? { psk } : {}),
      ...(sender ? { senderPublicKey: sender.publicKey } : {}),
    });
    // The RFC prints encryptions at chosen sequence numbers; the contexts count every seal
    // and open, so the ones in between are sealed and opened too and their results dropped.
    let sequence = 0;
    for (const encryption of [...vector.encryptions].sort((a, b) => a.seq - b.seq)) {
      for (; sequence < encryption.seq; sequence += 1) {
        await recipientContext.open(await senderContext.seal(new Uint8Array(0)));
      }
      const aad = fromHex(encryption.aad);
      check(toHex(await senderContext.seal(fromHex(encryption.pt), aad)) === encryption.ct, `ct at seq ${encryption.seq}`);
      const opened = await recipientContext.open(fromHex(encryption.ct), aad).catch(() => null);
      check(opened !== null && toHex(opened) === encryption.pt, `open at seq ${encryption.seq}`);
      sequence += 1;
    }
    for (const exported of vector.exports) {
      const context = fromHex(exported.exporter_context);
      check(toHex(await senderContext.export(context, exported.L)) === exported.exported_value, `sender export L=${exported.L}`);
      check(toHex(await recipientContext.export(context, exported.L)) === exported.exported_value, `recipient export L=${exported.L}`);
    }
    return problems;
  }

  if (input.vectors) {
    const result = { run: 0, passed: 0, failures: [] };
    for (const [index, vector] of input.vectors.entries()) {
      result.run += 1;
      const label = `vector ${index} (mode ${vector.mode})`;
      try {
        const problems = await runVector(vector);
        if (problems.length === 0) result.passed += 1;
        else result.failures.push(`${label}: ${problems.join(', ')}`);
      } catch (e) {
        result.failures.push(`${label}: ${describe(e)}`);
      }
    }
    out.vectors = result;
  }

  // A message the Rust side sealed, opened with the key pair its IKM derives.
  if (input.rust_sealed) {
    const sealed = input.rust_sealed;
    try {
      const recipientKey = await E.havenHpkeSuite().kem.deriveKeyPair(b64(sealed.recipient_ikm));
      const plaintext = await E.openMessage({
        threadId: sealed.thread_id,
        messageId: sealed.message_id,
        ciphertext: b64(sealed.ciphertext),
        enc: b64(sealed.enc),
        sealedKey: b64(sealed.sealed_key),
        signature: b64(sealed.signature),
        senderSigningKey: b64(sealed.sender_signing_public_key),
        recipientKey,
      });
      out.rust_sealed_text = E.decodeMessageBody(plaintext).text;
    } catch (e) {
      out.errors.rust_sealed = describe(e);
    }
  }

  // A message sealed here by a fresh device, read back from IndexedDB as a later visit would.
  if (input.browser_seal) {
    const seal = input.browser_seal;
    try {
      const userId = crypto.randomUUID();
      await E.createDevice(userId);
      const device = await E.loadDevice(userId);
      if (device === null) throw new Error('the device was not stored');
      if (device.hpke.privateKey.extractable || device.signing.privateKey.extractable) {
        throw new Error('the stored device has extractable private keys');
      }
      const description = await E.describeDevice(device);
      const sealed = await E.sealMessage({
        threadId: seal.thread_id,
        messageId: seal.message_id,
        plaintext: E.encodeMessageBody({ text: seal.text, attachments: [] }),
        recipients: [{ deviceId: 'interop-recipient', hpkePublicKey: b64(seal.recipient_hpke_public_key) }],
        signer: device.signing.privateKey,
      });
      out.browser_sealed = {
        ciphertext: toB64(sealed.ciphertext),
        enc: toB64(sealed.keys[0].enc),
        sealed_key: toB64(sealed.keys[0].sealed_key),
        signature: toB64(sealed.signature),
        sender_signing_public_key: toB64(description.signingPublicKey),
        hpke_public_key: toB64(description.hpkePublicKey),
        self_signature: toB64(description.selfSignature),
      };
      await E.deleteDevice(userId);
    } catch (e) {
      out.errors.browser_seal = describe(e);
    }
  }

  out.self_checks = await selfChecks(E, { fromHex, toHex, describe });
  return out;
}

/**
 * Checks of the library that need no Rust fixture, each a behaviour a person would notice:
 * known answers, tampering refused, keys that stay non-extractable and survive a reload.
 */
async function selfChecks(E, { fromHex, toHex, describe }) {
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
  /** Resolves to the E2eError/DeviceStoreError code the promise rejects with, or 'resolved'. */
  const codeOf = (promise) => promise.then(() => 'resolved', (e) => e.code ?? describe(e));
  const expectCode = (actual, wanted) => actual === wanted || `expected ${wanted}, got ${actual}`;
  const ids = () => [crypto.randomUUID(), crypto.randomUUID()];
  const sha = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const concat = (...parts) => E.concatBytes(...parts);

  // RFC 9162's tree, by its recursive definition, written here apart from the library.
  const split = (n) => 2 ** Math.floor(Math.log2(n - 1));
  const mth = async (leaves) => {
    if (leaves.length === 1) return leaves[0];
    const k = split(leaves.length);
    return sha(concat(Uint8Array.of(1), await mth(leaves.slice(0, k)), await mth(leaves.slice(k))));
  };
  const path = async (m, leaves) => {
    if (leaves.length === 1) return [];
    const k = split(leaves.length);
    return m < k
      ? [...(await path(m, leaves.slice(0, k))), await mth(leaves.slice(k))]
      : [...(await path(m - k, leaves.slice(k))), await mth(leaves.slice(0, k))];
  };
  const leavesOf = (n) => Promise.all(Array.from({ length: n }, (_, i) => sha(Uint8Array.of(0, i))));

  const auditEntry = (fields) => ({
    seq: 1,
    at: '2026-11-18T19:06:40Z',
    at_ms: 1_795_000_000_000,
    actor: null,
    role: null,
    organisation: null,
    session: null,
    client_app: null,
    action: 'read',
    patient: null,
    resource_type: null,
    resource_id: null,
    outcome: 'allowed',
    reason: '',
    purpose_of_use: null,
    request_id: null,
    source_ip: null,
    user_agent: null,
    ...fields,
  });

  await check('leaf hash known answer (crates/audit the_canonical_encoding_is_stable)', async () => {
    const hash = toHex(
      await E.leafHash(
        auditEntry({
          actor: 'token-1',
          role: 'nurse',
          patient: '0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e',
          resource_type: 'Patient',
          reason: 'clinical_staff_demographics_read',
          purpose_of_use: 'TREAT',
        }),
      ),
    );
    return hash === 'af5e26c8b05b5c13079b6be951c67de1bf82ca59340e3ace6fc7a02e532bcca6' || `got ${hash}`;
  });

  await check('inclusion proofs verify at every index of trees of 1 to 40 leaves, and altered ones fail', async () => {
    for (let n = 1; n <= 40; n += 1) {
      const leaves = await leavesOf(n);
      const root = await mth(leaves);
      for (let m = 0; m < n; m += 1) {
        const proof = await path(m, leaves);
        if (!(await E.verifyInclusion(m, n, leaves[m], proof, root))) return `index ${m} of ${n} failed`;
        if (n > 1 && (await E.verifyInclusion((m + 1) % n, n, leaves[m], proof, root))) return `moved leaf ${m} of ${n} passed`;
        // (A different size can verify the same path: the size is bound by the signed checkpoint.)
        if (await E.verifyInclusion(n, n, leaves[m], proof, root)) return `an index past the tree of ${n} passed`;
        if (proof.length > 0) {
          const altered = proof.map((p) => p.slice());
          altered[0][0] ^= 1;
          if (await E.verifyInclusion(m, n, leaves[m], altered, root)) return `altered path ${m} of ${n} passed`;
          if (await E.verifyInclusion(m, n, leaves[m], proof.slice(1), root)) return `short path ${m} of ${n} passed`;
        }
        if (await E.verifyInclusion(m, n, leaves[m], [...proof, root], root)) return `long path ${m} of ${n} passed`;
      }
    }
    return true;
  });

  // A log key and checkpoints made as crates/audit/src/checkpoint.rs makes them.
  const LOG = 'haven.test/audit';
  const logKeys = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']);
  const logPublic = new Uint8Array(await crypto.subtle.exportKey('raw', logKeys.publicKey));
  const keyHash = (await sha(concat(E.utf8Bytes(`${LOG}\n`), Uint8Array.of(1), logPublic))).slice(0, 4);
  const vkey = `${LOG}+${toHex(keyHash)}+${E.encodeBase64(concat(Uint8Array.of(1), logPublic))}`;
  const signNote = async (body, keys = logKeys, hash = keyHash) => {
    const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', keys.privateKey, E.utf8Bytes(body)));
    return `${body}\n\u2014 ${LOG} ${E.encodeBase64(concat(hash, signature))}\n`;
  };
  const noteOf = (size, root) => signNote(`${LOG}\n${size}\n${E.encodeBase64(root)}\n`);

  await check('checkpoints: parsed, verified, and forged or foreign ones told apart', async () => {
    const root = await sha(Uint8Array.of(7));
    const note = await noteOf(12, root);
    const parsed = E.parseCheckpoint(note);
    if (parsed.origin !== LOG || parsed.size !== 12 || toHex(parsed.root) !== toHex(root)) return 'parse';
    const good = await E.verifyCheckpoint(note, vkey);
    if (!good.signatureValid || good.signedBy !== LOG || good.size !== 12) return 'a good checkpoint failed';
    const forged = note.replace(`\n12\n`, `\n13\n`);
    if ((await E.verifyCheckpoint(forged, vkey)).signatureValid) return 'a changed size passed';
    const otherKeys = await crypto.subtle.generateKey('Ed25519', true, ['sign', 'verify']);
    if ((await E.verifyCheckpoint(await signNote(`${LOG}\n12\n${E.encodeBase64(root)}\n`, otherKeys), vkey)).signatureValid) {
      return 'a signature by another key under the same key hash passed';
    }
    const foreign = await codeOf(E.verifyCheckpoint(note.replaceAll(LOG, 'other.test/audit'), vkey));
    if (foreign === 'resolved') return 'another log’s checkpoint was accepted';
    if ((await codeOf(E.verifyCheckpoint(note, vkey.replace(/\+[0-9a-f]{8}\+/, '+00000000+')))) === 'resolved') {
      return 'a verifier key with a wrong hash was accepted';
    }
    return true;
  });

  // This browser's device, as device-store keeps it.
  const userId = crypto.randomUUID();
  const device = await E.createDevice(userId);
  const description = await E.describeDevice(device);

  await check('device keys: private halves non-extractable, kept across a reload, one per user, deleted on request', async () => {
    if (device.hpke.privateKey.extractable || device.signing.privateKey.extractable) return 'extractable';
    const exported = await crypto.subtle.exportKey('raw', device.hpke.privateKey).then(() => 'exported', () => 'refused');
    if (exported !== 'refused') return 'the X25519 private key could be exported';
    const loaded = await E.loadDevice(userId);
    const again = await E.describeDevice(loaded);
    if (toHex(again.hpkePublicKey) !== toHex(description.hpkePublicKey) || again.fingerprint !== description.fingerprint) {
      return 'the stored device is not the one created';
    }
    if (loaded.hpke.privateKey.extractable || loaded.signing.privateKey.extractable) return 'extractable after a reload';
    const twice = await codeOf(E.createDevice(userId));
    if (twice !== 'device_exists') return `a second device for the same user: ${twice}`;
    const otherUser = crypto.randomUUID();
    await E.createDevice(otherUser);
    await E.deleteDevice(otherUser);
    if ((await E.loadDevice(otherUser)) !== null) return 'a deleted device is still there';
    if ((await E.loadDevice(userId)) === null) return 'deleting one user’s device deleted another’s';
    return true;
  });

  await check('device self-signature and fingerprint', async () => {
    if (!(await E.verifyDeviceSelfSignature(description, description.selfSignature))) return 'own signature refused';
    const other = await E.describeDevice(await E.createDevice(crypto.randomUUID()));
    const mixed = { hpkePublicKey: other.hpkePublicKey, signingPublicKey: description.signingPublicKey };
    if (await E.verifyDeviceSelfSignature(mixed, description.selfSignature)) return 'another HPKE key under this signature passed';
    const identity = concat(E.utf8Bytes('haven.device.v1\n'), description.hpkePublicKey, description.signingPublicKey);
    if (description.fingerprint !== toHex(await sha(identity))) return 'fingerprint';
    return true;
  });

  await check('safety numbers: five-digit groups of 40-bit big-endian values', async () => {
    const number = E.safetyNumber('ff'.repeat(32));
    if (number !== Array(6).fill('27775').join(' ')) return `got ${number}`;
    const digits = E.safetyNumber(description.fingerprint);
    return /^\d{5}( \d{5}){5}$/.test(digits) || `got ${digits}`;
  });

  await check('a message opens on every recipient device with a non-extractable key pair, and on no other', async () => {
    const [thread, message] = ids();
    const reader = await E.createDevice(crypto.randomUUID());
    const readerKeys = await E.describeDevice(reader);
    const outsider = await E.createDevice(crypto.randomUUID());
    const body = { text: 'Your results are in ✓', attachments: [] };
    const sealed = await E.sealMessage({
      threadId: thread,
      messageId: message,
      plaintext: E.encodeMessageBody(body),
      recipients: [
        { deviceId: 'reader', hpkePublicKey: readerKeys.hpkePublicKey },
        { deviceId: 'sender', hpkePublicKey: description.hpkePublicKey },
      ],
      signer: device.signing.privateKey,
    });
    const open = (key, recipientKey, overrides = {}) =>
      E.openMessage({
        threadId: thread,
        messageId: message,
        ciphertext: sealed.ciphertext,
        enc: key.enc,
        sealedKey: key.sealed_key,
        signature: sealed.signature,
        senderSigningKey: description.signingPublicKey,
        recipientKey,
        ...overrides,
      });
    const [toReader, toSender] = sealed.keys;
    if (E.decodeMessageBody(await open(toReader, reader.hpke)).text !== body.text) return 'the reader did not read it';
    if (E.decodeMessageBody(await open(toSender, device.hpke)).text !== body.text) return 'the sender’s own device did not read it';
    const outsiderCode = await codeOf(open(toReader, outsider.hpke));
    if (outsiderCode !== 'sealed_key_refused') return `an outsider: ${outsiderCode}`;
    const altered = sealed.ciphertext.slice();
    altered[20] ^= 1;
    const alteredCode = await codeOf(open(toReader, reader.hpke, { ciphertext: altered }));
    if (alteredCode !== 'bad_signature') return `an altered body: ${alteredCode}`;
    const forgerCode = await codeOf(open(toReader, reader.hpke, { senderSigningKey: readerKeys.signingPublicKey }));
    if (forgerCode !== 'bad_signature') return `another claimed sender: ${forgerCode}`;
    const movedCode = await codeOf(open(toReader, reader.hpke, { messageId: crypto.randomUUID() }));
    if (movedCode !== 'bad_signature') return `another message id: ${movedCode}`;
    const upperCode = await codeOf(open(toReader, reader.hpke, { threadId: thread.toUpperCase() }));
    if (upperCode !== 'malformed') return `an uppercase id: ${upperCode}`;
    return true;
  });

  // Informational for @hpke/core: without the public half, it recomputes it from the private
  // key (exporting a JWK, then falling back to a DH with the base point).
  await check('a bare non-extractable X25519 private key opens too', async () => {
    const [thread, message] = ids();
    const sealed = await E.sealMessage({
      threadId: thread,
      messageId: message,
      plaintext: E.encodeMessageBody({ text: 'x', attachments: [] }),
      recipients: [{ deviceId: 'self', hpkePublicKey: description.hpkePublicKey }],
      signer: device.signing.privateKey,
    });
    const opened = await E.openMessage({
      threadId: thread,
      messageId: message,
      ciphertext: sealed.ciphertext,
      enc: sealed.keys[0].enc,
      sealedKey: sealed.keys[0].sealed_key,
      signature: sealed.signature,
      senderSigningKey: description.signingPublicKey,
      recipientKey: device.hpke.privateKey,
    });
    return E.decodeMessageBody(opened).text === 'x' || 'wrong text';
  });

  await check('an all-zero or short HPKE key is refused when sealing', async () => {
    const [thread, message] = ids();
    for (const hpkePublicKey of [new Uint8Array(32), new Uint8Array(31)]) {
      const code = await codeOf(
        E.sealMessage({ threadId: thread, messageId: message, plaintext: new Uint8Array(1), recipients: [{ deviceId: 'bad', hpkePublicKey }], signer: device.signing.privateKey }),
      );
      if (code !== 'malformed') return `${hpkePublicKey.length} bytes: ${code}`;
    }
    return true;
  });

  await check('attachments open only under their own id, key and digest', async () => {
    const id = crypto.randomUUID();
    const file = E.utf8Bytes('%PDF-1.7 scan');
    const sealed = await E.sealAttachment({ attachmentId: id, file });
    const opened = await E.openAttachment({ attachmentId: id, key: sealed.key, blob: sealed.blob, sha256: sealed.sha256 });
    if (toHex(opened) !== toHex(file)) return 'round trip';
    if (sealed.blob.length !== 12 + file.length + 16) return 'blob length';
    const moved = await codeOf(E.openAttachment({ attachmentId: crypto.randomUUID(), key: sealed.key, blob: sealed.blob }));
    if (moved !== 'decryption_failed') return `another id: ${moved}`;
    const digest = await codeOf(E.openAttachment({ attachmentId: id, key: sealed.key, blob: sealed.blob, sha256: new Uint8Array(32) }));
    return expectCode(digest, 'digest_mismatch');
  });

  await check('message bodies: exact JSON out, unknown versions and fields refused', async () => {
    const attachment = { id: crypto.randomUUID(), name: 'scan.pdf', type: 'application/pdf', size: 13, key: new Uint8Array(32).fill(1), sha256: new Uint8Array(32).fill(2) };
    const encoded = new TextDecoder().decode(E.encodeMessageBody({ text: 'hi', attachments: [attachment] }));
    const wanted = `{"v":1,"text":"hi","attachments":[{"id":"${attachment.id}","name":"scan.pdf","type":"application/pdf","size":13,"key":"${E.encodeBase64(attachment.key)}","sha256":"${E.encodeBase64(attachment.sha256)}"}]}`;
    if (encoded !== wanted) return `encoded ${encoded}`;
    const decoded = E.decodeMessageBody(E.utf8Bytes(wanted));
    if (decoded.attachments[0].size !== 13 || toHex(decoded.attachments[0].key) !== toHex(attachment.key)) return 'decoded';
    const refusals = [
      ['{"v":2,"text":"hi","attachments":[]}', 'unsupported'],
      ['{"text":"hi","attachments":[]}', 'unsupported'],
      ['{"v":1,"text":"hi","attachments":[],"extra":1}', 'malformed'],
      ['{"v":1,"text":5,"attachments":[]}', 'malformed'],
      ['{"v":1,"text":"hi"}', 'malformed'],
      ['[1]', 'malformed'],
      [wanted.replace('"size":13', '"size":-1'), 'malformed'],
      [wanted.replace('"size":13', '"size":"13"'), 'malformed'],
      [wanted.replace(E.encodeBase64(attachment.key), 'AQ=='), 'malformed'],
    ];
    for (const [json, code] of refusals) {
      const actual = await codeOf(Promise.resolve().then(() => E.decodeMessageBody(E.utf8Bytes(json))));
      if (actual !== code) return `${json}: ${actual}`;
    }
    const invalidUtf8 = await codeOf(Promise.resolve().then(() => E.decodeMessageBody(Uint8Array.of(0x7b, 0xff, 0x7d))));
    return expectCode(invalidUtf8, 'malformed');
  });

  await check('base64 is standard and padded only', async () => {
    if (E.encodeBase64(fromHex('fbff')) !== '+/8=') return 'alphabet';
    for (const text of ['-_8=', '+/8', '+/9=', ' +/8=']) {
      if ((await codeOf(Promise.resolve().then(() => E.decodeBase64(text)))) !== 'malformed') return `accepted ${JSON.stringify(text)}`;
    }
    return true;
  });

  await check('a device registration is proven by the log, and a wrong one is named', async () => {
    const published = { userId, hpkePublicKey: description.hpkePublicKey, signingPublicKey: description.signingPublicKey };
    const entry = auditEntry({
      seq: 6,
      actor: userId,
      action: 'device_add',
      resource_type: 'Device',
      resource_id: description.fingerprint,
      reason: 'own_device',
    });
    const leaves = await leavesOf(9);
    leaves[5] = await E.leafHash(entry);
    const root = await mth(leaves);
    const proof = { leaf_index: 5, leaf_hash: E.encodeBase64(leaves[5]), path: (await path(5, leaves)).map((h) => E.encodeBase64(h)) };
    const note = await noteOf(9, root);
    const verdict = await E.verifyDeviceEntry(published, entry, proof, note, vkey);
    if (!verdict.verified) return `refused: ${verdict.reason}`;
    const wrong = [
      [{ ...published, userId: crypto.randomUUID() }, entry, proof, note],
      [published, { ...entry, action: 'device_remove' }, proof, note],
      [published, { ...entry, outcome: 'denied' }, proof, note],
      [{ ...published, hpkePublicKey: new Uint8Array(32).fill(9) }, entry, proof, note],
      [published, { ...entry, at_ms: entry.at_ms + 1 }, proof, note],
      [published, entry, { ...proof, leaf_index: 4 }, note],
      [published, entry, null, note],
      [published, entry, proof, note.replace('\n9\n', '\n10\n')],
      [published, entry, proof, await noteOf(9, await sha(Uint8Array.of(1)))],
    ];
    for (const [i, args] of wrong.entries()) {
      const refused = await E.verifyDeviceEntry(...args, vkey);
      if (refused.verified || !refused.reason) return `case ${i} passed`;
    }
    return true;
  });

  return result;
}

// ------------------------------------------------------------------------------------------

async function main() {
  const input = JSON.parse(readFileSync(inputPath, 'utf8'));
  const pageInput = {
    vectors: input.vectors_file ? JSON.parse(readFileSync(input.vectors_file, 'utf8')).vectors : null,
    rust_sealed: input.rust_sealed ?? null,
    browser_seal: input.browser_seal ?? null,
  };
  const script = await bundle();
  const server = await serve(script);
  const browser = await launch();
  const pageErrors = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => message.type() === 'error' && pageErrors.push(message.text()));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    if (!(await page.evaluate(() => typeof window.HavenE2E === 'object' && typeof window.inPage === 'function'))) {
      throw new Error(`the e2e bundle did not load: ${pageErrors.join('; ')}`);
    }
    const output = await page.evaluate((data) => window.inPage(data), pageInput);
    writeFileSync(outputPath, `${JSON.stringify(output, null, 2)}\n`);
    const { vectors, self_checks: checks, errors } = output;
    console.log(
      `e2e-interop: vectors ${vectors ? `${vectors.passed}/${vectors.run}` : 'not run'}, ` +
        `self checks ${checks.passed}/${checks.run}, ` +
        `rust_sealed ${input.rust_sealed ? (errors.rust_sealed ? 'FAILED' : 'opened') : 'not run'}, ` +
        `browser_seal ${input.browser_seal ? (errors.browser_seal ? 'FAILED' : 'sealed') : 'not run'}`,
    );
    for (const failure of [...(vectors?.failures ?? []), ...checks.failures, ...Object.values(errors)]) console.log(`  ${failure}`);
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(`e2e-interop: ${e?.stack ?? e}`);
  process.exit(1);
});
