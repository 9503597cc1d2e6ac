//! The shared test-app builder: a real router on a random local port over a
//! real store (a SQLite file in a temporary directory, or a private schema in
//! the PostgreSQL named by `TESSERA_TEST_DATABASE_URL`), plus helpers to run
//! the real `tessera` binary.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tessera::crypto::Keyring;
use tessera::service::{bootstrap, Limits, Service};
use tessera::wire::error::ErrorReply;
use tessera::wire::management::{NewApiKeyView, TeamsView, UserAdminInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const PG_ENV: &str = "TESSERA_TEST_DATABASE_URL";

/// How long a test waits for something to happen before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A bound on waiting for one thing to happen: the suite's one way of
/// waiting for a signal instead of a time. `tick` fails the test, naming
/// what did not happen, once the bound has passed; slowness fails a test
/// rather than passing it.
pub struct Deadline {
    what: String,
    at: Instant,
}

impl Deadline {
    /// Waiting for `what`, for at most [`WAIT`].
    pub fn new(what: impl Into<String>) -> Self {
        Self::within(what, WAIT)
    }

    pub fn within(what: impl Into<String>, bound: Duration) -> Self {
        Self {
            what: what.into(),
            at: Instant::now() + bound,
        }
    }

    /// Fails the test when the bound has passed.
    #[track_caller]
    pub fn check(&self) {
        assert!(Instant::now() < self.at, "timed out waiting: {}", self.what);
    }

    /// [`Self::check`], showing `detail` (what was seen last) on failure.
    #[track_caller]
    pub fn check_showing(&self, detail: impl std::fmt::Display) {
        assert!(
            Instant::now() < self.at,
            "timed out waiting: {}\n{detail}",
            self.what
        );
    }

    /// [`Self::check_showing`], then a short pause that leaves the
    /// runtime free.
    #[track_caller]
    pub fn tick_showing(&self, detail: impl std::fmt::Display) -> tokio::time::Sleep {
        self.check_showing(detail);
        tokio::time::sleep(POLL_EVERY)
    }

    /// [`Self::check`], then a short pause before the next look.
    #[track_caller]
    pub fn tick_blocking(&self) {
        self.check();
        std::thread::sleep(POLL_EVERY);
    }

    /// [`Self::check`], then a short pause that leaves the runtime free.
    #[track_caller]
    pub fn tick(&self) -> tokio::time::Sleep {
        self.check();
        tokio::time::sleep(POLL_EVERY)
    }
}

const POLL_EVERY: Duration = Duration::from_millis(20);

/// Waits (in async code, without blocking the runtime) until `cond` holds,
/// failing the test after [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Deadline::new(what);
    while !cond() {
        deadline.tick().await;
    }
}

/// [`wait_until`] for blocking code.
#[track_caller]
pub fn wait_until_blocking(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Deadline::new(what);
    while !cond() {
        deadline.tick_blocking();
    }
}

/// Says, past the test harness's output capture, that a test was skipped.
/// Under CI nothing may be skipped: `.ci/run` sets the database URL.
pub fn announce_skip(test: &str, why: &str) {
    assert!(
        std::env::var("CI").is_err(),
        "{test} cannot be skipped under CI: {why}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test} [postgres]: {why}");
}

/// The suite's one skip rule for PostgreSQL: a private schema, or `None`
/// after announcing that `test` was skipped (which fails under CI).
pub async fn pg_schema_or_skip(test: &str) -> Option<PgSchema> {
    let schema = PgSchema::create().await;
    if schema.is_none() {
        announce_skip(test, &format!("{PG_ENV} is not set"));
    }
    schema
}

/// A private PostgreSQL schema, dropped when the test ends.
pub struct PgSchema {
    base_url: String,
    pub name: String,
}

impl PgSchema {
    pub async fn create() -> Option<Self> {
        let base_url = std::env::var(PG_ENV).ok().filter(|s| !s.is_empty())?;
        let name = format!(
            "t_{}",
            tessera::domain::ids::random_base62(12).to_lowercase()
        );
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base_url)
            .await
            .expect("connect to TESSERA_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        Some(Self { base_url, name })
    }

