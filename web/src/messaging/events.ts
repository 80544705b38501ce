// The event stream: one WebSocket per tab while someone is signed in, on which Haven nudges
// the app (a message arrived, someone read, the participants or someone's devices changed).
// Nudges carry ids and positions, never content: the app fetches what changed itself.
//
// A dropped stream is opened again with a growing pause (so a restarting server is not
// hammered by every tab at once), and listeners are told `reconnected`, since nudges sent
// while the stream was down are lost. Closing it is the sign-out's job.
import { apiInBackground } from '../api';

export type HavenEvent =
  | { type: 'message'; thread: string; seq: number }
  | { type: 'read'; thread: string; user: string; seq: number }
  | { type: 'participants'; thread: string }
  | { type: 'devices'; user: string }
  /** Not from Haven: the stream was down a while, and nudges may have been missed. */
  | { type: 'reconnected' };

/** The first pause before opening a dropped stream again, then doubled each time. */
const RETRY_MS_MIN = 1000;
/** The longest pause between attempts. */
const RETRY_MS_MAX = 30_000;

function parse(data: unknown): HavenEvent | null {
  if (typeof data !== 'string') return null;
  let event: Record<string, unknown>;
  try {
    event = JSON.parse(data) as Record<string, unknown>;
  } catch {
    return null;
  }
  const text = (field: string) => typeof event[field] === 'string';
  const number = (field: string) => typeof event[field] === 'number';
  switch (event.type) {
    case 'message':
      return text('thread') && number('seq') ? (event as HavenEvent) : null;
    case 'read':
      return text('thread') && text('user') && number('seq') ? (event as HavenEvent) : null;
    case 'participants':
      return text('thread') ? (event as HavenEvent) : null;
    case 'devices':
      return text('user') ? (event as HavenEvent) : null;
    default:
      // A kind this app does not know yet: nothing to do.
      return null;
  }
}

export class EventStream {
  private socket: WebSocket | null = null;
  private readonly listeners = new Set<(event: HavenEvent) => void>();
  private retryMs = RETRY_MS_MIN;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private opened = false;
  private closed = false;

  constructor() {
    this.connect();
  }

  /** Calls `listener` with every event until the returned function is called. */
  subscribe(listener: (event: HavenEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the stream for good (signing out). */
  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.listeners.clear();
    this.socket?.close(1000, 'signed_out');
    this.socket = null;
  }

  private emit(event: HavenEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }

  private connect(): void {
    if (this.closed) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}/api/v1/events`);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = RETRY_MS_MIN;
      if (this.opened) this.emit({ type: 'reconnected' });
      this.opened = true;
    };
    socket.onmessage = (message) => {
      const event = parse(message.data);
      if (event) this.emit(event);
    };
    socket.onclose = (close) => {
      if (this.closed || this.socket !== socket) return;
      this.socket = null;
      if (close.reason === 'session_ended') {
        // The session is over on Haven's side (timed out, or ended elsewhere): asking once
        // lets the app learn it and show the sign-in page; nothing is opened again.
        apiInBackground('GET', '/api/v1/auth/session').catch(() => undefined);
        return;
      }
      const pause = this.retryMs * (0.75 + Math.random() / 2);
      this.retryMs = Math.min(RETRY_MS_MAX, this.retryMs * 2);
      this.retryTimer = setTimeout(() => this.connect(), pause);
    };
  }
}
