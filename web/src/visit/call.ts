// One video visit as this browser takes part in it: the signaling socket, a peer connection
// to every other admitted member (a full mesh, at most four people), and the end-to-end
// encryption of the media.
//
// Media is encrypted frame by frame with SFrame (media-e2ee.ts) before it leaves, and only
// members whose device keys were checked against the transparency log receive the key:
// this browser seals its send key to each of them (sealed.ts), signed by this device, and
// opens theirs the same way. A member whose device cannot be checked gets no key and is
// named in a warning; their frames do not decode here either, since they have none of ours
// and we open only keys signed by a checked device. When someone leaves, every remaining
// member makes a new send key and seals it to those who remain (the one who left never
// sees it), so they can no longer decode what follows.
//
// Whoever arrives offers: a member who enters the call offers to everyone already there, who
// answer first and only then add their own tracks (and offer them), so the first exchange
// never collides. A collision right at the start can roll back an offer while its ICE
// gathering is under way, and Chromium may then never gather for that connection. Later
// negotiations follow the "perfect negotiation" pattern: either side may offer; on a
// collision the member with the higher number gives way.
import { api, apiInBackground } from '../api';
import { type Device, decodeBase64, deviceFingerprint, safetyNumber, verifyDeviceSelfSignature } from '../e2e';
import type { DeviceList } from '../messaging/device';
import { type CheckedDevice, type LogKey, checkDevices } from '../messaging/trust';
import type { Role } from '../session';
import { type MediaE2ee, type SendKey, startMediaE2ee, preferSFrameCodecs } from './media-e2ee';
import { RECORDING_OFF, type RecordingState } from './panels';
import { VisitRecorder } from './recording';
import { CHAT_LINE_CHARS_MAX, openFromMember, sealForMember } from './sealed';
import { openMediaFrame, SFrameReceiveContext } from './sframe';
import { type FinalClose, type IceServerWire, type Member, type ServerFrame, type SignalKind, VisitSignaling } from './signaling';

/** How often each peer connection's statistics are read for the quality indicator. */
const STATS_INTERVAL_MS = 2000;
/** Attempts at the call's device list, and the first pause between them (then doubled). */
const DEVICE_LIST_ATTEMPTS = 4;
const DEVICE_LIST_RETRY_MS = 500;
/**
 * A device registered a moment ago may not be in a signed checkpoint yet (Haven signs one a
 * second): its check is tried again this often, this many times, before the warning stays.
 */
const UNSIGNED_RECHECK_MS = 1500;
const UNSIGNED_RECHECKS_MAX = 6;
/** Chat lines kept on the page. */
const CHAT_LINES_MAX = 200;
/** Steps of the call's setup kept for `diagnostics()`: the latest, oldest dropped first. */
const JOURNAL_LINES_MAX = 300;

export type Phase =
  | 'connecting'
  | 'waiting'
  | 'in_call'
  | FinalClose;

export type Quality = 'unknown' | 'good' | 'fair' | 'poor';

export interface PeerView {
  member: Member;
  /** A guest's device, made for this visit and published nowhere: compare its safety number. */
  guestDevice?: boolean;
  stream: MediaStream | null;
  quality: Quality;
  /** The device was checked against the transparency log; `null` while checking. */
  verified: boolean | null;
  /** The staff role the checked device was published under, as the log recorded it. */
  staffRole: Role | null;
  warning: string | null;
  safetyNumber: string | null;
  /** They sent us their media key (so we can see and hear them). */
  keyReceived: boolean;
  /** What they say of their own media. */
  audioMuted: boolean;
  videoOff: boolean;
  sharingScreen: boolean;
}

export interface ChatLine {
  id: string;
  from: number | 'me';
  text: string;
  atMs: number;
}

export interface CallSnapshot {
  phase: Phase;
  reconnecting: boolean;
  me: number | null;
  role: Member['role'] | null;
  peers: PeerView[];
  waiting: Member[];
  chat: ChatLine[];
  localStream: MediaStream | null;
  audioMuted: boolean;
  videoOff: boolean;
  sharingScreen: boolean;
  /** The last thing Haven refused, in words. */
  notice: string | null;
  recording: RecordingState;
  /** This browser records the visit (a host, everyone having agreed). */
  recordingHere: boolean;
}

interface Peer {
  member: Member;
  pc: RTCPeerConnection | null;
  polite: boolean;
  makingOffer: boolean;
  ignoreOffer: boolean;
  view: PeerView;
  checked: CheckedDevice | null;
  /** Key ids this peer sent us, newest last. */
  kids: bigint[];
  /** Their latest sealed key, kept while their device waits for a signed checkpoint. */
  heldKey: string | null;
  /** They arrived after us: our tracks wait until their first offer is answered. */
  awaitingOffer: boolean;
  /**
   * The sender of our video to them: the camera, or the screen in its place. Named here
   * because a connection also holds senders it made for their offer, some with no track,
   * and a video track cannot go to one made for audio.
   */
  videoSender: RTCRtpSender | null;
  /** For `diagnostics()`: candidates signalled to them, and theirs added. */
  candidatesSent: number;
  candidatesAdded: number;
}

export interface CallOptions {
  appointment: string;
  /**
   * This browser's device: a person's registered one (`id`), or a guest's made for this
   * visit (`id` null, its keys in the handshake's `query`).
   */
  device: { id: string | null; query?: string; fingerprint: string; keys: Device };
  logKey: LogKey;
  /** Media to send; the page asks for it before the call starts. */
  localStream: MediaStream;
  /** Relay every packet through TURN (hides this network address from the others). */
  relayOnly: boolean;
  onChange: (snapshot: CallSnapshot) => void;
}

function randomId(): string {
  return crypto.randomUUID();
}

