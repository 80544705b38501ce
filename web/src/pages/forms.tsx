// Intake forms: the clinic's active Questionnaires, which of them the patient has already
// answered, and a form drawn from a Questionnaire whose answers are saved as a
// QuestionnaireResponse in the patient's record.
//
// The renderer covers the item types intake forms use: group, display, boolean, string,
// text, integer, decimal, date, dateTime, choice and open-choice (answer options as codings,
// strings, integers or dates), `required`, `repeats` for choices, `maxLength` and
// `readOnly`. Conditional items (`enableWhen`) are all shown: the person may leave one that
// does not apply to them empty, and a required one is required only when shown.
import { useState } from 'preact/hooks';
import { fhir } from '../api';
import { type Bundle, type Coding, type Resource, matches } from '../fhir';
import { navigate } from '../router';
import { ErrorNote, Link, Page, Show, useLoad, when } from '../ui';

interface AnswerOption {
  valueCoding?: Coding;
  valueString?: string;
  valueInteger?: number;
  valueDate?: string;
  initialSelected?: boolean;
}

interface Item {
  linkId: string;
  prefix?: string;
  text?: string;
  type: string;
  required?: boolean;
  repeats?: boolean;
  readOnly?: boolean;
  maxLength?: number;
  answerOption?: AnswerOption[];
  item?: Item[];
}

export interface Questionnaire extends Resource {
  url?: string;
  version?: string;
  title?: string;
  name?: string;
  description?: string;
  status: string;
  item?: Item[];
}

interface QuestionnaireResponse extends Resource {
  questionnaire?: string;
  status: string;
  authored?: string;
}

/** Forms listed; a clinic has a handful. */
const FORMS_MAX = 50;

/** The canonical reference a response names its form by: `url|version`. */
function canonical(form: Questionnaire): string {
  return form.url ? (form.version ? `${form.url}|${form.version}` : form.url) : `Questionnaire/${form.id}`;
}

function answeredOn(form: Questionnaire, responses: QuestionnaireResponse[]): string | null {
  const names = new Set([canonical(form), form.url, `Questionnaire/${form.id}`]);
  const response = responses.find((r) => r.questionnaire && names.has(r.questionnaire) && r.status === 'completed');
  return response ? response.authored ?? '' : null;
}

function loadForms(patient: string) {
  return Promise.all([
    fhir<Bundle<Questionnaire>>('GET', `Questionnaire?status=active&_count=${FORMS_MAX}`).then(matches),
    fhir<Bundle<QuestionnaireResponse>>('GET', `QuestionnaireResponse?patient=${patient}&_count=${FORMS_MAX}`).then(matches),
  ]);
}

/** The forms still to complete, for the home page. */
export function useFormsToComplete(patient: string) {
  return useLoad(
    () => loadForms(patient).then(([forms, responses]) => forms.filter((f) => answeredOn(f, responses) === null)),
    [patient],
  );
}

export function FormsList(props: { patient: string }) {
  const forms = useLoad(() => loadForms(props.patient), [props.patient]);
  return (
    <Page title="Forms" lead="Questions your clinic asks before a visit. Your answers go into your record.">
      <Show loaded={forms} what="your forms">
        {([list, responses]) =>
          list.length === 0 ? (
            <p class="empty card">Your clinic has no forms for you.</p>
          ) : (
            <ul class="plain card">
              {list.map((form) => {
                const answered = answeredOn(form, responses);
                return (
                  <li key={form.id}>
                    <Link href={`/portal/forms/${form.id}`}>
                      <strong>{form.title ?? form.name ?? 'Form'}</strong>
                    </Link>
                    <span class="detail">{answered === null ? 'To complete' : `Completed ${when(answered)}`}</span>
                  </li>
                );
              })}
            </ul>
          )
        }
      </Show>
    </Page>
  );
}

type Value = string | string[];
type Answers = Record<string, Value>;

