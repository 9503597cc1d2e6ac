//! Helpers for the tests of `tessera agent`, `tessera run` and `tessera
//! secrets`: a real server on a fixed local address (so it can be restarted
//! where its clients expect it), management calls as the admin, and the
//! real binary as a long-running process with its log in a file.

use crate::common::{to_resp, Deadline, Resp, ServerProcess, Storage, BIN};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::Method;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A server the test can stop and start again on the same address.
pub struct Env {
    pub storage: Storage,
    pub server: Option<ServerProcess>,
    pub addr: String,
    pub url: String,
    pub admin: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
}

/// A free local port (bound, then released).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

impl Env {
    pub fn start(storage: Storage) -> Self {
        let data = storage.dir.path().join("data");
        let addr = free_addr();
        let server = Self::serve(&storage, &addr, &data);
        let admin = std::fs::read_to_string(data.join("admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            url: format!("http://{addr}"),
            storage,
            server: Some(server),
            addr,
            admin,
            data,
            http: reqwest::Client::new(),
        }
    }

    fn serve(storage: &Storage, addr: &str, data: &Path) -> ServerProcess {
        let args = storage.db_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start_on(addr, data, &args, &[]).expect("server starts")
    }

    /// Stops the server (SIGTERM) and checks it exited cleanly.
    pub fn stop_server(&mut self) {
        let server = self.server.take().expect("server running");
        assert_eq!(server.terminate(), Some(0));
    }

    /// Starts the server again on the same address and storage.
    pub fn restart_server(&mut self) {
        assert!(self.server.is_none());
        self.server = Some(Self::serve(&self.storage, &self.addr, &self.data));
    }

    pub async fn call(&self, key: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        to_resp(req.send().await.expect("request")).await
    }

    pub async fn default_team(&self) -> String {
        let v = self
            .call(&self.admin, Method::GET, "/v1/teams", None)
            .await
            .ok();
        v["teams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["default"] == true)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn create_team(&self, name: &str) -> String {
        let v = self
            .call(
                &self.admin,
                Method::POST,
                "/v1/teams",
                Some(json!({"name": name})),
            )
            .await
            .ok();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Upserts in the admin's default team.
    pub async fn put(&self, name: &str, value: &str) {
        self.call(
            &self.admin,
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": name, "value": value})),
        )
        .await
        .ok();
    }

    pub async fn put_in(&self, team: &str, name: &str, value: &str) {
        self.call(
            &self.admin,
            Method::POST,
            &format!("/v1/teams/{team}/secrets"),
            Some(json!({"name": name, "value": value})),
        )
        .await
        .ok();
    }

    pub async fn delete(&self, name: &str) {
        self.call(
            &self.admin,
            Method::DELETE,
            &format!("/v1/secrets/{name}"),
            None,
        )
        .await
        .ok();
    }

    /// A WORKSPACE_READ_SECRETS key for `team`, optionally narrowed.
    pub async fn read_key(&self, team: &str, names: Option<&[&str]>) -> String {
        let mut body = json!({"type": "WORKSPACE_READ_SECRETS", "name": "workload"});
        if let Some(n) = names {
            body["secret_names"] = json!(n);
        }
        let v = self
            .call(
                &self.admin,
                Method::POST,
                &format!("/v1/teams/{team}/api_keys"),
                Some(body),
            )
            .await
            .ok();
        v["api_key"].as_str().unwrap().to_owned()
    }

    /// A team-bound key of another type (e.g. `WORKSPACE_MANAGE_ALL`).
    pub async fn team_key(&self, team: &str, key_type: &str) -> String {
        let v = self
            .call(
                &self.admin,
                Method::POST,
                &format!("/v1/teams/{team}/api_keys"),
                Some(json!({"type": key_type, "name": "team-key"})),
            )
            .await
            .ok();
        v["api_key"].as_str().unwrap().to_owned()
    }

    pub async fn revoke(&self, key: &str) {
        let prefix = key.split('.').next().unwrap();
        self.call(
            &self.admin,
            Method::DELETE,
            &format!("/v1/api_keys/{prefix}"),
            None,
        )
        .await
        .ok();
    }

    /// The value the runtime API gives `key` for `name`.
    pub async fn runtime_value(&self, key: &str, name: &str) -> String {
        let v = self
            .call(
                key,
                Method::GET,
                &format!("/runtime/v1/secrets/{name}"),
                None,
            )
            .await
            .ok();
        v["value"].as_str().unwrap().to_owned()
    }
}

/// A `tessera` subcommand running in the background, its standard output
/// and error in one log file.
pub struct Background {
    pub child: Child,
    pub log: PathBuf,
}

impl Background {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("TESSERA_API_KEY")
            .env_remove("TESSERA_API_KEY_FILE")
            .env_remove("TESSERA_URL")
            .env("TESSERA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("spawn tessera"),
            log: log.to_owned(),
        }
    }

    /// `tessera agent --dir DIR EXTRA…` against `url` with `key`.
    pub fn agent(url: &str, key: &str, dir: &Path, extra: &[&str], log: &Path) -> Self {
        let mut args = vec!["agent", "--dir", dir.to_str().unwrap()];
        args.extend(extra);
        Self::spawn(
            &args,
            &[("TESSERA_URL", url), ("TESSERA_API_KEY", key)],
            log,
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Deadline::new("the process to exit");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            deadline.check_showing(format!("log:\n{}", self.log_text()));
            deadline.tick_blocking();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds (the suite's one wait, for blocking code).
pub use crate::common::wait_until_blocking as eventually;

/// A file's bytes, or `None` when it does not exist.
pub fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs `tessera ARGS` to completion with `stdin` as its standard input.
pub fn run_with_stdin(args: &[&str], envs: &[(&str, &str)], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TESSERA_API_KEY")
        .env_remove("TESSERA_API_KEY_FILE")
        .env_remove("TESSERA_URL")
        .env("TESSERA_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tessera");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Fails when any canary value shows up in `text`.
#[track_caller]
pub fn assert_no_values(text: &str, canaries: &[&str]) {
    for (i, c) in canaries.iter().enumerate() {
        // The text itself is not printed: it holds the value.
        assert!(
            !text.contains(c),
            "secret value #{i} leaked into the output"
        );
    }
}