/** Video packets and frames on one connection, each way. */
export interface VideoCounts {
  packetsSent: number;
  framesEncoded: number;
  packetsReceived: number;
  framesReceived: number;
  framesDecoded: number;
}

async function videoCounts(pc: RTCPeerConnection | null): Promise<VideoCounts> {
  const counts = { packetsSent: 0, framesEncoded: 0, packetsReceived: 0, framesReceived: 0, framesDecoded: 0 };
  const report = await pc?.getStats().catch(() => null);
  report?.forEach((stat: { type: string; kind?: string } & Partial<VideoCounts>) => {
    if (stat.kind !== 'video') return;
    if (stat.type === 'outbound-rtp') {
      counts.packetsSent += stat.packetsSent ?? 0;
      counts.framesEncoded += stat.framesEncoded ?? 0;
    }
    if (stat.type === 'inbound-rtp') {
      counts.packetsReceived += stat.packetsReceived ?? 0;
      counts.framesReceived += stat.framesReceived ?? 0;
      counts.framesDecoded += stat.framesDecoded ?? 0;
    }
  });
  return counts;
}

/** `CallOptions.logKey` for a guest: check against the key served with the call's devices. */
export const SERVED_LOG_KEY = 'served';

/** A guest's device as Haven lists it with the call's devices. */
interface GuestDeviceWire {
  guest: string;
  hpke_public_key: string;
  signing_public_key: string;
  self_signature: string;
  fingerprint: string;
}

interface CallDeviceList extends DeviceList {
  guest_devices?: GuestDeviceWire[];
  log_vkey?: string;
}

/**
 * A guest's device checked as far as it can be: its keys sign themselves and hash to its
 * fingerprint. It is in no log, so the page asks people to compare its safety number.
 */
async function checkGuestDevice(wire: GuestDeviceWire): Promise<CheckedDevice | null> {
  try {
    const hpkePublicKey = decodeBase64(wire.hpke_public_key, 'HPKE key');
    const signingPublicKey = decodeBase64(wire.signing_public_key, 'signing key');
    const keys = { hpkePublicKey, signingPublicKey };
    const signed = await verifyDeviceSelfSignature(keys, decodeBase64(wire.self_signature, 'self-signature'));
    const fingerprint = await deviceFingerprint(keys);
    if (!signed || fingerprint !== wire.fingerprint) return null;
    const device = { fingerprint, user: `guest:${wire.guest}` } as unknown as CheckedDevice['device'];
    return { device, role: null, verified: true, reason: null, hpkePublicKey, signingPublicKey };
  } catch {
    return null;
  }
}

/**
 * How the call's connections stand, and the steps that led there (frames from Haven,
 * offers and answers, ICE and connection states, refusals), for a person reporting a call
 * that will not connect and for tests. Member numbers and states only: no key, no media,
 * no candidate addresses.
 */
export interface CallDiagnostics {
  peers: {
    member: number;
    connection: string;
    signaling: string;
    ice: string;
    gathering: string;
    polite: boolean;
    /** ICE candidates this browser gathered for them, and theirs it took. */
    candidatesSent: number;
    candidatesAdded: number;
    /** Video to and from them, as WebRTC counts it (all zero: nothing flows). */
    video: VideoCounts;
  }[];
  /** Frames the encryption worker sealed and opened, and those it dropped, by reason. */
  transforms: { encrypted: number; decrypted: number; dropped: Record<string, number> } | null;
  journal: string[];
}

export class VisitCall {
  private readonly signaling: VisitSignaling;
  private readonly e2ee: MediaE2ee;
  private readonly peers = new Map<number, Peer>();
  private readonly attached = new WeakSet<RTCRtpReceiver>();
  private iceServers: RTCIceServer[] = [];
  private sendKey: SendKey | null = null;
  private keyRotation: Promise<void> = Promise.resolve();
  /** The frames from Haven, handled in turn (see the constructor). */
  private frames: Promise<void> = Promise.resolve();
  private statsTimer: ReturnType<typeof setInterval>;
  private screenTrack: MediaStreamTrack | null = null;
  private recorder: VisitRecorder | null = null;
  /** A recording the room stopped, waiting for the page to file it. */
  private stoppedRecording: { recording: Blob; startedAtMs: number } | null = null;
  private state: CallSnapshot;
  private closed = false;
  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  private rechecks = 0;
  private readonly journal: string[] = [];
  private readonly startedAtMs = Date.now();

  constructor(private readonly options: CallOptions) {
    // Throws `unsupported` on a browser that cannot encrypt frames: no call in the clear.
    this.e2ee = startMediaE2ee();
    this.state = {
      phase: 'connecting',
      reconnecting: false,
      me: null,
      role: null,
      peers: [],
      waiting: [],
      chat: [],
      localStream: options.localStream,
      audioMuted: false,
      videoOff: false,
      sharingScreen: false,
      notice: null,
      recording: RECORDING_OFF,
      recordingHere: false,
    };
    const query = options.device.id ? `device=${encodeURIComponent(options.device.id)}` : (options.device.query ?? '');
    this.signaling = new VisitSignaling(options.appointment, query, {
      // One frame at a time, in the order Haven sent them. Handling a frame awaits (a
      // device check, the worker, WebRTC), and a frame must not overtake the one before it:
      // a peer's sealed key arriving just after `admitted` would otherwise be opened before
      // their device was checked, and dropped as unchecked (then the call has no key to
      // decode them with); two keys of a rotation could swap and leave the older one; chat
      // lines could change order.
      frame: (frame) => {
        this.frames = this.frames
          .then(() => this.onFrame(frame))
          .catch((e: unknown) => {
            this.note(`${frame.type} failed: ${String(e)}`);
            this.setNotice(String(e));
          });
      },
      reconnecting: (retrying) => {
        this.note(retrying ? 'signaling dropped, reconnecting' : 'signaling open');
        this.update({ reconnecting: retrying });
      },
      closed: (reason) => this.finish(reason),
    });
    this.statsTimer = setInterval(() => void this.readStats(), STATS_INTERVAL_MS);
  }