    /// A URL whose connections use only this schema.
    pub fn url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.base_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a fresh one on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Where a test's data lives.
pub struct Storage {
    pub dir: TempDir,
    pub pg: Option<PgSchema>,
}

impl Storage {
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgSchema::create().await?),
        };
        Some(Self { dir, pg })
    }

    pub fn database_url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", self.dir.path().join("tessera.db").display()),
        }
    }

    /// Arguments that point a real binary at this storage (SQLite: the data
    /// directory's default database).
    pub fn db_args(&self) -> Vec<String> {
        match &self.pg {
            Some(pg) => vec!["--database-url".into(), pg.url()],
            None => vec![],
        }
    }

    /// Starts `tessera serve` with `data_dir` on this storage; returns the
    /// server and the admin key it wrote on first start.
    pub fn serve(&self, data_dir: &Path) -> (ServerProcess, String) {
        let args = self.db_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(data_dir, &args, &[]).expect("server starts");
        let key = std::fs::read_to_string(data_dir.join("admin.key"))
            .expect("admin.key written on first start")
            .trim()
            .to_owned();
        (server, key)
    }
}

pub struct TestApp {
    pub url: String,
    /// The metrics listener (`GET /metrics`), apart from the API's.
    pub metrics_url: String,
    pub admin_key: String,
    pub http: reqwest::Client,
    pub state: Arc<tessera::api::AppState>,
    /// The store under the service (tests read it directly).
    pub store: tessera::store::DynStore,
    pub keyring: Arc<Keyring>,
    pub limits: Limits,
    pub storage: Storage,
    server: tokio::task::JoinHandle<()>,
}

pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Resp {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text);
        assert_eq!(self.content_type, "application/json");
        self.body
    }

    /// Asserts a 200 with a JSON body and reads it as the wire type `T`
    /// (the type the server writes: a renamed field fails to compile or to
    /// parse here).
    #[track_caller]
    pub fn json<T: serde::de::DeserializeOwned>(self) -> T {
        let text = self.text.clone();
        let value = self.ok();
        match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => panic!("body is not a {}: {e}: {text}", std::any::type_name::<T>()),
        }
    }

    /// Asserts an error status with the JSON error body and returns its message.
    #[track_caller]
    pub fn err(self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.content_type, "application/json", "body: {}", self.text);
        let reply: ErrorReply = serde_json::from_value(self.body)
            .unwrap_or_else(|e| panic!("not an error body ({e}): {}", self.text));
        assert_eq!(reply.code, code, "body: {}", self.text);
        reply.message
    }
}

impl TestApp {
    /// The service behind the router.
    pub fn service(&self) -> &Service {
        &self.state.service
    }

    /// Another service over the same store and master key, with caches of
    /// its own: a second node, as far as caching goes (for races).
    pub async fn independent_service(&self) -> Service {
        tessera::app::service_from_parts(
            self.store.clone(),
            self.keyring.clone(),
            self.limits.clone(),
        )
        .await
        .expect("service")
    }

    /// A test app to configure; `start` runs it.
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder {
            backend,
            limits: Limits::default(),
        }
    }

    /// Starts an app on `backend`; `None` (announced) when PostgreSQL is not configured.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::builder(backend).start().await
    }

    pub async fn start_with(backend: Backend, limits: Limits) -> Option<Self> {
        Self::builder(backend).limits(limits).start().await
    }
}

/// Options of a [`TestApp`]: the backend, and the service's limits.
pub struct TestAppBuilder {
    backend: Backend,
    limits: Limits,
}

impl TestAppBuilder {
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The app: a real router over one service, on a random local port,
    /// through the same network layer as `tessera serve`.
    pub async fn start(self) -> Option<TestApp> {
        let Self { backend, limits } = self;
        let storage = Storage::new(backend).await?;
        let store = tessera::store::open(&storage.database_url())
            .await
            .expect("open store");
        let keyring = Arc::new(Keyring::new(&rand_key()));
        bootstrap::check_master_key(store.as_ref(), &keyring)
            .await
            .expect("key check");
        let service =
            tessera::app::service_from_parts(store.clone(), keyring.clone(), limits.clone())
                .await
                .expect("service");
        // After the service: it installs the audit key every write needs.
        let token = bootstrap::create_organization(store.as_ref(), "acme")
            .await
            .expect("create org");
        // One service: the router's, shared with the test's own calls.
        let (router, state) = tessera::app::build(service);
        let shutdown = state.shutdown.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Metrics on a listener of their own, as `tessera serve` has them.
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_url = format!("http://{}", metrics_listener.local_addr().unwrap());
        let metrics_router = tessera::api::metrics_router(state.clone());
        let metrics_shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let _ = tessera::net::serve(
                metrics_listener,
                metrics_router,
                tessera::net::NetConfig::default(),
                metrics_shutdown,
            )
            .await;
        });
        // The same network layer as `tessera serve`.
        let server = tokio::spawn(async move {
            tessera::net::serve(
                listener,
                router,
                tessera::net::NetConfig::default(),
                shutdown,
            )
            .await
            .unwrap();
        });
        Some(TestApp {
            url: format!("http://{addr}"),
            metrics_url,
            admin_key: token.token().to_owned(),
            http: reqwest::Client::new(),
            state,
            store,
            keyring,
            limits,
            storage,
            server,
        })
    }
}

