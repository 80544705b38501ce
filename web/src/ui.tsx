// Small shared pieces of every page: a titled page, the loading and error states, form
// fields with their labels and errors tied together for screen readers.
import type { ComponentChildren, JSX } from 'preact';
import { createPortal } from 'preact/compat';
import { useEffect, useRef, useState } from 'preact/hooks';
import { messageOf } from './api';
import { follow } from './router';

/**
 * A page: its heading (focused on arrival, so a screen reader announces it) and the
 * window's title. `windowTitle` replaces a heading that names a person: window titles go
 * into the browser's history, which outlives the session on a shared computer.
 */
export function Page(props: { title: string; children: ComponentChildren; lead?: string; windowTitle?: string }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const windowTitle = props.windowTitle ?? props.title;
  useEffect(() => {
    document.title = `${windowTitle} · Haven`;
    heading.current?.focus();
  }, [props.title, windowTitle]);
  return (
    <section class="page" aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1} ref={heading}>
        {props.title}
      </h1>
      {props.lead && <p class="lead">{props.lead}</p>}
      {props.children}
    </section>
  );
}

export function Link(props: { href: string; children: ComponentChildren; class?: string; current?: boolean }) {
  return (
    <a
      href={props.href}
      class={props.class}
      aria-current={props.current ? 'page' : undefined}
      onClick={(e) => follow(e, props.href)}
    >
      {props.children}
    </a>
  );
}

export function Loading(props: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {props.what}…
    </p>
  );
}

export function ErrorNote(props: { error: unknown }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert">
      {typeof props.error === 'string' ? props.error : messageOf(props.error)}
    </p>
  );
}

/** The state of data being fetched for a page. */
export type Loaded<T> = { state: 'loading' } | { state: 'ready'; value: T } | { state: 'failed'; error: unknown };

/**
 * Fetches once per change of `deps`; the answer of a superseded fetch is dropped. While a
 * refresh is on its way the previous answer stays on screen, so what the person was doing
 * there (a half-written note) is not thrown away; pages about another patient or record
 * are separate components (keyed), never a refresh of this one.
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  useEffect(() => {
    let current = true;
    setLoaded((previous) => (previous.state === 'ready' ? previous : { state: 'loading' }));
    load().then(
      (value) => current && setLoaded({ state: 'ready', value }),
      (error) => current && setLoaded({ state: 'failed', error }),
    );
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return loaded;
}

/** Renders what was loaded, or the loading or failed state. */
export function Show<T>(props: { loaded: Loaded<T>; what: string; children: (value: T) => ComponentChildren }) {
  const { loaded } = props;
  if (loaded.state === 'loading') return <Loading what={props.what} />;
  if (loaded.state === 'failed') return <ErrorNote error={loaded.error} />;
  return <>{props.children(loaded.value)}</>;
}

let nextFieldId = 0;

export function Field(
  props: {
    label: string;
    hint?: string;
    value: string;
    onInput: (value: string) => void;
  } & Omit<JSX.InputHTMLAttributes<HTMLInputElement>, 'value' | 'onInput' | 'label'>,
) {
  const { label, hint, value, onInput, ...input } = props;
  const [id] = useState(() => `field-${++nextFieldId}`);
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {hint && (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      <input
        id={id}
        value={value}
        aria-describedby={hint ? `${id}-hint` : undefined}
        onInput={(e) => onInput(e.currentTarget.value)}
        {...input}
      />
    </div>
  );
}

/** A short date and time in the reader's own locale and time zone. */
export function when(iso: string | undefined): string {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: iso.length > 10 ? 'short' : undefined });
}

/** A day as `YYYY-MM-DD` in the reader's own time zone (not UTC's, which may be another day). */
export function localDate(at: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
}

/**
 * A modal dialog: drawn outside the app's tree, with the app made `inert` behind it (no
 * focus, no clicks, hidden from screen readers) until it closes, when focus goes back to
 * where it was. Escape calls `onEscape`, if there is one.
 */
export function Modal(props: {
  labelledBy: string;
  describedBy?: string;
  role?: 'dialog' | 'alertdialog';
  onEscape?: () => void;
  children: ComponentChildren;
}) {
  useEffect(() => {
    const app = document.getElementById('app');
    const before = document.activeElement as HTMLElement | null;
    app?.setAttribute('inert', '');
    return () => {
      app?.removeAttribute('inert');
      before?.focus?.();
    };
  }, []);
  return createPortal(
    <div class="backdrop">
      <div
        class="dialog"
        role={props.role ?? 'dialog'}
        aria-modal="true"
        aria-labelledby={props.labelledBy}
        aria-describedby={props.describedBy}
        onKeyDown={(e) => {
          if (e.key === 'Escape' && props.onEscape) props.onEscape();
        }}
      >
        {props.children}
      </div>
    </div>,
    document.body,
  );
}