  snapshot(): CallSnapshot {
    return this.state;
  }

  async diagnostics(): Promise<CallDiagnostics> {
    const peers = [];
    for (const peer of this.peers.values()) {
      peers.push({
        member: peer.member.id,
        connection: peer.pc?.connectionState ?? 'none',
        signaling: peer.pc?.signalingState ?? 'none',
        ice: peer.pc?.iceConnectionState ?? 'none',
        gathering: peer.pc?.iceGatheringState ?? 'none',
        polite: peer.polite,
        candidatesSent: peer.candidatesSent,
        candidatesAdded: peer.candidatesAdded,
        video: await videoCounts(peer.pc),
      });
    }
    const transforms = await this.e2ee
      .stats()
      .then(({ encrypted, decrypted, dropped }) => ({ encrypted, decrypted, dropped: { ...dropped } }))
      .catch(() => null);
    return { peers, transforms, journal: [...this.journal] };
  }

  /** Notes a step of the call's setup (see [`CallDiagnostics`]). */
  private note(step: string): void {
    if (this.journal.length >= JOURNAL_LINES_MAX) this.journal.shift();
    this.journal.push(`${Date.now() - this.startedAtMs}ms ${step}`);
  }

  private update(changes: Partial<CallSnapshot>): void {
    this.state = { ...this.state, ...changes };
    this.options.onChange(this.state);
  }

  private refreshPeers(): void {
    this.update({ peers: [...this.peers.values()].map((p) => ({ ...p.view })) });
  }

  private setNotice(notice: string): void {
    this.update({ notice });
  }

  // ----------------------------------------------------------------------------------------
  // The room
  // ----------------------------------------------------------------------------------------

