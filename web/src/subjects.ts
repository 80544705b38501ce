// Whose record a patient-role user is looking at: their own, or that of someone who made
// them their proxy (a child, a person they care for), within what the delegation allows.
import { api } from './api';

export interface Delegated {
  patient: string;
  relationship: string;
  /** `record`, `access_log`. */
  scopes: string[];
  state: string;
}

export interface Subject {
  /** The patient id whose record is shown. */
  patient: string;
  /** Whose it is, said to the reader: "Your record", "Lovelace (you are their parent)". */
  label: string;
  /** What may be seen: everything for one's own record, the delegation's scopes otherwise. */
  scopes: string[];
  own: boolean;
}

const ALL_SCOPES = ['record', 'access_log'];

/** The records a patient-role user may look at: their own first, then those they act for. */
export async function subjectsOf(ownPatient: string | null): Promise<Subject[]> {
  const me = await api<{ acting_for: Delegated[] }>('GET', '/api/v1/me');
  const subjects: Subject[] = ownPatient ? [{ patient: ownPatient, label: 'Your record', scopes: ALL_SCOPES, own: true }] : [];
  for (const delegation of me.acting_for.filter((d) => d.state === 'active')) {
    let name = 'Someone';
    try {
      const patient = await api<{ name: { family: string; given: string[] } }>('GET', `/api/v1/patients/${delegation.patient}`);
      name = [...patient.name.given, patient.name.family].join(' ');
    } catch {
      // A delegation without the record scope cannot read the name: the relationship says enough.
    }
    subjects.push({
      patient: delegation.patient,
      label: `${name} (you are their ${delegation.relationship})`,
      scopes: delegation.scopes,
      own: false,
    });
  }
  return subjects;
}
