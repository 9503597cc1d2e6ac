//! Nodes: `tessera serve` processes sharing one PostgreSQL schema and one
//! master key, and the helpers the multinode tests call them with.

use crate::common::pg_schema_or_skip;
use crate::common::{to_resp, PgSchema, Resp, ServerProcess};
use reqwest::Method;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tessera::crypto::Keyring;
use tessera::service::{Limits, Service};

/// The longest a request may take to fail while the database is gone. The
/// store bounds every call by 5 s; the rest is slack for a busy test machine.
pub(crate) const FAIL_FAST: Duration = Duration::from_millis(6500);

/// Prints a measurement past the harness's output capture (`--nocapture`
/// is not needed to see the numbers in CI logs).
pub(crate) fn report(line: String) {
    let _ = writeln!(std::io::stderr(), "MEASURED {line}");
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(crate) async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = http.request(method, url);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    to_resp(req.send().await.expect("request")).await
}

/// Starts `tessera serve` off the async worker threads (the helper sleeps
/// while it waits for readiness).
pub(crate) async fn start_node(
    data_dir: PathBuf,
    database_url: String,
    key_file: PathBuf,
) -> ServerProcess {
    tokio::task::spawn_blocking(move || {
        let key_file = key_file.display().to_string();
        ServerProcess::start(
            &data_dir,
            &[
                "--database-url",
                &database_url,
                "--master-key-file",
                &key_file,
            ],
            &[],
        )
        .expect("node starts")
    })
    .await
    .unwrap()
}

/// Nodes sharing one schema and one master key file.
/// (Fields drop in order: the processes stop before their schema is dropped.)
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<ServerProcess>,
    pub(crate) http: reqwest::Client,
    pub(crate) admin_key: String,
    pub(crate) master_key: [u8; 32],
    pub(crate) schema: PgSchema,
    pub(crate) _dir: TempDir,
}

impl Cluster {
    /// Starts `urls.len()` nodes, node `i` reaching the database through
    /// `urls[i]` (the schema's own URL, or a proxy in front of it). The
    /// first node initializes the store; the others join it.
    pub(crate) async fn start(schema: PgSchema, urls: Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master_key: [u8; 32] = rand::random();
        let key_file = dir.path().join("master.key");
        write_key_file(&key_file, &master_key);
        let mut nodes = Vec::new();
        for (i, url) in urls.into_iter().enumerate() {
            let data = dir.path().join(format!("node{i}"));
            nodes.push(start_node(data, url, key_file.clone()).await);
        }
        let admin_key = std::fs::read_to_string(dir.path().join("node0").join("admin.key"))
            .expect("the first node wrote the admin key")
            .trim()
            .to_owned();
        Self {
            nodes,
            http: http(),
            admin_key,
            master_key,
            schema,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, node: usize, path: &str) -> String {
        format!("{}{path}", self.nodes[node].url)
    }

    pub(crate) async fn req(
        &self,
        node: usize,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Resp {
        call(&self.http, method, &self.url(node, path), Some(key), body).await
    }

    pub(crate) async fn get(&self, node: usize, path: &str) -> Resp {
        self.req(node, Method::GET, path, &self.admin_key, None)
            .await
    }

    pub(crate) async fn post(&self, node: usize, path: &str, body: Value) -> Resp {
        self.req(node, Method::POST, path, &self.admin_key, Some(body))
            .await
    }

    /// A service over the same database and master key, in this process:
    /// how the tests read values back (the HTTP API never returns them).
    pub(crate) async fn library(&self) -> Service {
        let store = tessera::store::open(&self.schema.url())
            .await
            .expect("open the store directly");
        tessera::app::service_from_parts(
            store,
            Arc::new(Keyring::new(&self.master_key)),
            Limits::default(),
        )
        .await
        .expect("a service over the cluster's store")
    }

    pub(crate) fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i} ---\n{}", n.log_text()))
            .collect()
    }
}

pub(crate) fn write_key_file(path: &Path, key: &[u8; 32]) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o400);
    }
    opts.open(path).unwrap().write_all(key).unwrap();
}

pub(crate) fn parse_time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().expect("timestamp is a string");
    assert!(s.ends_with('Z'), "{s}");
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339")
}

pub(crate) async fn two_nodes(test: &str) -> Option<Cluster> {
    let schema = pg_schema_or_skip(test).await?;
    let url = schema.url();
    Some(Cluster::start(schema, vec![url.clone(), url]).await)
}