  private async onFrame(frame: ServerFrame): Promise<void> {
    // Relayed signals are noted where they are handled (candidates only when refused).
    if (frame.type !== 'signal') this.note(describeFrame(frame));
    switch (frame.type) {
      case 'welcome': {
        this.iceServers = frame.ice_servers.map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }) satisfies RTCIceServer & IceServerWire);
        // Relay-only with no relay gathers no candidate at all: the call could never connect.
        if (this.options.relayOnly && this.iceServers.length === 0) {
          this.setNotice('This page asks for a relayed call only, but Haven offers no media relay, so the call cannot connect. Open the visit without “?relay=only”.');
        }
        // A welcome after a reconnect starts the call afresh: the others do the same.
        for (const peer of this.peers.values()) this.closePeer(peer);
        this.peers.clear();
        this.update({ me: frame.you, role: frame.role, phase: frame.admission === 'admitted' ? 'in_call' : 'waiting', waiting: [] });
        if (frame.admission === 'admitted') await this.enterCall(frame.members);
        else this.refreshPeers();
        return;
      }
      case 'admitted':
        this.update({ phase: 'in_call' });
        await this.enterCall(frame.members);
        return;
      case 'lobby':
        this.update({ waiting: frame.waiting });
        return;
      case 'joined':
        if (frame.member.id === this.state.me) return;
        // Someone new, or someone back: a fresh connection to them either way.
        this.removePeer(frame.member.id, false);
        await this.addPeers([frame.member], 'answer');
        return;
      case 'left':
        this.removePeer(frame.member, true);
        return;
      case 'presence': {
        const peer = this.peers.get(frame.member);
        if (peer) {
          peer.member = { ...peer.member, connected: frame.connected };
          peer.view.member = peer.member;
          this.refreshPeers();
        }
        return;
      }
      case 'signal':
        await this.onSignal(frame.from, frame.kind, frame.payload);
        return;
      case 'recording': {
        const recording: RecordingState = {
          phase: frame.phase,
          by: frame.by,
          consented: frame.consented,
          ended: frame.ended,
          declinedBy: frame.declined_by,
        };
        this.update({ recording });
        if (frame.phase === 'on' && frame.by === this.state.me && !this.recorder) this.startRecorder();
        // Stopped by the room (someone joined, someone left): what was recorded is kept for
        // the page to file, since everyone had agreed to it.
        if (frame.phase !== 'on' && this.recorder) void this.finishRecorder();
        return;
      }
      case 'error':
        this.setNotice(frame.message);
        return;
      case 'declined':
      case 'ended':
      case 'replaced':
        // The close that follows says so too; nothing more will come.
        return;
    }
  }

  private async enterCall(members: Member[]): Promise<void> {
    const me = this.state.me;
    await this.addPeers(members.filter((m) => m.id !== me), 'offer');
  }

  /**
   * Connects to new members, then checks their devices and sends our key to the checked.
   * `offer` when we are the one arriving, `answer` when they are.
   */
  private async addPeers(members: Member[], opening: 'offer' | 'answer'): Promise<void> {
    if (members.length === 0) return;
    const me = this.state.me ?? 0;
    for (const member of members) {
      if (this.peers.has(member.id)) continue;
      const peer: Peer = {
        member,
        pc: null,
        polite: me > member.id,
        makingOffer: false,
        ignoreOffer: false,
        checked: null,
        kids: [],
        heldKey: null,
        awaitingOffer: opening === 'answer',
        videoSender: null,
        candidatesSent: 0,
        candidatesAdded: 0,
        view: {
          member,
          stream: null,
          quality: 'unknown',
          verified: null,
          staffRole: null,
          warning: null,
          safetyNumber: null,
          keyReceived: false,
          audioMuted: false,
          videoOff: false,
          sharingScreen: false,
        },
      };
      this.peers.set(member.id, peer);
      this.connect(peer);
    }
    this.refreshPeers();
    await this.checkDevicesAndExchangeKeys();
    this.sendMediaState();
  }

  /**
   * Checks the peers' devices, then exchanges keys with every peer checked now that was not
   * before: they get our key, and a key they sent while unchecked opens. Every check goes
   * through here, whatever asked for it (someone joining, a recheck), so a peer that one
   * check finds good is never left without our key because another check was under way.
   */
  private async checkDevicesAndExchangeKeys(): Promise<void> {
    const before = new Set([...this.peers.values()].filter((p) => p.checked?.verified).map((p) => p.member.id));
    await this.checkDevices();
    await this.ensureSendKey();
    for (const peer of this.peers.values()) {
      if (before.has(peer.member.id) || !peer.checked?.verified) continue;
      await this.sendKeyTo(peer);
      const held = peer.heldKey;
      peer.heldKey = null;
      if (held) await this.onKey(peer, held);
    }
  }

  /** Checks every peer's device against the log; a device that fails is warned about. */
  private async checkDevices(): Promise<void> {
    let list: CallDeviceList | null = null;
    let failure: unknown = null;
    // A busy server may fail one request: tried again with a growing pause before giving up.
    for (let attempt = 0; attempt < DEVICE_LIST_ATTEMPTS && !this.closed; attempt += 1) {
      try {
        list = await apiInBackground<CallDeviceList>('GET', `/api/v1/visits/${encodeURIComponent(this.options.appointment)}/devices`);
        break;
      } catch (e) {
        failure = e;
        this.note(`device list refused: ${String(e)}`);
        await new Promise((resolve) => setTimeout(resolve, DEVICE_LIST_RETRY_MS * 2 ** attempt));
      }
    }
    if (!list) {
      // Nobody unchecked gets a key, so the call shows no one until this works: say why
      // rather than leave every peer "checking" in silence.
      this.setNotice(`the call's devices could not be checked, so no keys were exchanged (${String(failure)}); reload the page to try again`);
      return;
    }
    // A guest pinned no key: they check against the one served with the list, for this visit.
    const logKey: LogKey =
      this.options.logKey.state === 'pinned' && this.options.logKey.vkey === SERVED_LOG_KEY
        ? { state: 'pinned', vkey: list.log_vkey ?? '' }
        : this.options.logKey;
    const checked = await checkDevices(list, logKey);
    for (const peer of this.peers.values()) {
      if (peer.checked?.verified) continue;
      const fingerprint = peer.member.device;
      peer.view.safetyNumber = fingerprint ? safetyNumber(fingerprint) : null;
      if (peer.member.guest) {
        const guest = (list.guest_devices ?? []).find((d) => d.fingerprint === fingerprint && d.guest === peer.member.guest);
        peer.checked = guest ? await checkGuestDevice(guest) : null;
        peer.view.verified = peer.checked?.verified ?? false;
        peer.view.guestDevice = true;
        peer.view.warning = !fingerprint
          ? 'takes part without a device key, so cannot receive encrypted media'
          : peer.checked?.verified
            ? null
            : 'their device keys do not sign themselves';
        continue;
      }
      const found = checked.find((c) => c.device.fingerprint === fingerprint && c.device.user === peer.member.user);
      peer.checked = found ?? null;
      peer.view.verified = found?.verified ?? false;
      peer.view.staffRole = found?.verified ? found.role : null;
      peer.view.warning = !fingerprint
        ? 'takes part without a device key, so cannot receive encrypted media'
        : !found
          ? 'their device is not among the published ones'
          : found.verified
            ? null
            : `their device could not be checked: ${found.reason ?? 'unknown reason'}`;
    }
    this.refreshPeers();
    this.recheckUnsigned();
  }

  /** A device not yet under a signed checkpoint is checked again shortly, in frame order. */
  private recheckUnsigned(): void {
    const unsigned = [...this.peers.values()].some(
      (peer) => !peer.member.guest && !peer.checked?.verified && (peer.checked?.reason ?? '').includes('not yet in a signed checkpoint'),
    );
    if (!unsigned || this.closed || this.recheckTimer || this.rechecks >= UNSIGNED_RECHECKS_MAX) return;
    this.rechecks += 1;
    this.note(`a device awaits a signed checkpoint: checking again (${this.rechecks})`);
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      this.frames = this.frames
        .then(async () => {
          if (!this.closed) await this.checkDevicesAndExchangeKeys();
        })
        .catch((e: unknown) => this.note(`checking devices again failed: ${String(e)}`));
    }, UNSIGNED_RECHECK_MS);
  }

  private async ensureSendKey(): Promise<void> {
    if (this.sendKey) return;
    const key = this.e2ee.createSendKey();
    this.sendKey = key;
    await this.e2ee.setSendKey(key);
  }

  private async sendKeyTo(peer: Peer): Promise<void> {
    const key = this.sendKey;
    const me = this.state.me;
    const checked = peer.checked;
    if (!key || me === null || !checked?.verified || !checked.hpkePublicKey || !peer.member.device) return;
    const plaintext = new TextEncoder().encode(JSON.stringify({ suite: key.suite, base_key: Array.from(key.baseKey) }));
    const payload = await sealForMember({
      purpose: 'key',
      target: {
        appointment: this.options.appointment,
        from: me,
        recipientFingerprint: peer.member.device,
        recipientHpkeKey: checked.hpkePublicKey,
      },
      id: key.kid.toString(),
      plaintext,
      myFingerprint: this.options.device.fingerprint,
      signer: this.options.device.keys.signing.privateKey,
    });
    plaintext.fill(0);
    this.note(`key to ${peer.member.id}`);
    this.signal(peer.member.id, 'key', payload);
  }

  /** A new send key for those who remain: the one who left never sees it. */
  private rotateSendKey(): void {
    this.keyRotation = this.keyRotation
      .then(async () => {
        if (this.closed || this.state.phase !== 'in_call') return;
        const previous = this.sendKey;
        const key = this.e2ee.createSendKey();
        this.sendKey = key;
        // Sealed to the others first, so they hold it before frames arrive under it.
        for (const peer of this.peers.values()) await this.sendKeyTo(peer);
        await this.e2ee.setSendKey(key);
        previous?.baseKey.fill(0);
      })
      // A rotation that failed is said so; the chain stays usable, or no later departure
      // would ever rotate the key again (a rejected promise skips every `then` after it).
      .catch((e: unknown) => {
        if (!this.closed) this.setNotice(`the call's key could not be renewed: ${String(e)}`);
      });
  }

  private removePeer(member: number, left: boolean): void {
    const peer = this.peers.get(member);
    if (!peer) return;
    this.closePeer(peer);
    this.peers.delete(member);
    void this.e2ee.removeParticipant(String(member));
    this.refreshPeers();
    if (left) this.rotateSendKey();
  }

  private closePeer(peer: Peer): void {
    peer.pc?.close();
    peer.pc = null;
    peer.videoSender = null;
  }

  // ----------------------------------------------------------------------------------------
  // Peer connections
  // ----------------------------------------------------------------------------------------

  /** Opens the connection to a peer: with our tracks if we offer, bare if they will. */
  private connect(peer: Peer): void {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.options.relayOnly ? 'relay' : 'all',
    });
    peer.pc = pc;
    if (!peer.awaitingOffer) this.sendTracks(peer, pc);
    pc.ontrack = (event) => {
      this.attachReceiver(event.receiver, peer);
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      peer.view.stream = stream;
      this.refreshPeers();
    };
    pc.onnegotiationneeded = async () => {
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        this.note(`to ${peer.member.id}: ${pc.localDescription?.type ?? 'no description'}`);
        if (pc.localDescription) this.signal(peer.member.id, 'description', JSON.stringify(pc.localDescription));
      } catch (e) {
        this.note(`to ${peer.member.id}: no offer: ${String(e)}`);
        this.setNotice(`could not start the connection: ${String(e)}`);
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      peer.candidatesSent += 1;
      this.signal(peer.member.id, 'candidate', JSON.stringify(candidate));
    };
    pc.onconnectionstatechange = () => {
      this.note(`with ${peer.member.id}: ${pc.connectionState}`);
      if (pc.connectionState === 'failed') pc.restartIce();
    };
    pc.oniceconnectionstatechange = () => this.note(`with ${peer.member.id}: ICE ${pc.iceConnectionState}`);
  }

  /**
   * Puts our tracks on a connection, each on a transceiver of its own with its encryption
   * set before any negotiation. Not on the transceivers a peer's offer made: Chromium runs
   * no sender transform set on those once negotiated, and their frames would leave in the
   * clear (the other side then drops every one of them, and sees no video).
   */
  private sendTracks(peer: Peer, pc: RTCPeerConnection): void {
    const me = String(this.state.me ?? 0);
    for (const track of this.options.localStream.getTracks()) {
      const kind = track.kind === 'audio' ? 'audio' : 'video';
      const sending = kind === 'video' && this.screenTrack ? this.screenTrack : track;
      const transceiver = pc.addTransceiver(sending, { direction: 'sendrecv', streams: [this.options.localStream] });
      preferSFrameCodecs(transceiver, kind);
      this.e2ee.attachSender(transceiver.sender, me, kind);
      if (kind === 'video') peer.videoSender = transceiver.sender;
      this.attachReceiver(transceiver.receiver, peer);
    }
  }

  private attachReceiver(receiver: RTCRtpReceiver, peer: Peer): void {
    if (this.attached.has(receiver)) return;
    this.attached.add(receiver);
    this.e2ee.attachReceiver(receiver, String(peer.member.id));
  }

  private signal(to: number, kind: SignalKind, payload: string): void {
    this.signaling.send({ type: 'signal', to, kind, payload });
  }

  private async onSignal(from: number, kind: SignalKind, payload: string): Promise<void> {
    const peer = this.peers.get(from);
    if (!peer) {
      this.note(`${kind} from ${from}, who is no peer: dropped`);
      return;
    }
    switch (kind) {
      case 'description':
        return this.onDescription(peer, JSON.parse(payload) as RTCSessionDescriptionInit);
      case 'candidate': {
        try {
          await peer.pc?.addIceCandidate(JSON.parse(payload) as RTCIceCandidateInit);
          if (peer.pc) peer.candidatesAdded += 1;
        } catch (e) {
          this.note(`candidate from ${from} refused (${peer.ignoreOffer ? 'offer ignored' : String(e)})`);
          if (!peer.ignoreOffer) throw e;
        }
        return;
      }
      case 'key':
        return this.onKey(peer, payload);
      case 'chat':
        return this.onChat(peer, payload);
      case 'media': {
        const state = JSON.parse(payload) as { audio_muted?: boolean; video_off?: boolean; sharing_screen?: boolean };
        peer.view.audioMuted = state.audio_muted === true;
        peer.view.videoOff = state.video_off === true;
        peer.view.sharingScreen = state.sharing_screen === true;
        this.refreshPeers();
        return;
      }
    }
  }

  private async onDescription(peer: Peer, description: RTCSessionDescriptionInit): Promise<void> {
    const pc = peer.pc;
    if (!pc) return;
    const collision = description.type === 'offer' && (peer.makingOffer || pc.signalingState !== 'stable');
    peer.ignoreOffer = !peer.polite && collision;
    this.note(`from ${peer.member.id}: ${description.type ?? '?'} in ${pc.signalingState}${collision ? ', colliding' : ''}${peer.ignoreOffer ? ', ignored' : ''}`);
    if (peer.ignoreOffer) return;
    await pc.setRemoteDescription(description);
    if (description.type === 'offer') {
      await pc.setLocalDescription();
      this.note(`to ${peer.member.id}: ${pc.localDescription?.type ?? 'no description'}`);
      if (pc.localDescription) this.signal(peer.member.id, 'description', JSON.stringify(pc.localDescription));
      // Their first offer is answered: now our tracks, which negotiate in an offer of ours.
      if (peer.awaitingOffer) {
        peer.awaitingOffer = false;
        this.sendTracks(peer, pc);
      }
    }
  }

  /** Opens a peer's media key, if their device was checked and signed it. */
  private async onKey(peer: Peer, payload: string): Promise<void> {
    if (!peer.checked?.verified) {
      // Opened once their device checks out (see `recheckUnsigned`); nothing before.
      peer.heldKey = payload;
      this.note(`key from ${peer.member.id}: held until their device is checked`);
      return;
    }
    const opened = await this.openFrom(peer, 'key', payload);
    this.note(`key from ${peer.member.id}: ${opened ? 'opened' : 'not opened'}`);
    if (!opened) return;
    const key = JSON.parse(new TextDecoder().decode(opened.plaintext)) as { suite: number; base_key: number[] };
    opened.plaintext.fill(0);
    const kid = BigInt(opened.id);
    await this.e2ee.addReceiveKey(String(peer.member.id), {
      kid,
      baseKey: new Uint8Array(key.base_key),
      suite: key.suite as SendKey['suite'],
    });
    // Their previous key stays a moment, for frames in flight. A key they send again (the
    // same KID) is the one just added: it must not be scheduled for removal with the old.
    for (const old of peer.kids) {
      if (old !== kid) void this.e2ee.removeReceiveKey(String(peer.member.id), old);
    }
    peer.kids = [kid];
    peer.view.keyReceived = true;
    this.refreshPeers();
  }

  private async onChat(peer: Peer, payload: string): Promise<void> {
    const opened = await this.openFrom(peer, 'chat', payload);
    if (!opened) return;
    const text = new TextDecoder().decode(opened.plaintext).slice(0, CHAT_LINE_CHARS_MAX);
    this.addChat({ id: opened.id, from: peer.member.id, text, atMs: Date.now() });
  }

  private async openFrom(peer: Peer, purpose: 'key' | 'chat', payload: string) {
    const me = this.state.me;
    const checked = peer.checked;
    if (me === null || !peer.member.device) return null;
    if (!checked?.verified || !checked.signingPublicKey) {
      // Not from a checked device: nothing it sealed is opened.
      return null;
    }
    try {
      return await openFromMember({
        purpose,
        payload,
        appointment: this.options.appointment,
        from: peer.member.id,
        senderFingerprint: peer.member.device,
        senderSigningKey: checked.signingPublicKey,
        myFingerprint: this.options.device.fingerprint,
        recipientKey: this.options.device.keys.hpke,
      });
    } catch (e) {
      peer.view.warning = `something sealed by their device did not open: ${String(e)}`;
      this.refreshPeers();
      return null;
    }
  }

  private addChat(line: ChatLine): void {
    const chat = [...this.state.chat, line].slice(-CHAT_LINES_MAX);
    this.update({ chat });
  }

  // ----------------------------------------------------------------------------------------
  // What the page asks
  // ----------------------------------------------------------------------------------------

  admit(member: number): void {
    this.signaling.send({ type: 'admit', member });
  }

  decline(member: number): void {
    this.signaling.send({ type: 'decline', member });
  }

  /** Sends a chat line, sealed to each checked member's device. */
  async sendChat(text: string): Promise<void> {
    const line = text.trim().slice(0, CHAT_LINE_CHARS_MAX);
    const me = this.state.me;
    if (!line || me === null) return;
    const id = randomId();
    const bytes = new TextEncoder().encode(line);
    for (const peer of this.peers.values()) {
      const checked = peer.checked;
      if (!checked?.verified || !checked.hpkePublicKey || !peer.member.device) continue;
      const payload = await sealForMember({
        purpose: 'chat',
        target: { appointment: this.options.appointment, from: me, recipientFingerprint: peer.member.device, recipientHpkeKey: checked.hpkePublicKey },
        id,
        plaintext: bytes,
        myFingerprint: this.options.device.fingerprint,
        signer: this.options.device.keys.signing.privateKey,
      });
      this.signal(peer.member.id, 'chat', payload);
    }
    this.addChat({ id, from: 'me', text: line, atMs: Date.now() });
  }

  setAudioMuted(muted: boolean): void {
    for (const track of this.options.localStream.getAudioTracks()) track.enabled = !muted;
    this.update({ audioMuted: muted });
    this.sendMediaState();
  }

  setVideoOff(off: boolean): void {
    for (const track of this.options.localStream.getVideoTracks()) track.enabled = !off;
    this.update({ videoOff: off });
    this.sendMediaState();
  }

  /** Shares the screen in place of the camera, until stopped here or in the browser. */
  async shareScreen(): Promise<void> {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = display.getVideoTracks()[0];
    if (!track) return;
    this.screenTrack = track;
    track.onended = () => void this.stopSharing();
    await this.replaceVideo(track);
    this.update({ sharingScreen: true });
    this.sendMediaState();
  }

  async stopSharing(): Promise<void> {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    const camera = this.options.localStream.getVideoTracks()[0] ?? null;
    await this.replaceVideo(camera);
    this.update({ sharingScreen: false });
    this.sendMediaState();
  }

  private async replaceVideo(track: MediaStreamTrack | null): Promise<void> {
    for (const peer of this.peers.values()) {
      if (peer.pc && peer.videoSender) await peer.videoSender.replaceTrack(track);
    }
  }

  private sendMediaState(): void {
    const payload = JSON.stringify({
      audio_muted: this.state.audioMuted,
      video_off: this.state.videoOff,
      sharing_screen: this.state.sharingScreen,
    });
    for (const peer of this.peers.values()) this.signal(peer.member.id, 'media', payload);
  }

  /** Asks everyone to agree to a recording (hosts). */
  askToRecord(): void {
    this.signaling.send({ type: 'ask_to_record' });
  }

  consentToRecord(granted: boolean): void {
    this.signaling.send({ type: 'consent', granted });
  }

  /** Starts the recording (hosts, once everyone agreed); the room's answer starts it here. */
  startRecording(): void {
    this.signaling.send({ type: 'start_recording' });
  }

  private startRecorder(): void {
    const others = [...this.peers.values()].flatMap((p) => (p.view.stream ? [p.view.stream] : []));
    try {
      this.recorder = new VisitRecorder([...others, this.options.localStream], () => this.stopRecording());
      this.update({ recordingHere: true });
    } catch (e) {
      this.setNotice(`this browser could not record: ${String(e)}`);
      this.signaling.send({ type: 'stop_recording' });
    }
  }

  private async finishRecorder(): Promise<void> {
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    this.stoppedRecording = { recording: await recorder.stop(), startedAtMs: recorder.startedAtMs };
    this.update({ recordingHere: false });
  }

  /** Stops the recording for everyone and returns what this browser recorded, if anything. */
  async stopRecording(): Promise<{ recording: Blob; startedAtMs: number } | null> {
    if (this.state.recording.phase !== 'off') this.signaling.send({ type: 'stop_recording' });
    await this.finishRecorder();
    const stopped = this.stoppedRecording;
    this.stoppedRecording = null;
    return stopped;
  }

  /** Hangs up: Haven records the departure; the others rotate their keys. */
  leave(): void {
    if (!this.signaling.send({ type: 'leave' })) this.finish('left');
  }

  /** Ends the visit for everyone (hosts only). */
  end(): void {
    this.signaling.send({ type: 'end' });
  }

  private finish(reason: FinalClose): void {
    this.update({ phase: reason, reconnecting: false });
    this.close();
  }

  /** Stops everything here (the page is going away); Haven keeps the place for a while. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statsTimer);
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    this.signaling.close();
    for (const peer of this.peers.values()) this.closePeer(peer);
    this.peers.clear();
    this.screenTrack?.stop();
    void this.recorder?.stop();
    this.recorder = null;
    this.e2ee.close();
    this.sendKey?.baseKey.fill(0);
    this.sendKey = null;
  }

  // ----------------------------------------------------------------------------------------
  // Quality, and what tests read
  // ----------------------------------------------------------------------------------------

  private async readStats(): Promise<void> {
    let changed = false;
    for (const peer of this.peers.values()) {
      const report = await peer.pc?.getStats().catch(() => null);
      if (!report) continue;
      let lost = 0;
      let received = 0;
      const pairs = new Map<string, { state?: string; nominated?: boolean; currentRoundTripTime?: number }>();
      const selected: string[] = [];
      report.forEach(
        (stat: {
          type: string;
          id: string;
          state?: string;
          nominated?: boolean;
          currentRoundTripTime?: number;
          packetsLost?: number;
          packetsReceived?: number;
          selectedCandidatePairId?: string;
        }) => {
          if (stat.type === 'candidate-pair') pairs.set(stat.id, stat);
          if (stat.type === 'transport' && stat.selectedCandidatePairId) selected.push(stat.selectedCandidatePairId);
          if (stat.type === 'inbound-rtp') {
            lost += stat.packetsLost ?? 0;
            received += stat.packetsReceived ?? 0;
          }
        },
      );
      // The round trip of the pair the transport carries media on. The side that did not
      // nominate it may never see it flagged nominated, so the flag alone left a connected
      // call showing "Connecting"; it is the fallback when no transport names its pair.
      const inUse = selected.length > 0 ? selected.map((id) => pairs.get(id)) : [...pairs.values()].filter((p) => p.state === 'succeeded' && p.nominated);
      const rtt = inUse.find((p) => p?.currentRoundTripTime !== undefined)?.currentRoundTripTime ?? null;
      const lossRatio = received + lost > 0 ? lost / (received + lost) : 0;
      const quality: Quality = rtt === null ? 'unknown' : rtt > 0.4 || lossRatio > 0.08 ? 'poor' : rtt > 0.15 || lossRatio > 0.02 ? 'fair' : 'good';
      if (quality !== peer.view.quality) {
        peer.view.quality = quality;
        changed = true;
      }
    }
    if (changed) this.refreshPeers();
  }

  /**
   * Per peer: frames decoded, the size of the latest decoded video frame, and the selected
   * candidate pair's kind (relay or direct).
   */
  async mediaStats(): Promise<{ member: number; framesDecoded: number; frameWidth: number; frameHeight: number; relayed: boolean }[]> {
    const out = [];
    for (const peer of this.peers.values()) {
      const report = await peer.pc?.getStats();
      let framesDecoded = 0;
      let frameWidth = 0;
      let frameHeight = 0;
      let relayed = false;
      const localCandidates = new Map<string, string>();
      const pairs = new Map<string, { localCandidateId?: string; state?: string; nominated?: boolean }>();
      const selectedPairs: string[] = [];
      report?.forEach(
        (stat: {
          type: string;
          id: string;
          kind?: string;
          framesDecoded?: number;
          frameWidth?: number;
          frameHeight?: number;
          candidateType?: string;
          state?: string;
          nominated?: boolean;
          localCandidateId?: string;
          selectedCandidatePairId?: string;
        }) => {
          if (stat.type === 'local-candidate' && stat.candidateType) localCandidates.set(stat.id, stat.candidateType);
          if (stat.type === 'candidate-pair') pairs.set(stat.id, stat);
          if (stat.type === 'transport' && stat.selectedCandidatePairId) selectedPairs.push(stat.selectedCandidatePairId);
          if (stat.type === 'inbound-rtp' && stat.kind === 'video') {
            framesDecoded += stat.framesDecoded ?? 0;
            frameWidth = stat.frameWidth ?? frameWidth;
            frameHeight = stat.frameHeight ?? frameHeight;
          }
        },
      );
      // The pair the transport carries media on, as it names it: after an ICE restart a
      // connection holds more than one succeeded, nominated pair, and only one is in use.
      // Without a transport's word, the succeeded and nominated pairs must all be relayed.
      const inUse = selectedPairs.length > 0 ? selectedPairs.map((id) => pairs.get(id)) : [...pairs.values()].filter((p) => p.state === 'succeeded' && p.nominated);
      relayed = inUse.length > 0 && inUse.every((pair) => pair?.localCandidateId !== undefined && localCandidates.get(pair.localCandidateId) === 'relay');
      out.push({ member: peer.member.id, framesDecoded, frameWidth, frameHeight, relayed });
    }
    return out;
  }

  /**
   * Whether every frame this browser sent went through the frame encryption: the frames
   * the peer connections report sent (audio packets, each one Opus frame; video frames),
   * read first, and the frames the worker sealed, read after, across all connections. A
   * transform the browser did not apply lets frames out in the clear without a probe ever
   * seeing them (the probe sees only frames that pass through the worker); this catches it.
   */
  async sealingAccount(): Promise<{ framesSent: number; framesSealed: number }> {
    let framesSent = 0;
    for (const peer of this.peers.values()) {
      const report = await peer.pc?.getStats();
      report?.forEach((stat: { type: string; kind?: string; packetsSent?: number; framesSent?: number }) => {
        if (stat.type !== 'outbound-rtp') return;
        framesSent += stat.kind === 'audio' ? (stat.packetsSent ?? 0) : (stat.framesSent ?? 0);
      });
    }
    const { encrypted } = await this.e2ee.stats();
    return { framesSent, framesSealed: encrypted };
  }

  /**
   * Takes `count` frames as they leave this browser and checks each in the page: the frame
   * that left differs from the encoded frame, opens with this browser's current send key to
   * exactly that frame, and does not open with any other key. Only the verdicts leave.
   */
  async probeEncryption(count: number): Promise<{ frames: number; sealed: number; openWithKey: number; openWithoutKey: number }> {
    const key = this.sendKey;
    if (!key) throw new Error('no send key yet');
    const frames = await this.e2ee.probe(count);
    const right = new SFrameReceiveContext();
    await right.addKey(key.kid, key.baseKey, key.suite);
    const wrong = new SFrameReceiveContext();
    await wrong.addKey(key.kid, crypto.getRandomValues(new Uint8Array(key.baseKey.length)), key.suite);
    let sealed = 0;
    let openWithKey = 0;
    let openWithoutKey = 0;
    for (const frame of frames) {
      const input = new Uint8Array(frame.input);
      const output = new Uint8Array(frame.output);
      if (output.length > input.length && !output.every((b, i) => b === input[i])) sealed += 1;
      try {
        const opened = (await openMediaFrame(right, frame.kind, output)).plaintext;
        if (opened.length === input.length && opened.every((b, i) => b === input[i])) openWithKey += 1;
      } catch {
        // Counted as not opened.
      }
      try {
        await openMediaFrame(wrong, frame.kind, output);
        openWithoutKey += 1;
      } catch {
        // As it must be.
      }
    }
    return { frames: frames.length, sealed, openWithKey, openWithoutKey };
  }
}

