// Registers a passkey for a signed-in user and signs in with it, in Debian's Chromium with a
// virtual authenticator (the CDP WebAuthn domain), exactly as a person's browser would: the
// options come from Haven, `navigator.credentials` does the ceremony, the response goes back.
//
// Input (environment): HAVEN_URL (http://localhost:PORT), HAVEN_TOKEN (a signed-in bearer
// session). Output (stdout): one JSON object describing what happened.
import { launch } from './harness.mjs';

const url = process.env.HAVEN_URL;
const token = process.env.HAVEN_TOKEN;
if (!url || !token) {
  console.error('HAVEN_URL and HAVEN_TOKEN are required');
  process.exit(2);
}

const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${url}/healthz`);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
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

  const result = await page.evaluate(async (token) => {
    const post = async (path, body, bearer) => {
      const headers = { 'content-type': 'application/json' };
      if (bearer) headers.authorization = `Bearer ${bearer}`;
      const response = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body ?? {}) });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    };
    const out = {};

    // Register a passkey to the signed-in user.
    const creation = await post('/api/v1/auth/passkeys/registration/options', {}, token);
    out.creationOptions = creation.status;
    const created = await navigator.credentials.create({
      publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(creation.body.publicKey),
    });
    const registered = await post(
      '/api/v1/auth/passkeys/registration',
      { ceremony: creation.body.ceremony, credential: created.toJSON(), name: 'test laptop' },
      token,
    );
    out.registered = registered.status;

    // Sign in with it: no login typed, the passkey names its user.
    const request = await post('/api/v1/auth/passkeys/sign-in/options');
    out.requestOptions = request.status;
    const assertion = await navigator.credentials.get({
      publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(request.body.publicKey),
    });
    const credential = assertion.toJSON();
    const signedIn = await post('/api/v1/auth/passkeys/sign-in', {
      ceremony: request.body.ceremony,
      credential,
      transport: 'bearer',
    });
    out.signIn = signedIn.status;
    out.state = signedIn.body && signedIn.body.state;
    out.token = signedIn.body && signedIn.body.token;

    // The same response again: its ceremony is spent.
    const replayed = await post('/api/v1/auth/passkeys/sign-in', {
      ceremony: request.body.ceremony,
      credential,
      transport: 'bearer',
    });
    out.replay = replayed.status;
    return out;
  }, token);

  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  result.authenticatorCredentials = credentials.length;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
