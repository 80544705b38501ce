// Haven's web app: the shell (header, navigation, the idle time-out) and which page each
// path shows for whom. Everything loaded about a patient lives in the pages' memory; signing
// out, by hand or by the idle time-out, unmounts them all, so nothing is left behind.
import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import './styles.css';
import { ApiError, announceSignOut, api, onSessionEnded, setCsrfToken } from './api';
import { IdleTimeout, type Timeouts } from './idle';
import { AccessLogPage } from './pages/access-log';
import { Account } from './pages/account';
import { Administration } from './pages/admin';
import { AuditSearch } from './pages/audit';
import { Chart } from './pages/chart';
import { MyCorrections, NewCorrection } from './pages/corrections';
import { Enrol } from './pages/enrol';
import { FormPage, FormsList } from './pages/forms';
import { MyRecord, PortalHome } from './pages/portal';
import { PrivacyConsole } from './pages/privacy';
import { PrivacySettings } from './pages/privacy-settings';
import { SignIn } from './pages/sign-in';
import { Workspace } from './pages/workspace';
import { VisitPage } from './pages/visit';
import { GUEST_VISIT_PATH, GuestVisitPage } from './pages/visit-guest';
import { MessagesInbox, NewConversation, TeamConversation, ThreadPage, UnreadBadge } from './pages/messages';
import { MessagingProvider, messagingFor, useMessaging } from './messaging/context';
import { navigate, usePath } from './router';
import { type Session, currentSession, homeOf, roleNames } from './session';
import { type Subject, subjectsOf } from './subjects';
import { Link, Loading, Page, useLoad } from './ui';

type Auth = { state: 'checking' } | { state: 'signed-out'; notice: string | null } | { state: 'signed-in'; session: Session };

/** Paths a signed-out visitor may see. */
const PUBLIC_PATHS = ['/sign-in', '/enrol', GUEST_VISIT_PATH];

function navigation(session: Session, subject: Subject | null): [string, string][] {
  switch (session.role) {
    case 'patient': {
      // A proxy sees what their delegation allows; the rest is the patient's own business.
      const items: [string, string][] = [['/portal', 'Home']];
      if (subject?.scopes.includes('record')) items.push(['/portal/record', subject.own ? 'My record' : 'Record']);
      if (subject?.own) items.push(['/portal/messages', 'Messages']);
      if (subject?.own) items.push(['/portal/forms', 'Forms']);
      if (subject?.scopes.includes('access_log')) items.push(['/portal/access', 'Who accessed my record']);
      if (subject?.own) items.push(['/portal/privacy', 'Privacy and sharing']);
      items.push(['/account', 'Account']);
      return items;
    }
    case 'clinician':
    case 'nurse':
      return [
        ['/workspace', 'Patients'],
        ['/workspace/messages', 'Messages'],
        ['/account', 'Account'],
      ];
    case 'front_desk':
      return [
        ['/workspace', 'Patients'],
        ['/account', 'Account'],
      ];
    case 'privacy_officer':
    case 'auditor':
      return [
        ['/privacy', 'Break-the-glass review'],
        ['/privacy/audit', 'Audit log'],
        ['/account', 'Account'],
      ];
    case 'administrator':
      return [
        ['/admin', 'Administration'],
        ['/account', 'Account'],
      ];
  }
}

/** The chart's path: `/workspace/patients/{id}`. */
const CHART_PATH = /^\/workspace\/patients\/([0-9a-fA-F-]{36})$/;
/** A correction request's page: `/portal/corrections/new/{Type}/{id}`. */
const CORRECTION_PATH = /^\/portal\/corrections\/new\/([A-Za-z]{1,64}\/[A-Za-z0-9\-.]{1,64})$/;
/** A form's path: `/portal/forms/{Questionnaire id}` (FHIR ids: letters, digits, `-`, `.`). */
const FORM_PATH = /^\/portal\/forms\/([A-Za-z0-9\-.]{1,64})$/;
/** A conversation: `/portal/messages/{id}` or `/workspace/messages/{id}`. */
const THREAD_PATH = /^\/(?:portal|workspace)\/messages\/([0-9a-f-]{36})$/;
/** A video visit: `/visits/{Appointment id}`. */
const VISIT_PATH = /^\/visits\/([A-Za-z0-9\-.]{1,64})$/;
/** Starting a conversation with a patient's care team: `/workspace/patients/{id}/message`. */
const TEAM_MESSAGE_PATH = /^\/workspace\/patients\/([0-9a-fA-F-]{36})\/message$/;

const STAFF_ROLES = ['clinician', 'nurse', 'front_desk'];
const PRIVACY_ROLES = ['privacy_officer', 'auditor'];

/** Chooses whose record the portal shows, when there is more than one. */
function SubjectPicker(props: { subjects: Subject[]; selected: Subject; onSelect: (patient: string) => void }) {
  if (props.subjects.length < 2) return null;
  return (
    <div class="subject-picker">
      <label for="subject">Whose record</label>
      <select id="subject" value={props.selected.patient} onChange={(e) => props.onSelect(e.currentTarget.value)}>
        {props.subjects.map((s) => (
          <option key={s.patient} value={s.patient}>
            {s.label}
          </option>
        ))}
      </select>
    </div>
  );
}