/** The visit as Haven describes it to the caller, before connecting. */
export interface VisitStatus {
  appointment: string;
  patient: string;
  role: Member['role'];
  state: 'open' | 'not_open_yet' | 'over' | 'ended' | 'not_held';
  appointment_status: string;
  starts_at: string;
  ends_at: string;
  opens_at: string;
}

export function fetchVisitStatus(appointment: string): Promise<VisitStatus> {
  return api<VisitStatus>('GET', `/api/v1/visits/${encodeURIComponent(appointment)}`);
}

/** A frame from Haven as the journal notes it: its kind and members, never its payload. */
function describeFrame(frame: ServerFrame): string {
  switch (frame.type) {
    case 'welcome':
      return `welcome: I am ${frame.you}, ${frame.admission}, with ${frame.members.map((m) => m.id).join(',')}`;
    case 'admitted':
      return `admitted, with ${frame.members.map((m) => m.id).join(',')}`;
    case 'joined':
      return `joined: ${frame.member.id}`;
    case 'left':
      return `left: ${frame.member}`;
    case 'presence':
      return `presence: ${frame.member} ${frame.connected ? 'connected' : 'disconnected'}`;
    case 'lobby':
      return `lobby: ${frame.waiting.map((m) => m.id).join(',')}`;
    case 'recording':
      return `recording: ${frame.phase}`;
    case 'error':
      return `error: ${frame.code}`;
    default:
      return frame.type;
  }
}
