// The parts of FHIR R4 resources the pages show, and how to say them to a person.

export interface Coding {
  system?: string;
  code?: string;
  display?: string;
}
export interface CodeableConcept {
  coding?: Coding[];
  text?: string;
}
export interface Quantity {
  value?: number;
  unit?: string;
  comparator?: string;
}
export interface Reference {
  reference?: string;
  display?: string;
}
export interface Resource {
  resourceType: string;
  id: string;
  meta?: { versionId?: string; lastUpdated?: string };
  [element: string]: unknown;
}
export interface Bundle<T extends Resource = Resource> {
  resourceType: 'Bundle';
  total?: number;
  entry?: { resource: T; search?: { mode?: string } }[];
  link?: { relation: string; url: string }[];
}

export interface Observation extends Resource {
  status: string;
  category?: CodeableConcept[];
  code: CodeableConcept;
  effectiveDateTime?: string;
  issued?: string;
  valueQuantity?: Quantity;
  valueString?: string;
  valueCodeableConcept?: CodeableConcept;
  valueBoolean?: boolean;
  valueInteger?: number;
  interpretation?: CodeableConcept[];
  referenceRange?: { low?: Quantity; high?: Quantity; text?: string }[];
  component?: { code: CodeableConcept; valueQuantity?: Quantity }[];
}

/** The resources of a search answer (not the `_include`d ones). */
export function matches<T extends Resource>(bundle: Bundle<T>): T[] {
  return (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include').map((e) => e.resource);
}

export function conceptText(concept: CodeableConcept | undefined): string {
  if (!concept) return '';
  return concept.text ?? concept.coding?.find((c) => c.display)?.display ?? concept.coding?.[0]?.code ?? '';
}

export function quantityText(quantity: Quantity | undefined): string {
  if (!quantity || quantity.value === undefined) return '';
  return [quantity.comparator, quantity.value, quantity.unit].filter((p) => p !== undefined && p !== '').join(' ');
}

export function observationValue(observation: Observation): string {
  if (observation.valueQuantity) return quantityText(observation.valueQuantity);
  if (observation.valueString !== undefined) return observation.valueString;
  if (observation.valueCodeableConcept) return conceptText(observation.valueCodeableConcept);
  if (observation.valueBoolean !== undefined) return observation.valueBoolean ? 'Yes' : 'No';
  if (observation.valueInteger !== undefined) return String(observation.valueInteger);
  if (observation.component?.length) {
    return observation.component.map((c) => quantityText(c.valueQuantity)).filter(Boolean).join(' / ');
  }
  return '';
}

export function rangeText(observation: Observation): string {
  const range = observation.referenceRange?.[0];
  if (!range) return '';
  if (range.text) return range.text;
  const low = quantityText(range.low);
  const high = quantityText(range.high);
  if (low && high) return `${range.low?.value}–${high}`;
  if (low) return `≥ ${low}`;
  if (high) return `≤ ${high}`;
  return '';
}

/**
 * Whether a value lies outside its reference range: `high`, `low` or `null` (in range, or
 * not known). The result's own interpretation wins over a comparison with the range.
 */
export function outOfRange(observation: Observation): 'high' | 'low' | null {
  const flag = observation.interpretation?.[0]?.coding?.[0]?.code;
  if (flag === 'H' || flag === 'HH' || flag === 'HU') return 'high';
  if (flag === 'L' || flag === 'LL' || flag === 'LU') return 'low';
  if (flag) return null;
  const value = observation.valueQuantity?.value;
  const range = observation.referenceRange?.[0];
  if (value === undefined || !range) return null;
  if (range.high?.value !== undefined && value > range.high.value) return 'high';
  if (range.low?.value !== undefined && value < range.low.value) return 'low';
  return null;
}

export function categoryOf(observation: Observation): string {
  return observation.category?.[0]?.coding?.[0]?.code ?? '';
}

/** Text as FHIR's inline `Attachment.data`: standard base64 of its UTF-8 bytes. */
export function utf8ToBase64(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