function SignedIn(props: { session: Session; path: string; signOut: (notice: string | null) => void }) {
  const { path, signOut } = props;
  // The time-outs may be made stricter while signed in; keep-alives bring the new ones.
  const [session, setSession] = useState(props.session);
  const onTimeouts = useCallback((timeouts: Timeouts) => {
    setSession((current) => {
      const idle = timeouts.idle_timeout_secs ?? current.idleTimeoutSecs;
      const interval = timeouts.activity_interval_secs ?? current.activityIntervalSecs;
      return idle === current.idleTimeoutSecs && interval === current.activityIntervalSecs
        ? current
        : { ...current, idleTimeoutSecs: idle, activityIntervalSecs: interval };
    });
  }, []);
  const [subjectsVersion, setSubjectsVersion] = useState(0);
  const subjects = useLoad(
    () => (session.role === 'patient' ? subjectsOf(session.patient) : Promise.resolve([])),
    [session.role, session.patient, subjectsVersion],
  );
  const [chosen, setChosen] = useState<string | null>(null);
  const list = subjects.state === 'ready' ? subjects.value : [];
  const subject = list.find((s) => s.patient === chosen) ?? list[0] ?? null;
  const onIdle = useCallback(() => {
    const minutes = Math.round(session.idleTimeoutSecs / 60);
    signOut(`You were signed out after ${minutes} minute${minutes === 1 ? '' : 's'} without activity, to keep your information safe.`);
  }, [session, signOut]);
  let page;
  if (session.role === 'patient' && subjects.state === 'loading') page = <Loading what="your records" />;
  else if (session.role === 'patient' && !subject && path.startsWith('/portal')) {
    page = (
      <Page title="No record to show yet">
        <p>
          Your account is not linked to a record. If someone gave you a code to act for them, enter it under{' '}
          <Link href="/account">Account</Link>.
        </p>
      </Page>
    );
  } else if (session.role === 'patient' && subject) {
    // Pages are keyed by whose record they show: switching drops what the other had loaded.
    const patient = subject.patient;
    const own = subject.own;
    const may = (scope: string) => subject.scopes.includes(scope);
    if (path === '/portal') page = <PortalHome key={patient} patient={patient} me={session.user} scopes={subject.scopes} own={own} />;
    else if (path === '/portal/record' && may('record')) page = <MyRecord key={patient} patient={patient} own={own} />;
    else if (path === '/portal/access' && may('access_log')) page = <AccessLogPage key={patient} patient={patient} me={session.user} />;
    else if (own && path === '/portal/forms') page = <FormsList patient={patient} />;
    else if (own && path === '/portal/corrections') page = <MyCorrections patient={patient} />;
    else if (own && path === '/portal/privacy') page = <PrivacySettings patient={patient} />;
    else if (own && path === '/portal/messages') page = <MessagesInbox base="/portal/messages" />;
    else if (own && path === '/portal/messages/new') page = <NewConversation patient={patient} base="/portal/messages" />;
    else if (own && THREAD_PATH.test(path) && path.startsWith('/portal/')) {
      const thread = THREAD_PATH.exec(path)![1]!;
      page = <ThreadPage key={thread} thread={thread} base="/portal/messages" />;
    }
    else if (own && CORRECTION_PATH.test(path)) {
      const reference = CORRECTION_PATH.exec(path)![1]!;
      page = <NewCorrection key={reference} patient={patient} reference={reference} />;
    } else if (own) {
      const form = FORM_PATH.exec(path);
      if (form?.[1]) page = <FormPage key={form[1]} patient={patient} form={form[1]} />;
    }
  }
  if (STAFF_ROLES.includes(session.role)) {
    const chart = CHART_PATH.exec(path);
    if (path === '/workspace') page = <Workspace />;
    else if (chart?.[1]) page = <Chart key={chart[1]} patient={chart[1]} messaging={messagingFor(session)} />;
  }
  if (messagingFor(session) && session.role !== 'patient') {
    const thread = THREAD_PATH.exec(path);
    const team = TEAM_MESSAGE_PATH.exec(path);
    if (path === '/workspace/messages') page = <MessagesInbox base="/workspace/messages" />;
    else if (thread?.[1] && path.startsWith('/workspace/')) page = <ThreadPage key={thread[1]} thread={thread[1]} base="/workspace/messages" />;
    else if (team?.[1]) page = <TeamConversation key={team[1]} patient={team[1]} />;
  }
  // A patient's own visits, and the care team's: Haven decides who may enter which.
  const visit = VISIT_PATH.exec(path);
  if (visit?.[1] && messagingFor(session) && (session.role !== 'patient' || subject?.own)) {
    page = <VisitPage key={visit[1]} appointment={visit[1]} role={session.role} me={session.user} />;
  }
  if (PRIVACY_ROLES.includes(session.role)) {
    if (path === '/privacy') page = <PrivacyConsole />;
    else if (path === '/privacy/audit') page = <AuditSearch />;
  }
  if (session.role === 'administrator' && path === '/admin') page = <Administration />;
  if (path === '/account') {
    page = (
      <Account
        onSignedOut={signOut}
        canActForOthers={session.role === 'patient'}
        onActingChanged={() => setSubjectsVersion(subjectsVersion + 1)}
      />
    );
  }
  if (!page) {
    page = (
      <Page title="Page not found">
        <p>
          There is nothing here for you. <Link href={homeOf(session.role)}>Go to your home page</Link>.
        </p>
      </Page>
    );
  }
  const items = navigation(session, subject);
  // The section a page belongs to: the longest navigation path that starts its path.
  const current = items
    .map(([href]) => href)
    .filter((href) => path === href || path.startsWith(`${href}/`))
    .sort((a, b) => b.length - a.length)[0];
  const shell = (
    <>
      <header class="top">
        <Link href={homeOf(session.role)} class="brand">
          Haven
        </Link>
        <nav aria-label="Main">
          <ul>
            {items.map(([href, label]) => (
              <li key={href}>
                <Link href={href} class={href === current ? 'current' : undefined} current={href === path}>
                  {label}
                  {href.endsWith('/messages') && <NavigationUnread />}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>{roleNames[session.role]}</span>
          <button type="button" onClick={() => signOut('You signed out.')}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main">
        {subject && path.startsWith('/portal') && (
          <SubjectPicker subjects={list} selected={subject} onSelect={(patient) => setChosen(patient)} />
        )}
        {page}
      </main>
      <IdleTimeout
        idleTimeoutSecs={session.idleTimeoutSecs}
        activityIntervalSecs={session.activityIntervalSecs}
        onExpired={onIdle}
        onTimeouts={onTimeouts}
      />
    </>
  );
  // The messaging roles get this browser's device, the event stream and the unread count.
  return messagingFor(session) ? <MessagingProvider session={session}>{shell}</MessagingProvider> : shell;
}

function NavigationUnread() {
  return <UnreadBadge count={useMessaging()?.unread ?? null} />;
}

function App() {
  const path = usePath();
  const [auth, setAuth] = useState<Auth>({ state: 'checking' });

  const check = useCallback(async () => {
    const session = await currentSession();
    if (session) {
      setAuth({ state: 'signed-in', session });
      if (PUBLIC_PATHS.includes(location.pathname) || location.pathname === '/') navigate(homeOf(session.role), { replace: true });
    } else {
      setAuth({ state: 'signed-out', notice: null });
    }
  }, []);

  /** Drops everything the pages had loaded (in this tab) and shows the sign-in page. */
  const wipe = useCallback((notice: string | null) => {
    setCsrfToken(null);
    document.title = 'Haven';
    setAuth({ state: 'signed-out', notice });
    navigate('/sign-in', { replace: true });
  }, []);

  /**
   * Ends the session on Haven, then here and in the other tabs. The page is wiped either
   * way; if Haven could not be reached, the notice says the session may still be open.
   */
  const signOut = useCallback(
    async (notice: string | null) => {
      let ended = true;
      try {
        await api('POST', '/api/v1/auth/sign-out', {});
      } catch (error) {
        // Already over on Haven's side is ended too; anything else may have left it open.
        ended = error instanceof ApiError && error.status === 401;
      }
      announceSignOut();
      wipe(
        ended
          ? notice
          : 'Haven could not be reached to end your session. Close this browser before you leave this computer.',
      );
    },
    [wipe],
  );

  useEffect(() => {
    check();
    return onSessionEnded(() => {
      setCsrfToken(null);
      document.title = 'Haven';
      setAuth((current) =>
        current.state === 'signed-in' ? { state: 'signed-out', notice: 'Your session has ended. Please sign in again.' } : current,
      );
      if (!PUBLIC_PATHS.includes(location.pathname)) navigate('/sign-in', { replace: true });
    });
  }, [check]);

  useEffect(() => {
    if (auth.state === 'signed-out' && !PUBLIC_PATHS.includes(path)) navigate('/sign-in', { replace: true });
  }, [auth, path]);

  // A visit's guest has no account: their page stands apart from signing in (and a
  // signed-in person who opens a guest link joins as the guest it names).
  if (path === GUEST_VISIT_PATH) return <GuestVisitPage />;
  if (auth.state === 'checking') return <Loading what="Haven" />;
  if (auth.state === 'signed-in') return <SignedIn session={auth.session} path={path} signOut={signOut} />;
  return (
    <main id="main" class="narrow">
      <p class="brand-large" aria-hidden="true">
        Haven
      </p>
      {path === '/enrol' ? <Enrol onSignedIn={check} /> : <SignIn notice={auth.notice} onSignedIn={check} />}
    </main>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
