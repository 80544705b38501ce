//! The test harness: real Haven servers for tests.
//!
//! [`TestServer::start`] builds the same [`Application`] as `haven serve`, on 127.0.0.1
//! port 0, over either a temporary SQLite file or a fresh PostgreSQL schema, with a
//! [`FakeClock`] the test can move forward. PostgreSQL is found at `HAVEN_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); when it is unreachable the test
//! fails, with a message that says how to start it. Nothing is skipped. The server's
//! warnings and errors go to standard error, so a failing test shows them.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used)] // a harness that cannot start should stop the test loudly

pub mod coturn;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_app::Clock;
use haven_domain::Role;
use haven_server::config::{self, Config, Flags};
use haven_server::{Application, TableAuditSinkExt};
use rand::RngCore;
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// For each scenario `async fn name(backend: Backend)` in scope, generates two tests,
/// `sqlite::name` and `postgres::name`, so every scenario runs on both engines.
#[macro_export]
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("HAVEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a fresh, uniquely named schema and returns its name and a URL whose connections
/// use it, so each test has a database of its own.
pub async fn fresh_postgres_schema(prefix: &str) -> (String, String) {
    use sqlx::Connection;
    let url = postgres_url();
    let mut connection = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL not reachable at {url}: {error}; `cargo xtask test` starts it")
        });
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let schema = format!(
        "{prefix}_{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut connection)
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    (schema, schema_url)
}

/// A clock a test controls: it stands still until the test moves it, or (for tests where a
/// real browser or another process keeps time too) it runs with real time from its start.
/// Either way [`FakeClock::advance`] moves it forward.
#[derive(Debug)]
pub struct FakeClock {
    /// The time it showed at `set_at`.
    shown: Mutex<(OffsetDateTime, std::time::Instant)>,
    running: bool,
}

impl FakeClock {
    /// A clock that stands still.
    pub fn new() -> Self {
        Self {
            shown: Mutex::new((OffsetDateTime::now_utc(), std::time::Instant::now())),
            running: false,
        }
    }

    /// A clock that keeps real time (plus whatever the test advances it by).
    pub fn running() -> Self {
        Self {
            running: true,
            ..Self::new()
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        shown.0 += by;
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        let (at, set_at) = *self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if self.running {
            at + set_at.elapsed()
        } else {
            at
        }
    }
}

/// The password every [`TestServer::user`] enrols with.
pub const TEST_PASSWORD: &str = "wandering violet lighthouse";

/// A user signed in over HTTP with a bearer session.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: haven_domain::UserId,
    pub login: String,
    /// The session token, sent as a bearer token.
    pub token: String,
    /// The base32 TOTP secret, for staff (who must have a second factor).
    pub totp_secret: Option<String>,
}