impl TestApp {
    /// A new organization in the same store; returns its admin key.
    pub async fn new_org(&self, name: &str) -> String {
        bootstrap::create_organization(self.store.as_ref(), name)
            .await
            .unwrap()
            .token()
            .to_owned()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        to_resp(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(&self.admin_key), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn as_key(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.request(method, path, Some(key), body).await
    }

    /// The default team's id, as the admin sees it.
    /// Creates a user in the organization (as its admin) from a
    /// `POST /v1/users` body; the user's id.
    pub async fn new_user(&self, body: Value) -> String {
        self.post("/v1/users", body)
            .await
            .json::<UserAdminInfo>()
            .user_id
    }

    /// Mints a personal key for a user (as the organization's admin); the key.
    pub async fn personal_key(&self, user_id: &str) -> String {
        self.post(
            &format!("/v1/users/{user_id}/api_keys"),
            serde_json::json!({}),
        )
        .await
        .json::<NewApiKeyView>()
        .api_key
    }

    /// Waits until `n` long polls wait on `team`'s changes (a write made
    /// after this wakes them), failing after [`WAIT`].
    pub async fn wait_for_waiters(&self, team: &str, n: usize) {
        let deadline = Deadline::new(format!("{n} waiter(s) on team {team}"));
        while self.state.service.waiters(team) < n {
            deadline.tick().await;
        }
    }

    pub async fn default_team_id(&self) -> String {
        let teams: TeamsView = self.get("/v1/teams").await.json();
        teams
            .teams
            .into_iter()
            .find(|t| t.default)
            .expect("a default team")
            .id
    }

    /// A new WORKSPACE_READ_SECRETS key of `team` (as the admin).
    pub async fn reader_key(&self, team: &str) -> String {
        let name = canary("reader");
        let body = serde_json::json!({"type": "WORKSPACE_READ_SECRETS", "name": name});
        self.post(&format!("/v1/teams/{team}/api_keys"), body)
            .await
            .json::<NewApiKeyView>()
            .api_key
    }

    /// Opens a secret's latest value through the service (never via HTTP).
    pub async fn reveal(&self, key: &str, team_id: &str, name: &str) -> String {
        let p = self
            .service()
            .identity()
            .authenticate(Some(&format!("Bearer {key}")))
            .await
            .unwrap();
        self.service()
            .reveal_secret(&p, tessera::service::TeamRef::Id(team_id), name)
            .await
            .unwrap()
            .expose()
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        content_type,
        body,
        text,
    }
}

/// An unlabelled sample's value in Prometheus text; 0 when absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn rand_key() -> [u8; 32] {
    rand::random()
}

/// A random value no test could produce by accident.
pub fn canary(tag: &str) -> String {
    format!("canary-{tag}-{}", tessera::domain::ids::random_base62(24))
}

/// Checks an RFC 3339 UTC timestamp with an explicit `Z`.
#[track_caller]
pub fn assert_utc_z(v: &Value) {
    let s = v.as_str().expect("timestamp is a string");
    assert!(s.ends_with('Z'), "{s}");
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A `tessera serve` process with its log captured to a file.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `tessera serve` on a random port with the given data dir and
    /// extra arguments, and waits until `/readyz` answers 200.
    pub fn start(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Result<Self, String> {
        Self::start_on("127.0.0.1:0", data_dir, extra, envs)
    }

    /// Like [`ServerProcess::start`] on a chosen address (to restart a
    /// server where its clients expect it).
    pub fn start_on(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        let (cmd, log) = Self::command_on(listen, data_dir, extra, envs, None);
        let server = Self::launch(cmd, log)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// Like [`ServerProcess::start`], with the process's umask set first
    /// (`sh -c 'umask …; exec tessera serve …'`) when `umask` is given.
    pub fn start_with_umask(
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        umask: Option<&str>,
    ) -> Result<Self, String> {
        let (cmd, log) = Self::command_on("127.0.0.1:0", data_dir, extra, envs, umask);
        let server = Self::launch(cmd, log)?;
        server.wait_ready()?;
        Ok(server)
    }

    /// The `tessera serve` command `start` runs, and its log file.
    pub fn command(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (Command, PathBuf) {
        Self::command_on("127.0.0.1:0", data_dir, extra, envs, None)
    }

    pub fn command_on(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        umask: Option<&str>,
    ) -> (Command, PathBuf) {
        let log =
            data_dir.with_extension(format!("log-{}", tessera::domain::ids::random_base62(6)));
        let mut cmd = match umask {
            None => Command::new(BIN),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
                    .arg(BIN);
                sh
            }
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir);
        // Metrics on a port of their own, chosen by the system (the default
        // port would collide between servers running at once).
        if !extra.contains(&"--metrics-listen") {
            cmd.arg("--metrics-listen").arg("127.0.0.1:0");
        }
        cmd.args(extra)
            .env_remove("TESSERA_MASTER_KEY")
            .env_remove("TESSERA_DATABASE_URL")
            .env("TESSERA_LOG", "debug,sqlx=warn,hyper=info")
            .stdout(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        (cmd, log)
    }

    /// Spawns `cmd` with its stderr to `log` and waits for its "listening"
    /// line (not for readiness: an HTTPS server needs another probe).
    pub fn launch(mut cmd: Command, log: PathBuf) -> Result<Self, String> {
        let log_file = std::fs::File::create(&log).unwrap();
        cmd.stderr(log_file);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("listening addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                let url = format!("http://{addr}");
                return Ok(Self { child, url, log });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {text}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("did not start in time: {text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where this server serves `/metrics` (its own listener), from the
    /// line it logged at start.
    pub fn metrics_url(&self) -> String {
        let text = self.log_text();
        let addr = text
            .lines()
            .find_map(|l| l.split("serving metrics at /metrics addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no metrics listener in the log: {text}"));
        format!("http://{addr}")
    }

    /// What `/metrics` shows now.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_url()))
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("read /metrics")
    }

    /// The value of an unlabelled metric; 0 until the server has recorded it.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics_text().await, name)
    }

    /// Waits until `n` long polls wait on this server (its
    /// `tessera_long_polls` gauge), failing after [`WAIT`].
    pub async fn wait_for_long_polls(&self, n: usize) {
        let deadline = Deadline::new(format!("{n} long poll(s) waiting"));
        while self.metric("tessera_long_polls").await < n as f64 {
            deadline.tick().await;
        }
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("a socket address")
    }

    /// Sends a signal (`HUP`, `TERM`...) with the `kill` utility.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(code) = blocking_status(&format!("{}/readyz", self.url)) {
                if code == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("not ready in time".into())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking GET returning the status code (used while waiting for
/// a process to come up, outside any runtime).
pub fn blocking_status(url: &str) -> std::io::Result<u16> {
    use std::io::Read;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Runs a `tessera` subcommand to completion.
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env("TESSERA_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run tessera")
}

/// A small tmpfs mounted for one test (the tests run as root on CI), for a
/// real full disk or a read-only file system. Unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) with mode
    /// 0700; `None` (announced as a skip, a failure under CI) when this
    /// process may not mount.
    pub fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self { path, _dir: dir }),
            Ok(o) => {
                skip_without_mount(test, &String::from_utf8_lossy(&o.stderr));
                None
            }
            Err(e) => {
                skip_without_mount(test, &e.to_string());
                None
            }
        }
    }

    /// Remounts read-only (`true`) or read-write.
    pub fn set_read_only(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let ok = Command::new("mount")
            .args(["-o", mode])
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -o {mode} {}", self.path.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn skip_without_mount(test: &str, why: &str) {
    assert!(
        std::env::var("CI").is_err(),
        "{test} cannot be skipped under CI: mount failed: {why}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: cannot mount a tmpfs here ({}); run the tests as root",
        why.trim()
    );
}
