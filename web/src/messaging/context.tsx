// What the pages of a signed-in person share about messaging: this browser's device, the
// event stream, and the number of unread messages. It lives in the signed-in part of the
// app, so signing out (which unmounts it) closes the stream and drops it all.
import { type ComponentChildren, createContext } from 'preact';
import { useCallback, useContext, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { apiInBackground } from '../api';
import type { Role, Session } from '../session';
import { type ThisDevice, setUpAgain, setUpThisDevice } from './device';
import { EventStream, type HavenEvent } from './events';
import type { Inbox } from './threads';

export interface Messaging {
  me: string;
  role: Role;
  /** The patient's own record, for a patient; `null` for staff. */
  patient: string | null;
  device: ThisDevice;
  setUpAgain: () => Promise<void>;
  /** Unread messages across the person's conversations; `null` until known. */
  unread: number | null;
  /** Asks Haven again (after reading a conversation here). */
  refreshUnread: () => void;
  subscribe: (listener: (event: HavenEvent) => void) => () => void;
}

const MessagingContext = createContext<Messaging | null>(null);

/** Who writes messages in Haven: a patient about their own record, and clinical staff. */
export function messagingFor(session: Session): boolean {
  if (session.role === 'patient') return session.patient !== null;
  return session.role === 'clinician' || session.role === 'nurse';
}

export function MessagingProvider(props: { session: Session; children: ComponentChildren }) {
  const { session } = props;
  const [device, setDevice] = useState<ThisDevice>({ state: 'checking' });
  const [unread, setUnread] = useState<number | null>(null);
  const stream = useRef<EventStream | null>(null);
  const listeners = useRef(new Set<(event: HavenEvent) => void>());

  const refreshUnread = useCallback(() => {
    apiInBackground<Inbox>('GET', '/api/v1/threads').then(
      (inbox) => setUnread(inbox.unread),
      () => undefined,
    );
  }, []);

  useEffect(() => {
    let current = true;
    setUpThisDevice(session.user).then((found) => current && setDevice(found));
    refreshUnread();
    const events = new EventStream();
    stream.current = events;
    events.subscribe((event) => {
      if (event.type === 'devices' && event.user === session.user) {
        // One of my devices changed: perhaps this one was removed from another.
        setUpThisDevice(session.user, true).then((found) => current && setDevice(found));
      }
      if (event.type !== 'devices') refreshUnread();
      for (const listener of [...listeners.current]) listener(event);
    });
    return () => {
      current = false;
      events.close();
      stream.current = null;
    };
  }, [session.user, refreshUnread]);

  const subscribe = useCallback((listener: (event: HavenEvent) => void) => {
    listeners.current.add(listener);
    return () => listeners.current.delete(listener);
  }, []);

  const again = useCallback(async () => {
    setDevice({ state: 'checking' });
    setDevice(await setUpAgain(session.user));
  }, [session.user]);

  const value = useMemo<Messaging>(
    () => ({
      me: session.user,
      role: session.role,
      patient: session.role === 'patient' ? session.patient : null,
      device,
      setUpAgain: again,
      unread,
      refreshUnread,
      subscribe,
    }),
    [session, device, again, unread, refreshUnread, subscribe],
  );
  return <MessagingContext.Provider value={value}>{props.children}</MessagingContext.Provider>;
}

/** The signed-in person's messaging, or `null` for a role that has none. */
export function useMessaging(): Messaging | null {
  return useContext(MessagingContext);
}

/** Calls `listener` with each event while the component is mounted. */
export function useEvents(listener: (event: HavenEvent) => void): void {
  const messaging = useMessaging();
  const latest = useRef(listener);
  latest.current = listener;
  const subscribe = messaging?.subscribe;
  useEffect(() => subscribe?.((event) => latest.current(event)), [subscribe]);
}
