// The note a clinician writes during or after a video visit, filed to the visit's
// `Encounter`: the first note of a visit opens the Encounter (virtual, linked to the
// `Appointment`), and every note is a `DocumentReference` in its context, sealed at rest
// and audited like the rest of the chart.
import { fhir } from '../api';
import { utf8ToBase64 } from '../fhir';

/** The longest note typed here, in characters (FHIR keeps inline text up to 256 KiB). */
export const VISIT_NOTE_CHARS_MAX = 100_000;

/** Opens the visit's Encounter (in progress, virtual) and returns its id. */
export async function openVisitEncounter(params: { appointment: string; patient: string; startedAtMs: number }): Promise<string> {
  const encounter = await fhir<{ id: string }>('POST', 'Encounter', {
    resourceType: 'Encounter',
    identifier: [{ system: 'urn:ietf:rfc:3986', value: `urn:haven:visit:${params.appointment}` }],
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'VR', display: 'virtual' },
    subject: { reference: `Patient/${params.patient}` },
    appointment: [{ reference: `Appointment/${params.appointment}` }],
    period: { start: new Date(params.startedAtMs).toISOString() },
  });
  return encounter.id;
}

/** Files one note in the Encounter's context; returns the DocumentReference's id. */
export async function fileVisitNote(params: { patient: string; encounter: string; text: string }): Promise<string> {
  const text = params.text.trim().slice(0, VISIT_NOTE_CHARS_MAX);
  const document = await fhir<{ id: string }>('POST', 'DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    docStatus: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '11506-3', display: 'Progress note' }], text: 'Visit note' },
    subject: { reference: `Patient/${params.patient}` },
    date: new Date().toISOString(),
    description: 'Video visit note',
    content: [{ attachment: { contentType: 'text/plain', data: utf8ToBase64(text), title: 'Video visit note' } }],
    context: { encounter: [{ reference: `Encounter/${params.encounter}` }] },
  });
  return document.id;
}
