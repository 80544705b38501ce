// A visit's signaling socket (`/api/v1/visits/{appointment}/signal`): the waiting room and
// what the call's browsers send each other through Haven (session descriptions, ICE
// candidates, sealed media keys and chat). Haven relays those as opaque text.
//
// A socket that drops for a network reason is opened again with a growing pause; Haven keeps
// the member's place (and admission) for a grace period, so the call resumes. A close that
// Haven gives a final reason for (declined, ended, replaced by another tab, left, session
// ended) is not retried: the page says why.

/** A member of the visit, as Haven describes them. */
export interface Member {
  id: number;
  user: string | null;
  guest: string | null;
  role: 'host' | 'patient' | 'guest';
  admission: 'waiting' | 'admitted';
  connected: boolean;
  /** Fingerprint of the device they take part from. */
  device: string | null;
}

export interface IceServerWire {
  urls: string[];
  username?: string;
  credential?: string;
}

export type SignalKind = 'description' | 'candidate' | 'key' | 'chat' | 'media';

export type ServerFrame =
  | { type: 'welcome'; you: number; role: Member['role']; admission: Member['admission']; members: Member[]; ice_servers: IceServerWire[] }
  | { type: 'admitted'; members: Member[] }
  | { type: 'declined' }
  | { type: 'lobby'; waiting: Member[] }
  | { type: 'joined'; member: Member }
  | { type: 'left'; member: number }
  | { type: 'presence'; member: number; connected: boolean }
  | { type: 'signal'; from: number; kind: SignalKind; payload: string }
  | { type: 'ended' }
  | { type: 'replaced' }
  | {
      type: 'recording';
      phase: 'off' | 'asking' | 'on';
      by: number | null;
      consented: number[];
      ended: 'declined' | 'joined' | 'stopped' | 'recorder_left' | null;
      declined_by: number | null;
    }
  | { type: 'error'; code: string; message: string };

export type ClientFrame =
  | { type: 'admit'; member: number }
  | { type: 'decline'; member: number }
  | { type: 'signal'; to: number; kind: SignalKind; payload: string }
  | { type: 'leave' }
  | { type: 'end' }
  | { type: 'ask_to_record' }
  | { type: 'consent'; granted: boolean }
  | { type: 'start_recording' }
  | { type: 'stop_recording' };

/** Why the socket closed for good. */
export type FinalClose = 'declined' | 'ended' | 'replaced' | 'left' | 'session_ended' | 'visit_full' | 'lobby_full' | 'refused';

/** The close reasons after which reconnecting would be wrong. */
const FINAL_REASONS: FinalClose[] = ['declined', 'ended', 'replaced', 'left', 'session_ended', 'visit_full', 'lobby_full'];

/** The first pause before reconnecting, doubled each time up to the longest. */
const RETRY_MS_MIN = 500;
const RETRY_MS_MAX = 8000;
/** Attempts that never opened before the page asks Haven why (the handshake was refused). */
const FAILED_OPENS_MAX = 3;

export interface SignalingHandlers {
  frame(frame: ServerFrame): void;
  /** The socket is down and being retried (`true`), or back (`false`). */
  reconnecting(retrying: boolean): void;
  /** The socket closed for good. */
  closed(reason: FinalClose): void;
}

function parse(data: unknown): ServerFrame | null {
  if (typeof data !== 'string') return null;
  try {
    const frame = JSON.parse(data) as { type?: unknown };
    return typeof frame.type === 'string' ? (frame as ServerFrame) : null;
  } catch {
    return null;
  }
}

export class VisitSignaling {
  private socket: WebSocket | null = null;
  private retryMs = RETRY_MS_MIN;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private failedOpens = 0;
  private finished = false;
  /**
   * How the socket ends, when that is known before its close arrives: Haven said so in a
   * notice (`ended`, `declined`, `replaced`), or this page sent `leave`. Haven drops the
   * connection right after its close frame, and a drop with frames of ours still unread
   * there resets the connection, which loses the close frame and its reason (the browser
   * reports 1006, no reason). Without this, such a close would be taken for a network
   * drop and retried: a visit that ended would be entered again (and refused), a member
   * who left would come back.
   */
  private expectedClose: FinalClose | null = null;

  constructor(
    private readonly appointment: string,
    /** The handshake's query: `device=<id>` for a person, the device keys for a guest. */
    private readonly query: string,
    private readonly handlers: SignalingHandlers,
  ) {
    this.connect();
  }

  private url(): string {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = this.query ? `?${this.query}` : '';
    return `${scheme}//${location.host}/api/v1/visits/${encodeURIComponent(this.appointment)}/signal${query}`;
  }

  private connect(): void {
    if (this.finished) return;
    let opened = false;
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      opened = true;
      this.failedOpens = 0;
      this.retryMs = RETRY_MS_MIN;
      this.handlers.reconnecting(false);
    };
    socket.onmessage = (event) => {
      const frame = parse(event.data);
      if (!frame) return;
      if (frame.type === 'ended' || frame.type === 'declined' || frame.type === 'replaced') this.expectedClose = frame.type;
      this.handlers.frame(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      const final = FINAL_REASONS.find((reason) => reason === event.reason) ?? this.expectedClose;
      if (final) return this.finish(final);
      if (this.finished) return;
      if (!opened) this.failedOpens += 1;
      // A handshake refused again and again is no network trouble: Haven said no (the
      // visit is over, or not this person's); the page asks why.
      if (this.failedOpens >= FAILED_OPENS_MAX) return this.finish('refused');
      this.handlers.reconnecting(true);
      this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MS_MAX);
    };
  }

  private finish(reason: FinalClose): void {
    if (this.finished) return;
    this.finished = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.handlers.closed(reason);
  }

  /** Sends a frame; one sent while the socket is down is dropped (the call renegotiates). */
  send(frame: ClientFrame): boolean {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    if (frame.type === 'leave') this.expectedClose = 'left';
    return true;
  }

  /** Closes for good without leaving (the page is going away; Haven keeps the place). */
  close(): void {
    this.finished = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket?.close(1000, 'gone');
    this.socket = null;
  }
}
