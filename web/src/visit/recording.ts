// Recording a video visit, in the clinician's browser, once everyone in the call agreed
// (Haven's room refuses to start a recording before that, and stops it when someone joins
// who has not agreed), and filing it to the patient's chart.
//
// The media is recorded here, where it is already decrypted, so end-to-end encryption need
// not be given up for it: what leaves this browser is uploaded to the chart as a FHIR
// `Binary` (sealed at rest under the patient's key, like every record) with a
// `DocumentReference` describing it, and one `Consent` per person who agreed. Each agreement
// is also in the audit log, recorded from that person's own session (`recording_consent`).
import { apiUpload, fhir } from '../api';

/** The largest recording kept: the chart takes files of up to 64 MiB. */
export const RECORDING_BYTES_MAX = 60 * 1024 * 1024;
/** A modest video rate: about 45 minutes fit under the limit. */
const VIDEO_BITS_PER_SEC = 160_000;
const AUDIO_BITS_PER_SEC = 32_000;
/** How often the recorder hands over what it has (to watch the size). */
const SLICE_MS = 1000;

/**
 * Records one video (the first source with video: the person one is talking to) and the
 * sound of every source mixed together.
 */
export class VisitRecorder {
  private readonly recorder: MediaRecorder;
  private readonly audio: AudioContext;
  private readonly chunks: Blob[] = [];
  private bytes = 0;
  private stopped: Promise<Blob>;
  readonly startedAtMs = Date.now();

  constructor(
    sources: MediaStream[],
    private readonly onLimit: () => void,
  ) {
    this.audio = new AudioContext();
    const mix = this.audio.createMediaStreamDestination();
    for (const source of sources) {
      if (source.getAudioTracks().length > 0) this.audio.createMediaStreamSource(source).connect(mix);
    }
    const video = sources.flatMap((s) => s.getVideoTracks())[0];
    const tracks = [...(video ? [video] : []), ...mix.stream.getAudioTracks()];
    const mimeType = video ? 'video/webm' : 'audio/webm';
    this.recorder = new MediaRecorder(new MediaStream(tracks), {
      mimeType,
      videoBitsPerSecond: VIDEO_BITS_PER_SEC,
      audioBitsPerSecond: AUDIO_BITS_PER_SEC,
    });
    this.recorder.ondataavailable = (event) => {
      if (event.data.size === 0) return;
      this.chunks.push(event.data);
      this.bytes += event.data.size;
      if (this.bytes >= RECORDING_BYTES_MAX) this.onLimit();
    };
    this.stopped = new Promise((resolve) => {
      this.recorder.onstop = () => {
        void this.audio.close();
        resolve(new Blob(this.chunks, { type: mimeType }));
      };
    });
    this.recorder.start(SLICE_MS);
  }

  /** Stops and returns what was recorded. */
  stop(): Promise<Blob> {
    if (this.recorder.state !== 'inactive') this.recorder.stop();
    return this.stopped;
  }
}

/** Who agreed to the recording, as the chart names them. */
export interface Agreement {
  /** `Patient/{id}` for the patient; otherwise no reference, only a description. */
  reference: string | null;
  display: string;
}

export interface Filed {
  documentReference: string;
  consents: string[];
}

/**
 * Files a recording to the patient's chart: the file as a `Binary`, a `DocumentReference`
 * pointing at it, and a `Consent` per agreement.
 */
export async function fileRecording(params: {
  appointment: string;
  patient: string;
  recording: Blob;
  startedAtMs: number;
  endedAtMs: number;
  agreements: Agreement[];
}): Promise<Filed> {
  const { patient, appointment } = params;
  const bytes = new Uint8Array(await params.recording.arrayBuffer());
  // The recorder names its codecs (`video/webm;codecs=vp8,opus`); the chart keeps the type.
  const contentType = (params.recording.type || 'video/webm').split(';')[0]!.trim();
  const binary = await apiUpload<{ id: string }>('POST', '/fhir/Binary', bytes, contentType, {
    'x-security-context': `Patient/${patient}`,
  });
  const start = new Date(params.startedAtMs).toISOString();
  const end = new Date(params.endedAtMs).toISOString();
  const consents: string[] = [];
  for (const agreement of params.agreements) {
    const consent = await fhir<{ id: string }>('POST', 'Consent', {
      resourceType: 'Consent',
      identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:haven:visit:${appointment}:recording` }],
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0', display: 'Patient Consent' }], text: 'Consent to record a video visit' }],
      patient: { reference: `Patient/${patient}` },
      dateTime: start,
      // ppc-1: a consent names the policy it is given under; an opt-in to this recording.
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      performer: [agreement.reference ? { reference: agreement.reference, display: agreement.display } : { display: agreement.display }],
      provision: {
        type: 'permit',
        period: { start, end },
        action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'collect' }], text: 'Record the video visit' }],
      },
    });
    consents.push(consent.id);
  }
  const document = await fhir<{ id: string }>('POST', 'DocumentReference', {
    resourceType: 'DocumentReference',
    identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:haven:visit:${appointment}:recording` }],
    status: 'current',
    type: { text: 'Video visit recording' },
    subject: { reference: `Patient/${patient}` },
    date: end,
    description: `Recording of the video visit, with the consent of everyone in it (${params.agreements.length} people)`,
    content: [{ attachment: { contentType, url: `Binary/${binary.id}`, title: 'Video visit recording', size: bytes.length } }],
    context: { period: { start, end } },
  });
  bytes.fill(0);
  return { documentReference: document.id, consents };
}