function optionValue(option: AnswerOption): string {
  if (option.valueCoding) return `${option.valueCoding.system ?? ''}|${option.valueCoding.code ?? ''}`;
  if (option.valueString !== undefined) return `string:${option.valueString}`;
  if (option.valueInteger !== undefined) return `integer:${option.valueInteger}`;
  return `date:${option.valueDate ?? ''}`;
}

function optionLabel(option: AnswerOption): string {
  if (option.valueCoding) return option.valueCoding.display ?? option.valueCoding.code ?? '';
  if (option.valueString !== undefined) return option.valueString;
  if (option.valueInteger !== undefined) return String(option.valueInteger);
  return when(option.valueDate);
}

function optionAnswer(option: AnswerOption): Record<string, unknown> {
  if (option.valueCoding) return { valueCoding: option.valueCoding };
  if (option.valueString !== undefined) return { valueString: option.valueString };
  if (option.valueInteger !== undefined) return { valueInteger: option.valueInteger };
  return { valueDate: option.valueDate };
}

/** The answers a form starts with: the options marked `initialSelected`. */
function initialAnswers(items: Item[] = [], answers: Answers = {}): Answers {
  for (const item of items) {
    const selected = item.answerOption?.filter((o) => o.initialSelected).map(optionValue) ?? [];
    if (selected.length) answers[item.linkId] = item.repeats ? selected : selected[0]!;
    initialAnswers(item.item, answers);
  }
  return answers;
}

/** The FHIR answer values of one item, or none. */
function answersOf(item: Item, value: Value | undefined): Record<string, unknown>[] {
  const values = (Array.isArray(value) ? value : value === undefined ? [] : [value]).filter((v) => v.trim() !== '');
  return values.flatMap((v) => {
    switch (item.type) {
      case 'boolean':
        return [{ valueBoolean: v === 'true' }];
      case 'integer':
        return [{ valueInteger: Number.parseInt(v, 10) }];
      case 'decimal':
        return [{ valueDecimal: Number(v) }];
      case 'date':
        return [{ valueDate: v }];
      case 'dateTime':
        return [{ valueDateTime: new Date(v).toISOString() }];
      case 'choice':
      case 'open-choice': {
        const option = item.answerOption?.find((o) => optionValue(o) === v);
        if (option) return [optionAnswer(option)];
        return item.type === 'open-choice' ? [{ valueString: v }] : [];
      }
      default:
        return [{ valueString: v }];
    }
  });
}

/** The response's items: groups with their answered children, questions with answers. */
function responseItems(items: Item[] = [], answers: Answers): Record<string, unknown>[] {
  return items.flatMap((item): Record<string, unknown>[] => {
    if (item.type === 'display') return [];
    if (item.type === 'group') {
      const children = responseItems(item.item, answers);
      return children.length ? [{ linkId: item.linkId, text: item.text, item: children }] : [];
    }
    const answer = answersOf(item, answers[item.linkId]);
    return answer.length ? [{ linkId: item.linkId, text: item.text, answer }] : [];
  });
}

