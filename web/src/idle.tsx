// The idle time-out, as a person sees it: after a while without activity a warning counts
// down with a "Stay signed in" button; when it reaches zero the app signs out and forgets
// everything it had loaded.
//
// Haven ends an idle session on its side too; this is the courtesy and the wipe, not the
// enforcement. Haven measures idleness from the last request it recorded, and records
// activity only every `activityIntervalSecs`, so its time-out may strike that much early.
// The app therefore counts from its own last request to Haven, ends its countdown that much
// sooner, and turns a person's activity into a request (at most once per interval): the app
// always signs out first, and a person who is using it is never signed out.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, lastServerContactMs } from './api';
import { Modal } from './ui';

/** Events that count as the person being there. */
const ACTIVITY_EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;
/** How often the countdown is re-checked, in milliseconds. */
const TICK_MS = 1000;

/** The warning's lead time: a quarter of the time-out, between 10 s and 2 min. */
export function warningSecs(idleTimeoutSecs: number): number {
  return Math.min(120, Math.max(10, Math.floor(idleTimeoutSecs / 4)));
}

/** What a keep-alive learns: the time-outs in force now (an administrator may have made them stricter). */
export interface Timeouts {
  idle_timeout_secs?: number;
  activity_interval_secs?: number;
}

export function IdleTimeout(props: {
  idleTimeoutSecs: number;
  activityIntervalSecs: number;
  onExpired: () => void;
  /** Told the time-outs each keep-alive finds, so a stricter policy applies here at once. */
  onTimeouts: (timeouts: Timeouts) => void;
}) {
  const { activityIntervalSecs, onExpired, onTimeouts } = props;
  const keepAlive = () => api<Timeouts>('GET', '/api/v1/auth/session').then(onTimeouts);
  const countdownSecs = Math.max(1, props.idleTimeoutSecs - activityIntervalSecs);
  const [secondsLeft, setSecondsLeft] = useState<number | null>(null);
  /** Mirrors the warning for the event handlers, which do not re-subscribe on each render. */
  const warningShown = useRef(false);
  const stayButton = useRef<HTMLButtonElement>(null);
  const warning = secondsLeft !== null;

  useEffect(() => {
    const onActivity = () => {
      // While the warning is up, only its button keeps the session: a stray touch of the
      // mouse on a shared computer should not.
      if (warningShown.current) return;
      const idleMs = Date.now() - lastServerContactMs;
      // After a sleep, or in a background tab whose timers were slowed, the time may be up
      // already: a keypress then must not revive the session.
      if (idleMs >= countdownSecs * 1000) return onExpired();
      if (idleMs > activityIntervalSecs * 1000) keepAlive().catch(() => undefined);
    };
    for (const name of ACTIVITY_EVENTS) addEventListener(name, onActivity, { passive: true, capture: true });
    const timer = setInterval(() => {
      const left = Math.ceil((countdownSecs * 1000 - (Date.now() - lastServerContactMs)) / 1000);
      if (left <= 0) {
        clearInterval(timer);
        onExpired();
      } else if (left <= warningSecs(countdownSecs)) {
        warningShown.current = true;
        setSecondsLeft(left);
      } else if (warningShown.current) {
        warningShown.current = false;
        setSecondsLeft(null);
      }
    }, TICK_MS);
    return () => {
      clearInterval(timer);
      for (const name of ACTIVITY_EVENTS) removeEventListener(name, onActivity, { capture: true });
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [countdownSecs, activityIntervalSecs, onExpired]);

  useEffect(() => {
    if (warning) stayButton.current?.focus();
  }, [warning]);

  if (!warning) return null;
  // The warning goes once Haven has heard from the app again (the next tick sees it).
  const stay = () => keepAlive().catch(() => undefined);
  return (
    <Modal role="alertdialog" labelledBy="idle-title" describedBy="idle-text">
        <h2 id="idle-title">Are you still there?</h2>
        <p id="idle-text">
          To protect your health information, you will be signed out in{' '}
          <strong data-testid="idle-seconds">{secondsLeft}</strong> seconds.
        </p>
        <button type="button" class="primary" ref={stayButton} onClick={stay}>
          Stay signed in
        </button>
    </Modal>
  );
}
