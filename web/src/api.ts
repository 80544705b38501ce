// The one way the web app talks to Haven: same-origin fetch, JSON in and out.
//
// The session travels in Haven's `__Host-` cookie, which script cannot read. Every change
// (any method but GET) carries the session's CSRF token, which the app holds in memory only,
// so nothing that could act for the user is ever written to storage on a shared computer.

/** A refusal or failure, with Haven's stable code and its message for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The policy's reason for a refusal (`no_care_relationship`), when Haven gives one. */
    readonly reason: string | null = null,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;

/** Remembers (in memory) the CSRF token of the session just opened, or forgets it. */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** The 401 codes that mean the session is over (not, say, a wrong password at step-up). */
const SESSION_OVER = new Set(['session_idle_timeout', 'session_expired', 'session_revoked', 'unknown_session', 'unauthenticated']);

/**
 * Tabs of the app in one browser share a session (one cookie), so they share its life: when
 * Haven was last reached with it, and its end. A tab left idle must not sign out a person
 * working in another, and a sign-out in one must wipe them all.
 */
const tabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel('haven-session') : null;

/** Subscribers learn when the session ended: a time-out, a sign-out here, in another tab or elsewhere. */
const sessionEndListeners = new Set<() => void>();
export function onSessionEnded(listener: () => void): () => void {
  sessionEndListeners.add(listener);
  return () => sessionEndListeners.delete(listener);
}
function sessionEnded(): void {
  for (const listener of sessionEndListeners) listener();
}

/** Tells the other tabs that this one signed out (they wipe what they show). */
export function announceSignOut(): void {
  tabs?.postMessage({ kind: 'signed-out' });
}

/**
 * When a request that Haven counted as activity last began (Haven counts idleness from when
 * it received a request, so the start is what matters), in this tab or another.
 */
export let lastServerContactMs = Date.now();
function contacted(atMs: number, tell: boolean): void {
  if (atMs <= lastServerContactMs) return;
  lastServerContactMs = atMs;
  if (tell) tabs?.postMessage({ kind: 'contact', atMs });
}
tabs?.addEventListener('message', (event: MessageEvent) => {
  const message = event.data as { kind?: string; atMs?: number };
  if (message.kind === 'contact' && typeof message.atMs === 'number') contacted(message.atMs, false);
  if (message.kind === 'signed-out') sessionEnded();
});

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

async function request(method: Method, path: string, body: unknown, accept: string, person = true): Promise<Response> {
  if (body === undefined) return send(method, path, { accept }, undefined, person);
  const contentType = path.startsWith('/fhir') ? 'application/fhir+json' : 'application/json';
  return send(method, path, { accept, 'content-type': contentType }, JSON.stringify(body), person);
}

/**
 * `person`: whether a person's act caused the request. One the app makes by itself (a
 * refresh after a nudge on the event stream) does not count as activity for the idle
 * time-out here, so a busy conversation on an unattended screen still signs out.
 */
async function send(
  method: Method,
  path: string,
  headers: Record<string, string>,
  body?: BodyInit,
  person = true,
): Promise<Response> {
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const startedMs = Date.now();
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body,
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'Haven could not be reached. Check your connection and try again.');
  }
  // Haven answered with the session (not a proxy's 5xx, not a refusal of the session).
  if (person && response.status !== 401 && response.status < 500) contacted(startedMs, true);
  if (response.ok) return response;
  const failure = await describeFailure(response);
  if (response.status === 401 && SESSION_OVER.has(failure.code) && !path.startsWith('/api/v1/auth/sign-in')) {
    sessionEnded();
  }
  throw failure;
}

async function describeFailure(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = `Haven answered ${response.status} ${response.statusText}.`;
  let reason: string | null = null;
  try {
    const body = await response.json();
    if (body?.error?.message) {
      code = String(body.error.code ?? code);
      message = String(body.error.message);
      reason = body.error.reason ?? null;
    } else if (body?.resourceType === 'OperationOutcome' && Array.isArray(body.issue)) {
      code = String(body.issue[0]?.code ?? code);
      message = body.issue
        .map((issue: { diagnostics?: string; expression?: string[] }) =>
          [issue.diagnostics, issue.expression?.join(', ')].filter(Boolean).join(' at '),
        )
        .join('; ');
    }
  } catch {
    // Not JSON (a proxy's page, say): the status line is all there is to say.
  }
  return new ApiError(response.status, code, sentence(message), reason);
}

/** Haven's messages are lower-case clauses; a person reads them as sentences. */
function sentence(message: string): string {
  const text = message.trim();
  if (!text) return text;
  const capitalised = text[0]!.toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

/** The JSON of an answer, or `undefined` when it has no body (204, or a 201 with none). */
async function json<T>(response: Response): Promise<T> {
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A JSON call to Haven's API. */
export async function api<T>(method: Method, path: string, body?: unknown): Promise<T> {
  return json<T>(await request(method, path, body, 'application/json'));
}

/** A JSON call the app makes by itself, not for a person's act: it is not activity. */
export async function apiInBackground<T>(method: Method, path: string, body?: unknown): Promise<T> {
  return json<T>(await request(method, path, body, 'application/json', false));
}

/** A plain-text answer (signed checkpoints, keys). */
export async function apiText(path: string, person = true): Promise<string> {
  return (await request('GET', path, undefined, 'text/plain', person)).text();
}

/** A FHIR call (`application/fhir+json`). */
export async function fhir<T>(method: Method, path: string, body?: unknown): Promise<T> {
  return json<T>(await request(method, `/fhir/${path}`, body, 'application/fhir+json'));
}

/**
 * Sends bytes as they are (a sealed attachment, a file for the chart) with their media type
 * and any further headers, and reads the JSON answer.
 */
export async function apiUpload<T>(
  method: 'PUT' | 'POST',
  path: string,
  bytes: Uint8Array<ArrayBuffer>,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<T> {
  const accept = path.startsWith('/fhir') ? 'application/fhir+json' : 'application/json';
  return json<T>(await send(method, path, { ...headers, accept, 'content-type': contentType }, bytes));
}

/** An answer's bytes (a sealed attachment). */
export async function apiBytes(path: string): Promise<Uint8Array<ArrayBuffer>> {
  const response = await send('GET', path, { accept: 'application/octet-stream' });
  return new Uint8Array(await response.arrayBuffer());
}

/** A message fit to show a person for any failure. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  // A fault of the app itself: the person gets a plain sentence, the console the detail.
  console.error(error);
  return 'Something went wrong. Please try again.';
}