/// A running Haven on a random port.
#[derive(Debug)]
pub struct TestServer {
    pub url: String,
    pub backend: Backend,
    pub client: reqwest::Client,
    pub clock: Arc<FakeClock>,
    /// An administrator token.
    pub admin_token: String,
    pub data_dir: tempfile::TempDir,
    pub postgres_schema: Option<String>,
    app: haven_app::App,
    /// The settings it was started with, to start it again on the same data.
    env: BTreeMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A started application: its URL, its `App`, and how to stop it.
struct Launched {
    url: String,
    app: haven_app::App,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Sends the server's warnings and errors to standard error, which the test runner shows
/// when a test fails: a `500` in a test then comes with the error behind it. `HAVEN_LOG`
/// chooses more, as it does for `haven serve`.
fn capture_server_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("HAVEN_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // Another subscriber already installed (a test of logging itself) keeps its place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    });
}

async fn launch(env: &BTreeMap<String, String>, clock: Arc<FakeClock>) -> Launched {
    capture_server_logs();
    let config: Config = config::load(&Flags::default(), env).expect("test configuration");
    let application = Application::build_with_clock(config, clock)
        .await
        .expect("build the application");
    let url = application.url();
    let app = application.app().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Launched {
        url,
        app,
        stop,
        task,
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts with extra settings, as `HAVEN_*` environment variables would give them.
    pub async fn start_with(backend: Backend, settings: &[(&str, &str)]) -> Self {
        Self::start_with_clock(backend, settings, FakeClock::new()).await
    }

    /// Starts with a clock that keeps real time: for tests where a browser counts time too
    /// (time-outs, authenticator codes).
    pub async fn start_in_real_time(backend: Backend) -> Self {
        Self::start_in_real_time_with(backend, &[]).await
    }

    /// Both: extra settings, and a clock that keeps real time (a browser's video visit
    /// through a TURN relay, whose credentials the relay checks against the real clock).
    pub async fn start_in_real_time_with(backend: Backend, settings: &[(&str, &str)]) -> Self {
        Self::start_with_clock(backend, settings, FakeClock::running()).await
    }

    async fn start_with_clock(
        backend: Backend,
        settings: &[(&str, &str)],
        clock: FakeClock,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut env: BTreeMap<String, String> = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert(
            "HAVEN_DATA_DIR".into(),
            data_dir.path().join("data").display().to_string(),
        );
        env.insert("HAVEN_LISTEN".into(), "127.0.0.1:0".into());
        let mut postgres_schema = None;
        if backend == Backend::Postgres {
            let (schema, url) = fresh_postgres_schema("api").await;
            env.insert("HAVEN_DATABASE_URL".into(), url);
            postgres_schema = Some(schema);
        }
        let clock = Arc::new(clock);
        let Launched {
            url,
            app,
            stop,
            task,
        } = launch(&env, clock.clone()).await;
        let mut server = Self {
            url,
            backend,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            clock,
            admin_token: String::new(),
            data_dir,
            postgres_schema,
            app,
            env,
            stop: Some(stop),
            task: Some(task),
        };
        server.admin_token = server.token(Role::Administrator, 24).await;
        server
    }

    /// Mints a token for `role`, as `haven admin token` does.
    pub async fn token(&self, role: Role, ttl_hours: u32) -> String {
        self.token_for(role, None, ttl_hours).await
    }

    /// An invitation for `role` (a patient's names their record) into the deployment's
    /// organisation, created on first use, as `haven admin bootstrap` and an administrator
    /// would make them.
    pub async fn invite(&self, role: Role, patient: Option<haven_domain::PatientId>) -> String {
        let store = self.app.store().clone();
        let audit = store.audit_sink();
        let now_ms = self.clock.now_ms();
        let organisation =
            haven_app::identity::bootstrap_organisation(&*store, &*audit, "Test Clinic", now_ms)
                .await
                .expect("an organisation");
        haven_app::identity::issue_invitation(
            &*store,
            &*audit,
            organisation.id,
            role,
            patient,
            24,
            None,
            now_ms,
        )
        .await
        .expect("an invitation")
        .token
        .expose_secret()
        .clone()
    }

    /// A signed-in user of `role` with a bearer session, enrolled from a fresh invitation
    /// as a person would be (a patient's invitation names `patient`); staff also set up
    /// TOTP, which their role requires before the session is complete.
    pub async fn user(&self, role: Role, patient: Option<haven_domain::PatientId>) -> TestUser {
        let invitation = self.invite(role, patient).await;
        let mut suffix = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut suffix);
        let login = format!(
            "{}-{}@clinic.example",
            role.as_str(),
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let enrolled = self
            .post_as(
                None,
                "/api/v1/auth/enrol",
                serde_json::json!({
                    "invitation": invitation,
                    "login": login,
                    "password": TEST_PASSWORD,
                    "transport": "bearer",
                }),
            )
            .await;
        assert_eq!(enrolled.status(), reqwest::StatusCode::CREATED);
        let enrolled: serde_json::Value = enrolled.json().await.expect("a JSON answer");
        let token = enrolled["token"]
            .as_str()
            .expect("a session token")
            .to_owned();
        let mut totp_secret = None;
        if enrolled["state"] != "complete" {
            let setup: serde_json::Value = self
                .post_as(
                    Some(&token),
                    "/api/v1/auth/totp/setup",
                    serde_json::json!({}),
                )
                .await
                .json()
                .await
                .expect("a TOTP set-up");
            let secret = setup["secret"].as_str().expect("a TOTP secret");
            let now_secs = u64::try_from(self.clock.now_ms() / 1000).expect("a time after 1970");
            let code =
                haven_app::identity::totp::code_at_base32(secret, now_secs).expect("a TOTP code");
            let confirmed = self
                .post_as(
                    Some(&token),
                    "/api/v1/auth/totp/confirm",
                    serde_json::json!({ "code": code }),
                )
                .await;
            assert_eq!(confirmed.status(), reqwest::StatusCode::OK);
            totp_secret = Some(secret.to_owned());
        }
        let me: serde_json::Value = self
            .get_as(&token, "/api/v1/me")
            .await
            .json()
            .await
            .expect("who am I");
        TestUser {
            id: me["actor"]
                .as_str()
                .expect("an actor id")
                .parse()
                .expect("a user id"),
            login,
            token,
            totp_secret,
        }
    }

    /// A new session for `user`, signed in with their password and, for staff, their
    /// authenticator's current code: what a person does after an idle time-out. A code is
    /// accepted once, so call this at least 30 s after the user's last code.
    pub async fn sign_in_again(&self, user: &TestUser) -> String {
        let signed = self
            .post_as(
                None,
                "/api/v1/auth/sign-in",
                serde_json::json!({
                    "login": user.login,
                    "password": TEST_PASSWORD,
                    "transport": "bearer",
                }),
            )
            .await;
        assert_eq!(signed.status(), reqwest::StatusCode::OK);
        let signed: serde_json::Value = signed.json().await.expect("a JSON answer");
        let token = signed["token"]
            .as_str()
            .expect("a session token")
            .to_owned();
        if signed["state"] != "complete" {
            let second = self
                .post_as(
                    Some(&token),
                    "/api/v1/auth/second-factor",
                    serde_json::json!({ "code": self.totp_code(user) }),
                )
                .await;
            assert_eq!(second.status(), reqwest::StatusCode::OK);
        }
        token
    }

    /// The user's current TOTP code, as their authenticator app shows it now.
    pub fn totp_code(&self, user: &TestUser) -> String {
        let secret = user.totp_secret.as_deref().expect("a user with TOTP");
        let now_secs = u64::try_from(self.clock.now_ms() / 1000).expect("a time after 1970");
        haven_app::identity::totp::code_at_base32(secret, now_secs).expect("a TOTP code")
    }

    /// Adds `user` to `patient`'s care team, as the front desk would.
    pub async fn add_to_care_team(
        &self,
        patient: haven_domain::PatientId,
        user: haven_domain::UserId,
    ) {
        let added = self
            .client
            .put(self.endpoint(&format!("/api/v1/patients/{patient}/care-team/{user}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("a PUT request");
        assert_eq!(added.status(), reqwest::StatusCode::CREATED);
    }

    /// `GET path` with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.endpoint(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("a GET request")
    }

    /// `GET path` with a bearer token, its answer read as JSON (whatever its status).
    pub async fn get_json(&self, token: &str, path: &str) -> serde_json::Value {
        self.get_as(token, path)
            .await
            .json()
            .await
            .expect("a JSON answer")
    }

    /// `PUT path` with no body and a bearer token.
    pub async fn put_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .put(self.endpoint(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("a PUT request")
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .delete(self.endpoint(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("a DELETE request")
    }

    /// Everything the database holds as raw bytes: the SQLite files (database, WAL,
    /// shared memory), or a `pg_dump --data-only` of the test's schema. For checking that
    /// no plaintext reaches storage.
    pub async fn raw_database_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let dir = self.data_dir.path().join("data");
                let mut bytes = Vec::new();
                // The records' file and the audit log's, each with its WAL and shared memory.
                for file in [
                    "haven.db",
                    "haven.db-wal",
                    "haven.db-shm",
                    "haven-audit.db",
                    "haven-audit.db-wal",
                    "haven-audit.db-shm",
                ] {
                    if let Ok(content) = std::fs::read(dir.join(file)) {
                        bytes.extend(content);
                    }
                }
                assert!(bytes.len() > 4096, "the database files were read");
                bytes
            }
            Backend::Postgres => {
                let schema = self
                    .postgres_schema
                    .as_deref()
                    .expect("a PostgreSQL schema");
                let output = std::process::Command::new("pg_dump")
                    .args(["--data-only", "--schema", schema, &postgres_url()])
                    .output()
                    .expect(
                        "pg_dump must be installed (cargo xtask test installs postgresql-client)",
                    );
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
        }
    }

    /// Every entry of the audit log, oldest first, read straight from the store.
    pub async fn audit_entries(&self) -> Vec<haven_audit::StoredAuditEvent> {
        let store = self.app.store();
        let mut entries: Vec<haven_audit::StoredAuditEvent> = Vec::new();
        loop {
            let after = entries.last().map_or(0, |e| e.seq);
            let page = store
                .audit_events(after, 1000)
                .await
                .expect("audit entries");
            if page.is_empty() {
                return entries;
            }
            entries.extend(page);
        }
    }

    /// `POST path` with a JSON body, and a bearer token when given.
    pub async fn post_as(
        &self,
        token: Option<&str>,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.endpoint(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("a POST request")
    }

    /// Registers a patient with the administrator's token and returns the new id.
    pub async fn create_patient(&self, family: &str) -> haven_domain::PatientId {
        let created = self
            .client
            .post(self.endpoint("/api/v1/patients"))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({ "name": { "family": family }, "birth_date": "1980-02-03" }))
            .send()
            .await
            .expect("create a patient");
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        created
            .json::<serde_json::Value>()
            .await
            .expect("a JSON answer")["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a patient id")
    }

    /// Mints a patient's token, standing for the record `patient`.
    pub async fn patient_token(&self, patient: haven_domain::PatientId) -> String {
        self.token_for(Role::Patient, Some(patient), 24).await
    }

    async fn token_for(
        &self,
        role: Role,
        patient: Option<haven_domain::PatientId>,
        ttl_hours: u32,
    ) -> String {
        let store = self.app.store().clone();
        let audit = store.audit_sink();
        let issued = haven_app::tokens::issue_token(
            &*store,
            &*audit,
            role,
            patient,
            "test",
            ttl_hours,
            self.clock.now_ms(),
        )
        .await
        .expect("issue a token");
        issued.secret.expose_secret().clone()
    }

    pub fn app(&self) -> &haven_app::App {
        &self.app
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// An UPDATE, for [`Self::execute_raw`], that rewrites the stored bytes of audit entry
    /// `seq`: the first field whose text is `from` becomes `to` (its length prefix too), so
    /// the entry still decodes but says something else. The append-only trigger must be
    /// dropped first.
    pub fn rewrite_audit_entry_sql(&self, seq: i64, from: &str, to: &str) -> String {
        let encoded = |text: &str| format!("{:08x}{}", text.len(), hex_of(text.as_bytes()));
        let (from, to) = (encoded(from), encoded(to));
        match self.backend {
            // `||` yields TEXT of its operands' bytes; the CAST makes it a BLOB again.
            Backend::Sqlite => format!(
                "UPDATE audit_events SET entry = CAST(
                     substr(entry, 1, instr(entry, x'{from}') - 1) || x'{to}'
                     || substr(entry, instr(entry, x'{from}') + {}) AS BLOB)
                 WHERE seq = {seq}",
                from.len() / 2
            ),
            Backend::Postgres => format!(
                "UPDATE audit_events SET entry = overlay(entry placing '\\x{to}'::bytea
                     from position('\\x{from}'::bytea in entry) for {})
                 WHERE seq = {seq}",
                from.len() / 2
            ),
        }
    }

    /// Runs SQL directly on this server's database, bypassing Haven, as someone with file
    /// or DBA access could: on its SQLite file, or in its PostgreSQL schema (unqualified
    /// names resolve there). For tests that break or tamper with storage.
    pub async fn execute_raw(&self, statements: &[&str]) {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let path = self.data_dir.path().join("data").join("haven.db");
                let mut connection =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .expect("open the SQLite file");
                // With the audit file attached, unqualified names reach both files' tables.
                sqlx::query("ATTACH DATABASE ? AS audit")
                    .bind(
                        haven_store::SqliteStore::audit_path(&path)
                            .to_string_lossy()
                            .into_owned(),
                    )
                    .execute(&mut connection)
                    .await
                    .expect("attach the audit file");
                for statement in statements {
                    sqlx::query(statement)
                        .execute(&mut connection)
                        .await
                        .unwrap_or_else(|error| panic!("{statement}: {error}"));
                }
            }
            Backend::Postgres => {
                let schema = self.postgres_schema.as_deref().expect("a schema");
                let mut connection = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("connect to PostgreSQL");
                let search_path = format!("SET search_path TO \"{schema}\"");
                for statement in
                    std::iter::once(search_path.as_str()).chain(statements.iter().copied())
                {
                    sqlx::query(statement)
                        .execute(&mut connection)
                        .await
                        .unwrap_or_else(|error| panic!("{statement}: {error}"));
                }
            }
        }
    }

    /// Writes a device for `user` straight into the database, as someone with access to it
    /// might to read along: no audit entry publishes it. Returns its id.
    pub async fn insert_unpublished_device(
        &self,
        user: haven_domain::UserId,
        label: &str,
    ) -> String {
        // Keys of the intruder's own, properly self-signed: only the log can tell them apart.
        let keys = haven_crypto::e2e::DeviceKeys::generate();
        let spy = keys.public();
        let spy_id = uuid::Uuid::now_v7();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let (id, owner, hpke, signing, signature) = match self.backend {
            Backend::Sqlite => (
                format!("X'{}'", hex(spy_id.as_bytes())),
                format!("X'{}'", hex(user.as_uuid().as_bytes())),
                format!("X'{}'", hex(&spy.hpke)),
                format!("X'{}'", hex(&spy.signing)),
                format!("X'{}'", hex(&keys.self_signature())),
            ),
            Backend::Postgres => (
                format!("'{spy_id}'"),
                format!("'{user}'"),
                format!("'\\x{}'", hex(&spy.hpke)),
                format!("'\\x{}'", hex(&spy.signing)),
                format!("'\\x{}'", hex(&keys.self_signature())),
            ),
        };
        self.execute_raw(&[&format!(
            "INSERT INTO devices (id, user_id, label, hpke_public_key, signing_public_key,
                     self_signature, fingerprint, added_at_ms)
                 VALUES ({id}, {owner}, '{label}', {hpke}, {signing}, {signature}, '{}', 1)",
            spy.fingerprint()
        )])
        .await;
        spy_id.to_string()
    }

    /// Stops the server gracefully and starts it again on the same data directory and
    /// database, with the same settings and clock, as an operator's restart would. The
    /// server listens on a new port afterwards; tokens stay valid.
    pub async fn restart(&mut self) {
        self.stop_and_wait().await;
        let launched = launch(&self.env, self.clock.clone()).await;
        self.url = launched.url;
        self.app = launched.app;
        self.stop = Some(launched.stop);
        self.task = Some(launched.task);
    }

    async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Lower-case hexadecimal digits of `bytes`.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