function Question(props: { item: Item; answers: Answers; set: (linkId: string, value: Value) => void }) {
  const { item, answers, set } = props;
  const id = `q-${item.linkId}`;
  const label = [item.prefix, item.text].filter(Boolean).join(' ');
  const value = answers[item.linkId];
  const text = typeof value === 'string' ? value : '';
  if (item.type === 'display') return <p class="form-display">{label}</p>;
  if (item.type === 'group') {
    return (
      <fieldset class="form-group">
        <legend>{label}</legend>
        {item.item?.map((child) => <Question key={child.linkId} item={child} answers={answers} set={set} />)}
      </fieldset>
    );
  }
  const required = item.required ? <span class="required"> (required)</span> : null;
  if (item.type === 'boolean' || item.type === 'choice' || (item.type === 'open-choice' && item.answerOption?.length)) {
    const options: [string, string][] =
      item.type === 'boolean'
        ? [
            ['true', 'Yes'],
            ['false', 'No'],
          ]
        : item.answerOption!.map((o) => [optionValue(o), optionLabel(o)]);
    const multiple = item.repeats && item.type !== 'boolean';
    const chosen = Array.isArray(value) ? value : value ? [value] : [];
    return (
      <fieldset class="form-question">
        <legend>
          {label}
          {required}
        </legend>
        {options.map(([optionValue, optionText]) => (
          <label class="check" key={optionValue}>
            <input
              type={multiple ? 'checkbox' : 'radio'}
              name={id}
              value={optionValue}
              checked={chosen.includes(optionValue)}
              required={item.required && !multiple}
              disabled={item.readOnly}
              onChange={(e) => {
                if (!multiple) return set(item.linkId, optionValue);
                const next = e.currentTarget.checked ? [...chosen, optionValue] : chosen.filter((c) => c !== optionValue);
                set(item.linkId, next);
              }}
            />{' '}
            {optionText}
          </label>
        ))}
        {item.type === 'open-choice' && (
          <div class="field">
            <label for={`${id}-other`}>Something else</label>
            <input
              id={`${id}-other`}
              value={chosen.find((c) => !options.some(([v]) => v === c)) ?? ''}
              onInput={(e) => {
                const other = e.currentTarget.value;
                // With several answers allowed, the ticked ones stay beside the typed one.
                const ticked = multiple ? chosen.filter((c) => options.some(([v]) => v === c)) : [];
                set(item.linkId, multiple ? [...ticked, other] : other);
              }}
            />
          </div>
        )}
      </fieldset>
    );
  }
  const common = {
    id,
    required: item.required,
    readOnly: item.readOnly,
    maxLength: item.maxLength,
  };
  let input;
  if (item.type === 'text') {
    input = <textarea {...common} rows={4} value={text} onInput={(e) => set(item.linkId, e.currentTarget.value)} />;
  } else {
    const type =
      item.type === 'integer' || item.type === 'decimal'
        ? 'number'
        : item.type === 'date'
          ? 'date'
          : item.type === 'dateTime'
            ? 'datetime-local'
            : 'text';
    input = (
      <input
        {...common}
        type={type}
        step={item.type === 'decimal' ? 'any' : undefined}
        value={text}
        onInput={(e) => set(item.linkId, e.currentTarget.value)}
      />
    );
  }
  return (
    <div class="field">
      <label for={id}>
        {label}
        {required}
      </label>
      {input}
    </div>
  );
}

export function FormPage(props: { patient: string; form: string }) {
  const form = useLoad(() => fhir<Questionnaire>('GET', `Questionnaire/${props.form}`), [props.form]);
  return (
    <Show loaded={form} what="the form">
      {(questionnaire) => <Form patient={props.patient} questionnaire={questionnaire} />}
    </Show>
  );
}

function Form(props: { patient: string; questionnaire: Questionnaire }) {
  const { questionnaire } = props;
  const [answers, setAnswers] = useState<Answers>(() => initialAnswers(questionnaire.item));
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const set = (linkId: string, value: Value) => setAnswers((current) => ({ ...current, [linkId]: value }));
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await fhir('POST', 'QuestionnaireResponse', {
        resourceType: 'QuestionnaireResponse',
        questionnaire: canonical(questionnaire),
        status: 'completed',
        subject: { reference: `Patient/${props.patient}` },
        author: { reference: `Patient/${props.patient}` },
        authored: new Date().toISOString(),
        item: responseItems(questionnaire.item, answers),
      });
      navigate('/portal/forms');
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <Page title={questionnaire.title ?? questionnaire.name ?? 'Form'} windowTitle="Form" lead={questionnaire.description?.replace(/\*\*/g, '')}>
      <form class="card questionnaire" onSubmit={submit} autoComplete="off">
        {questionnaire.item?.map((item) => <Question key={item.linkId} item={item} answers={answers} set={set} />)}
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Sending…' : 'Send my answers'}
        </button>
      </form>
    </Page>
  );
}
