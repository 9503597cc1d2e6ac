//! Several `tessera serve` processes on one PostgreSQL database: race-free
//! upserts across processes, what one node writes the other sees at once, a
//! key revoked on one node is refused by the other within a second, and a
//! node whose database disappears answers 503 quickly and recovers by itself.
//!
//! PostgreSQL only. Without `TESSERA_TEST_DATABASE_URL` each test announces
//! that it was skipped (and fails when `CI=true`, where skipping would hide a
//! broken setup).

use crate::common::{announce_skip, canary, to_resp, PgSchema, Resp, ServerProcess, PG_ENV};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tessera::crypto::Keyring;
use tessera::service::{Limits, Service, TeamRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest a request may take to fail while the database is gone. The
/// store bounds every call by 5 s; the rest is slack for a busy test machine.
const FAIL_FAST: Duration = Duration::from_millis(6500);

/// Prints a measurement past the harness's output capture (`--nocapture`
/// is not needed to see the numbers in CI logs).
fn report(line: String) {
    let _ = writeln!(std::io::stderr(), "MEASURED {line}");
}

/// A private schema, or `None` after announcing the skip. Under `CI=true` a
/// missing database is an error, not a skip.
async fn pg_or_skip(test: &str) -> Option<PgSchema> {
    if let Some(schema) = PgSchema::create().await {
        return Some(schema);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: CI=true but {PG_ENV} is not set; the PostgreSQL tests cannot be skipped in CI"
        );
    }
    announce_skip(test, &format!("{PG_ENV} is not set"));
    None
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn call(
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
async fn start_node(data_dir: PathBuf, database_url: String, key_file: PathBuf) -> ServerProcess {
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
    http: reqwest::Client,
    pub(crate) admin_key: String,
    master_key: [u8; 32],
    schema: PgSchema,
    _dir: TempDir,
}

impl Cluster {
    /// Starts `urls.len()` nodes, node `i` reaching the database through
    /// `urls[i]` (the schema's own URL, or a proxy in front of it). The
    /// first node initializes the store; the others join it.
    async fn start(schema: PgSchema, urls: Vec<String>) -> Self {
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

    fn url(&self, node: usize, path: &str) -> String {
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
    async fn library(&self) -> Service {
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

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i} ---\n{}", n.log_text()))
            .collect()
    }
}

fn write_key_file(path: &Path, key: &[u8; 32]) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o400);
    }
    opts.open(path).unwrap().write_all(key).unwrap();
}

fn parse_time(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().expect("timestamp is a string");
    assert!(s.ends_with('Z'), "{s}");
    chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339")
}

// ---------------------------------------------------------------------------
// 1. Race-free upserts across two processes
// ---------------------------------------------------------------------------

/// `n` distinct spellings of one canonical name: `race_name_of_the_day`
/// with each separator one of `_`, `-`, `.`.
fn spellings(n: usize) -> Vec<String> {
    let words = ["race", "name", "of", "the", "day"];
    let seps = ['_', '-', '.'];
    assert!(n <= 81);
    (0..n)
        .map(|i| {
            let mut digits = i;
            let mut s = String::from(words[0]);
            for w in &words[1..] {
                s.push(seps[digits % 3]);
                digits /= 3;
                s.push_str(w);
            }
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_free_upserts_across_two_nodes() {
    let Some(schema) = pg_or_skip("multinode::race_free_upserts_across_two_nodes").await else {
        return;
    };
    let url = schema.url();
    let cluster = Arc::new(Cluster::start(schema, vec![url.clone(), url]).await);

    const N: usize = 50;
    let names = spellings(N);
    let values: Vec<String> = (0..N).map(|i| canary(&format!("race{i}"))).collect();
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), N);

    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (cluster, barrier) = (cluster.clone(), barrier.clone());
        let body = json!({"name": names[i], "value": values[i]});
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cluster.post(i % 2, "/v1/secrets", body).await
        }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.unwrap().ok());
    }

    // One id, one created_at, one spelling in every response.
    let ids: BTreeSet<_> = responses
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let created: BTreeSet<_> = responses
        .iter()
        .map(|r| r["created_at"].as_str().unwrap().to_owned())
        .collect();
    let spelled: BTreeSet<_> = responses
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "several ids were handed out: {ids:?}");
    assert_eq!(created.len(), 1, "created_at differs: {created:?}");
    assert_eq!(spelled.len(), 1, "stored spelling differs: {spelled:?}");
    let id = ids.into_iter().next().unwrap();
    let first_created = responses
        .iter()
        .map(|r| parse_time(&r["created_at"]))
        .min()
        .unwrap();
    let stored_name = spelled.into_iter().next().unwrap();
    assert!(names.contains(&stored_name), "{stored_name}");

    // Both nodes list exactly that one secret.
    for node in 0..2 {
        let list = cluster.get(node, "/v1/secrets").await.ok();
        let secrets = list["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 1, "node {node}: {list}");
        assert_eq!(secrets[0]["id"], id.as_str());
        assert_eq!(secrets[0]["name"], stored_name.as_str());
        assert_eq!(parse_time(&secrets[0]["created_at"]), first_created);
    }

    // Through the library: the value is one of those sent, and each of the
    // 50 writes counted once in the version (none lost, none doubled).
    let lib = cluster.library().await;
    let p = lib
        .authenticate(Some(&format!("Bearer {}", cluster.admin_key)))
        .await
        .unwrap();
    let value = lib
        .reveal_secret(&p, TeamRef::Implicit, "race_name_of_the_day")
        .await
        .unwrap();
    assert!(
        values.iter().any(|v| v == value.expose()),
        "the stored value is none of the values sent"
    );
    let records = lib
        .list_team_secrets(&p, TeamRef::Implicit)
        .await
        .unwrap()
        .pages
        .next()
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec.id, id);
    assert_eq!(rec.version, N as i64, "one version per upsert");
    assert_eq!(rec.created_at, first_created.timestamp_micros());
}

// ---------------------------------------------------------------------------
// 2. What one node writes, the other sees
// ---------------------------------------------------------------------------

pub(crate) async fn two_nodes(test: &str) -> Option<Cluster> {
    let schema = pg_or_skip(test).await?;
    let url = schema.url();
    Some(Cluster::start(schema, vec![url.clone(), url]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_written_on_one_node_is_listed_by_the_other_at_once() {
    let Some(c) =
        two_nodes("multinode::secret_written_on_one_node_is_listed_by_the_other_at_once").await
    else {
        return;
    };
    let team = c.get(1, "/v1/teams").await.ok()["teams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for round in 0..5 {
        let (writer, reader) = (round % 2, 1 - round % 2);
        let name = format!("visible_{round}");
        let created = c
            .post(
                writer,
                "/v1/secrets",
                json!({"name": name, "value": canary("vis")}),
            )
            .await
            .ok();
        // No sleep: the write is committed before the 200.
        let list = c.get(reader, "/v1/secrets").await.ok();
        assert!(
            list["secrets"].as_array().unwrap().contains(&created),
            "node {reader} does not list what node {writer} wrote: {list}"
        );
        let team_list = c
            .get(reader, &format!("/v1/teams/{team}/secrets"))
            .await
            .ok();
        assert!(team_list["secrets"].as_array().unwrap().contains(&created));

        // An update on the reader keeps the id; a delete on the writer is
        // seen by the reader at once.
        let updated = c
            .post(
                reader,
                "/v1/secrets",
                json!({"name": name.replace('_', "-"), "value": "v2"}),
            )
            .await
            .ok();
        assert_eq!(updated, created);
        let gone = c
            .req(
                writer,
                Method::DELETE,
                &format!("/v1/secrets/{name}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
        assert_eq!(gone["name"], name.as_str());
        let list = c.get(reader, "/v1/secrets").await.ok();
        assert!(
            !list["secrets"].as_array().unwrap().contains(&created),
            "node {reader} still lists a secret deleted on node {writer}: {list}"
        );
        c.req(
            reader,
            Method::DELETE,
            &format!("/v1/secrets/{name}"),
            &c.admin_key,
            None,
        )
        .await
        .err(404, "NOT_FOUND");
    }
}

/// Node B answers team listings from memory while the team's revision is
/// unchanged. After any write node A has answered, node B's very next
/// listing must show it: 1,000 rounds, no sleep, creates and deletes, past
/// the first page (so both the single-page and the streamed listings are
/// remembered and checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_listing_on_one_node_is_never_staler_than_a_write_on_the_other() {
    let Some(c) =
        two_nodes("multinode::team_listing_on_one_node_is_never_staler_than_a_write_on_the_other")
            .await
    else {
        return;
    };
    let team = c.get(1, "/v1/teams").await.ok()["teams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listing = format!("/v1/teams/{team}/secrets");
    let names = |list: &Value| -> Vec<String> {
        list["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut expected = BTreeSet::new();
    for round in 0..1000 {
        let name = format!("fresh_{round:04}");
        c.post(0, &listing, json!({"name": name, "value": "v"}))
            .await
            .ok();
        expected.insert(name);
        if round % 3 == 2 {
            let doomed = format!("fresh_{:04}", round - 1);
            c.req(
                0,
                Method::DELETE,
                &format!("{listing}/{doomed}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
            expected.remove(&doomed);
        }
        let listed = names(&c.get(1, &listing).await.ok());
        let listed: BTreeSet<_> = listed.into_iter().collect();
        assert_eq!(
            listed, expected,
            "round {round}: node 1 lists other than what node 0 acknowledged"
        );
    }
}

/// Each node remembers the version it last wrote, to upsert in one round
/// trip. Writes through the other node make that memory stale: the next
/// upsert must notice, keep the id, take the next version and stay
/// decryptable; after a delete and re-create elsewhere it must not revive the
/// old id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_writers_keep_versions_ids_and_values_right() {
    let Some(c) =
        two_nodes("multinode::alternating_writers_keep_versions_ids_and_values_right").await
    else {
        return;
    };
    let first = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "v1"}))
        .await
        .ok();
    let mut last = String::new();
    for (i, node) in [0, 1, 1, 0, 1, 0, 0].into_iter().enumerate() {
        last = format!("value-{i}");
        let r = c
            .post(node, "/v1/secrets", json!({"name": "alt", "value": last}))
            .await
            .ok();
        assert_eq!(r["id"], first["id"], "round {i} on node {node}");
    }
    let lib = c.library().await;
    let p = lib
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        last
    );
    let listed = lib
        .list_team_secrets(&p, TeamRef::Implicit)
        .await
        .unwrap()
        .pages
        .next()
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(
        listed[0].version, 8,
        "one version per upsert, none lost or repeated"
    );
    // Deleted and re-created on node 1: node 0's memory of the old id is stale.
    c.req(1, Method::DELETE, "/v1/secrets/alt", &c.admin_key, None)
        .await
        .ok();
    let again = c
        .post(1, "/v1/secrets", json!({"name": "alt", "value": "fresh"}))
        .await
        .ok();
    assert_ne!(again["id"], first["id"]);
    let via0 = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "from-0"}))
        .await
        .ok();
    assert_eq!(
        via0["id"], again["id"],
        "node 0 must not revive the deleted secret's id"
    );
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        "from-0"
    );
    // Deleted on node 1 only: node 0 creates a new secret rather than updating a ghost.
    c.req(1, Method::DELETE, "/v1/secrets/alt", &c.admin_key, None)
        .await
        .ok();
    let reborn = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "reborn"}))
        .await
        .ok();
    assert_ne!(reborn["id"], again["id"]);
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        "reborn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_revoked_on_one_node_is_refused_by_the_other_within_one_second() {
    let Some(c) =
        two_nodes("multinode::key_revoked_on_one_node_is_refused_by_the_other_within_one_second")
            .await
    else {
        return;
    };
    let mut worst = Duration::ZERO;
    let mut seen = Vec::new();
    for round in 0..4 {
        let (revoker, other) = (round % 2, 1 - round % 2);
        let created = c
            .post(
                revoker,
                "/v1/api_keys",
                json!({"type": "PERSONAL", "name": format!("rev{round}")}),
            )
            .await
            .ok();
        let key = created["api_key"].as_str().expect("api_key").to_owned();
        let prefix = key.split('.').next().unwrap().to_owned();

        // A key made on one node works on the other at once, and both nodes
        // now hold it in their short-lived cache.
        for node in [revoker, other] {
            c.req(node, Method::GET, "/v1/secrets", &key, None)
                .await
                .ok();
        }

        let deleted = c
            .req(
                revoker,
                Method::DELETE,
                &format!("/v1/api_keys/{prefix}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
        assert_eq!(deleted["prefix"], prefix.as_str());
        let revoked_at = Instant::now();

        // The revoking node refuses it immediately.
        c.req(revoker, Method::GET, "/v1/secrets", &key, None)
            .await
            .err(401, "UNAUTHORIZED");

        // The other node refuses it within a second.
        let refused_after = loop {
            let r = c.req(other, Method::GET, "/v1/secrets", &key, None).await;
            if r.status == 401 {
                r.err(401, "UNAUTHORIZED");
                break revoked_at.elapsed();
            }
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(3),
                "node {other} still accepts a key revoked on node {revoker}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            refused_after < Duration::from_secs(1),
            "node {other} accepted a revoked key for {refused_after:?}"
        );
        worst = worst.max(refused_after);
        seen.push(refused_after);

        // And it stays refused everywhere.
        for _ in 0..5 {
            for node in [revoker, other] {
                c.req(node, Method::GET, "/v1/secrets", &key, None)
                    .await
                    .err(401, "UNAUTHORIZED");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    report(format!(
        "revocation propagation to the other node: {:?} (worst {worst:?})",
        seen
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_created_on_one_node_is_visible_on_the_other() {
    let Some(c) = two_nodes("multinode::team_created_on_one_node_is_visible_on_the_other").await
    else {
        return;
    };
    let team = c
        .post(0, "/v1/teams", json!({"name": "ml-platform"}))
        .await
        .ok();
    assert_eq!(team["name"], "ml-platform");
    assert_eq!(team["default"], false);
    parse_time(&team["created_at"]);
    let id = team["id"].as_str().unwrap();

    let list = c.get(1, "/v1/teams").await.ok();
    assert!(
        list["teams"].as_array().unwrap().contains(&team),
        "node 1 does not list the team node 0 created: {list}"
    );
    assert_eq!(c.get(1, &format!("/v1/teams/{id}")).await.ok(), team);

    // The new team is usable through the other node, and back again.
    let secret = c
        .post(
            1,
            &format!("/v1/teams/{id}/secrets"),
            json!({"name": "team_token", "value": canary("team")}),
        )
        .await
        .ok();
    assert_eq!(secret["team_name"], "ml-platform");
    let listed = c.get(0, &format!("/v1/teams/{id}/secrets")).await.ok();
    assert_eq!(listed["secrets"], json!([secret]));
}

/// Replicas of one deployment start at the same moment on a database that
/// `tessera migrate` has prepared: all must come up (they race to record the
/// master key and to create the first organization), and they must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_a_new_database_all_come_up() {
    for round in 0..4 {
        let Some(schema) =
            pg_or_skip("multinode::nodes_started_together_on_a_new_database_all_come_up").await
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        write_key_file(&key_file, &rand::random());
        let migrate_dir = dir.path().join("migrate").display().to_string();
        let out = crate::common::run_cli(
            &[
                "migrate",
                "--database-url",
                &schema.url(),
                "--data-dir",
                &migrate_dir,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let starts: Vec<_> = (0..3)
            .map(|i| {
                let data = dir.path().join(format!("node{i}"));
                let (url, key_file) = (schema.url(), key_file.display().to_string());
                tokio::task::spawn_blocking(move || {
                    ServerProcess::start(
                        &data,
                        &["--database-url", &url, "--master-key-file", &key_file],
                        &[],
                    )
                })
            })
            .collect();
        let mut nodes = Vec::new();
        for s in starts {
            match s.await.unwrap() {
                Ok(node) => nodes.push(node),
                Err(e) => panic!("round {round}: a node started with the others failed: {e}"),
            }
        }
        let keys: Vec<String> = (0..3)
            .filter_map(|i| {
                std::fs::read_to_string(dir.path().join(format!("node{i}")).join("admin.key")).ok()
            })
            .collect();
        assert_eq!(keys.len(), 1, "exactly one node initializes the store");
        let key = keys[0].trim();
        let http = http();
        let mut orgs = BTreeSet::new();
        for node in &nodes {
            let org = call(
                &http,
                Method::GET,
                &format!("{}/v1/organizations/me", node.url),
                Some(key),
                None,
            )
            .await
            .ok();
            orgs.insert(org.to_string());
        }
        assert_eq!(orgs.len(), 1, "the nodes disagree on the organization");
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url())
            .await
            .unwrap();
        let (keks, organizations): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM keks), (SELECT COUNT(*) FROM organizations)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!((keks, organizations), (1, 1));
        drop(nodes);
    }
}

// ---------------------------------------------------------------------------
// 3. Losing the database
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Connections stay open but nothing passes, in either direction:
    /// what a node sees when its database host vanishes from the network.
    Silent,
}

/// A TCP proxy in front of PostgreSQL that the test can break: `stop`
/// closes every connection and the port (connections are refused),
/// `start` opens the same port again; `silence` freezes every connection,
/// old and new, without closing any, and `heal` lets new connections through
/// while the frozen ones stay frozen (as after a failover).
struct PgProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: Arc<Mutex<Vec<TcpStream>>>,
}

impl PgProxy {
    async fn new(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream,
            mode: watch::channel(Mode::Forward).0,
            accept: None,
            conns: Default::default(),
            frozen: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, mode, conns, frozen) = (
            self.upstream,
            self.mode.clone(),
            self.conns.clone(),
            self.frozen.clone(),
        );
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let task = tokio::spawn(pipe(client, upstream, mode.subscribe(), frozen.clone()));
                conns.lock().unwrap().push(task);
            }
        }));
    }

    /// Closes the port and every connection through it.
    async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await;
        }
        self.frozen.lock().unwrap().clear();
    }

    /// Opens the same port again, forwarding.
    async fn start(&mut self) {
        self.mode.send_replace(Mode::Forward);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn silence(&self) {
        self.mode.send_replace(Mode::Silent);
    }

    fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        if let Some(a) = &self.accept {
            a.abort();
        }
        for c in self.conns.lock().unwrap().iter() {
            c.abort();
        }
    }
}

async fn pipe(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    frozen: Arc<Mutex<Vec<TcpStream>>>,
) {
    if *mode.borrow_and_update() == Mode::Silent {
        frozen.lock().unwrap().push(client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *mode.borrow_and_update() == Mode::Silent {
                    // The client's side stays open and silent; the database
                    // sees its side close (and rolls back whatever was open).
                    frozen.lock().unwrap().push(client);
                    return;
                }
            }
        }
    }
}

/// `postgres://user@host:port/db?…` → (`host:port`, the URL with `replacement`
/// instead of `host:port`).
fn split_authority(url: &str, replacement: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    (
        hostport,
        format!("{scheme}://{userinfo}{replacement}{}", &rest[end..]),
    )
}

/// One node behind a proxy, with one secret written before the trouble.
struct Outage {
    proxy: PgProxy,
    cluster: Cluster,
    before: Value,
    before_value: String,
}

async fn node_behind_proxy(test: &str) -> Option<Outage> {
    let schema = pg_or_skip(test).await?;
    let (upstream, _) = split_authority(&schema.url(), "");
    let upstream = tokio::net::lookup_host(&upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = PgProxy::new(upstream).await;
    let (_, via_proxy) = split_authority(&schema.url(), &proxy.addr.to_string());
    let cluster = Cluster::start(schema, vec![via_proxy]).await;
    let before_value = canary("before");
    let before = cluster
        .post(
            0,
            "/v1/secrets",
            json!({"name": "before_outage", "value": before_value}),
        )
        .await
        .ok();
    Some(Outage {
        proxy,
        cluster,
        before,
        before_value,
    })
}

/// The requests a node must refuse with 503 while its database is gone.
fn probes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/secrets", None),
        (
            Method::POST,
            "/v1/secrets",
            Some(json!({"name": "during_outage", "value": "never stored"})),
        ),
        (Method::GET, "/v1/teams", None),
        (Method::DELETE, "/v1/secrets/before_outage", None),
    ]
}

/// Fires `probes()` (and `/readyz`) `rounds` times, `concurrency` at once,
/// asserting each fails with 503 `UNAVAILABLE` within [`FAIL_FAST`]. Returns
/// the slowest.
async fn assert_unavailable(c: &Cluster, rounds: usize, concurrency: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        for i in 0..concurrency {
            let (method, path, body) = probes()[i % probes().len()].clone();
            let url = c.url(0, path);
            let (http, key) = (c.http.clone(), c.admin_key.clone());
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let r = call(&http, method.clone(), &url, Some(&key), body).await;
                (format!("{method} {path}"), r, started.elapsed())
            }));
        }
        let url = c.url(0, "/readyz");
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = call(&http, Method::GET, &url, None, None).await;
            ("GET /readyz".to_owned(), r, started.elapsed())
        }));
        for t in tasks {
            let (what, r, took) = t.await.unwrap();
            assert!(
                took < FAIL_FAST,
                "{what} took {took:?} with the database gone"
            );
            r.err(503, "UNAVAILABLE");
            slowest = slowest.max(took);
        }
    }
    // The process itself is still alive.
    call(&c.http, Method::GET, &c.url(0, "/healthz"), None, None)
        .await
        .ok();
    slowest
}

/// Polls until the node serves again; returns how long that took. Then
/// checks it stays up, that the data from before is intact and that writes
/// succeed.
async fn assert_recovers(o: &Outage, within: Duration) -> Duration {
    let c = &o.cluster;
    let started = Instant::now();
    loop {
        let r = c.get(0, "/v1/secrets").await;
        if r.status == 200 {
            break;
        }
        r.err(503, "UNAVAILABLE");
        assert!(
            started.elapsed() < within,
            "no recovery {within:?} after the database returned\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = started.elapsed();
    // Stays up, under concurrency larger than the pool.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (http, url, key) = (c.http.clone(), c.url(0, "/v1/secrets"), c.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                let body = json!({"name": format!("after_{i}"), "value": "v"});
                call(&http, Method::POST, &url, Some(&key), Some(body)).await
            } else {
                call(&http, Method::GET, &url, Some(&key), None).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().ok();
    }
    let ready = call(&c.http, Method::GET, &c.url(0, "/readyz"), None, None)
        .await
        .ok();
    assert_eq!(ready["status"], "ready");

    // Earlier data intact, nothing from the outage stored.
    let list = c.get(0, "/v1/secrets").await.ok();
    let secrets = list["secrets"].as_array().unwrap();
    assert!(secrets.contains(&o.before), "{list}");
    assert!(
        !secrets.iter().any(|s| s["name"] == "during_outage"),
        "a write answered 503 was stored: {list}"
    );
    assert_eq!(secrets.len(), 1 + 10);
    let lib = c.library().await;
    let p = lib
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    let v = lib
        .reveal_secret(&p, TeamRef::Implicit, "before_outage")
        .await
        .unwrap();
    assert_eq!(v.expose(), o.before_value);
    recovered
}

/// Warms the node's pool with many connections, so the outage hits
/// connections the pool believes are healthy.
async fn warm_pool(c: &Cluster) {
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, url, key) = (c.http.clone(), c.url(0, "/v1/secrets"), c.admin_key.clone());
        tasks.push(tokio::spawn(async move {
            call(&http, Method::GET, &url, Some(&key), None).await
        }));
    }
    for t in tasks {
        t.await.unwrap().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_fails_fast_with_503_and_service_resumes() {
    let Some(mut o) =
        node_behind_proxy("multinode::database_gone_fails_fast_with_503_and_service_resumes").await
    else {
        return;
    };
    warm_pool(&o.cluster).await;

    // The database goes away: open connections are cut, new ones refused.
    o.proxy.stop().await;
    let slowest = assert_unavailable(&o.cluster, 3, 8).await;

    o.proxy.start().await;
    let recovered = assert_recovers(&o, Duration::from_secs(10)).await;
    report(format!(
        "database refused: slowest 503 {slowest:?}; serving again {recovered:?} after it returned"
    ));

    // A restart nobody noticed: the database goes away for a second and
    // comes back between two requests. Every connection the pool holds is
    // dead; the next requests must not fail because of them.
    warm_pool(&o.cluster).await;
    o.proxy.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    o.proxy.start().await;
    let started = Instant::now();
    for _ in 0..20 {
        let r = o.cluster.get(0, "/v1/secrets").await;
        assert_eq!(
            r.status, 200,
            "a request after the database came back failed: {}",
            r.text
        );
    }
    report(format!(
        "database blip: 20 requests served in {:?}",
        started.elapsed()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_stops_answering_fails_fast_and_service_resumes() {
    let Some(o) = node_behind_proxy(
        "multinode::database_that_stops_answering_fails_fast_and_service_resumes",
    )
    .await
    else {
        return;
    };
    warm_pool(&o.cluster).await;

    // Packets vanish: every connection, old and new, hangs in silence. More
    // concurrent requests than the pool has connections, so every pooled
    // connection is caught mid-query.
    o.proxy.silence();
    let slowest = assert_unavailable(&o.cluster, 2, 24).await;

    // A replacement answers at the same address; the silent connections
    // never come back (no FIN, no RST), as after a failover.
    o.proxy.heal();
    let recovered = assert_recovers(&o, Duration::from_secs(10)).await;
    report(format!(
        "database silent: slowest 503 {slowest:?}; serving again {recovered:?} after failover"
    ));
}

/// The database answers but a table is locked (a long migration, a stuck
/// transaction, an operator's `LOCK TABLE`). A node must not wait behind it
/// longer than its call timeout; with `lock_timeout` set for its sessions it
/// answers as soon as the database gives up. Both are 503, never 500, and
/// both nodes serve again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_table_fails_fast_with_503_and_service_resumes() {
    let Some(schema) =
        pg_or_skip("multinode::locked_table_fails_fast_with_503_and_service_resumes").await
    else {
        return;
    };
    let url = schema.url();
    let with_lock_timeout = format!("{url}%20-c%20lock_timeout%3D250");
    assert!(url.contains("options=-c%20search_path"), "{url}");
    let c = Cluster::start(schema, vec![url.clone(), with_lock_timeout]).await;
    let before = c
        .post(0, "/v1/secrets", json!({"name": "locked", "value": "v1"}))
        .await
        .ok();

    let mut locker = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();

    let mut took = Vec::new();
    for node in 0..2 {
        for (method, body) in [
            (Method::GET, None),
            (
                Method::POST,
                Some(json!({"name": "locked", "value": "never stored"})),
            ),
        ] {
            let started = Instant::now();
            let r = c
                .req(node, method.clone(), "/v1/secrets", &c.admin_key, body)
                .await;
            let elapsed = started.elapsed();
            r.err(503, "UNAVAILABLE");
            let bound = if node == 0 {
                FAIL_FAST
            } else {
                Duration::from_secs(2)
            };
            assert!(
                elapsed < bound,
                "node {node}: {method} took {elapsed:?} behind a lock"
            );
            took.push(elapsed);
        }
    }
    report(format!(
        "locked table: 503 after {:?} (node 0, no lock_timeout), {:?} (node 1, lock_timeout=250ms)",
        &took[..2],
        &took[2..]
    ));

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    for node in 0..2 {
        let list = c.get(node, "/v1/secrets").await.ok();
        assert_eq!(list["secrets"], json!([before]));
        c.post(
            node,
            "/v1/secrets",
            json!({"name": "locked", "value": "v2"}),
        )
        .await
        .ok();
    }
    let lib = c.library().await;
    let p = lib
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    let v = lib
        .reveal_secret(&p, TeamRef::Implicit, "locked")
        .await
        .unwrap();
    assert_eq!(v.expose(), "v2");
}

// ---------------------------------------------------------------------------
// Delivery across nodes: LISTEN/NOTIFY wakes other nodes' long polls
// ---------------------------------------------------------------------------

/// A WORKSPACE_READ_SECRETS key for the default team, made on node 0.
async fn reader_key(c: &Cluster) -> String {
    let team = c.get(0, "/v1/teams").await.ok()["teams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.post(
        0,
        &format!("/v1/teams/{team}/api_keys"),
        json!({"type": "WORKSPACE_READ_SECRETS", "name": canary("reader")}),
    )
    .await
    .ok()["api_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Starts a long poll on `node` holding `etag`; resolves to the answer and
/// when it came.
fn long_poll(
    c: &Cluster,
    node: usize,
    key: &str,
    etag: &str,
    wait: u64,
) -> JoinHandle<(Resp, Instant)> {
    let (http, url, key, etag) = (
        c.http.clone(),
        c.url(node, &format!("/runtime/v1/secrets?wait={wait}")),
        key.to_owned(),
        etag.to_owned(),
    );
    tokio::spawn(async move {
        let r = http
            .get(url)
            .header("Authorization", format!("Bearer {key}"))
            .header("If-None-Match", etag)
            .send()
            .await
            .expect("long poll");
        let at = Instant::now();
        (to_resp(r).await, at)
    })
}

/// The ETag a node gives the key now.
async fn current_etag(c: &Cluster, node: usize, key: &str) -> String {
    let r = c
        .http
        .get(c.url(node, "/runtime/v1/secrets"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["etag"].to_str().unwrap().to_owned()
}

/// The backend pid of a node's listening connection, from its log (the
/// latest one when it has reconnected).
fn listener_pid(node: &ServerProcess) -> Option<i32> {
    node.log_text()
        .lines()
        .rev()
        .filter(|l| l.contains("listening for other nodes' changes"))
        .filter_map(|l| l.split("pid=").nth(1))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

async fn wait_for_listener(node: &ServerProcess, other_than: Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = listener_pid(node).filter(|p| Some(*p) != other_than) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the node is not listening: {}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_wakes_waiters_on_the_other() {
    let Some(c) = two_nodes("multinode::a_write_on_one_node_wakes_waiters_on_the_other").await
    else {
        return;
    };
    let key = reader_key(&c).await;
    wait_for_listener(&c.nodes[1], None).await;
    let mut delays = Vec::new();
    for round in 0..5 {
        let etag = current_etag(&c, 1, &key).await;
        let poll = long_poll(&c, 1, &key, &etag, 30);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!poll.is_finished(), "answered before any write");
        let value = canary("cross");
        let written = Instant::now();
        c.post(0, "/v1/secrets", json!({"name": "shared", "value": value}))
            .await
            .ok();
        let (r, at) = poll.await.unwrap();
        let body = r.ok();
        let got = body["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "shared")
            .expect("the written secret")["value"]
            .clone();
        assert_eq!(got, value.as_str(), "round {round}");
        delays.push(at - written);
        assert!(at - written < Duration::from_secs(5), "{:?}", at - written);
    }
    report(format!("write on node 0 to answer on node 1: {delays:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listening_connection_does_not_lose_a_change() {
    let Some(c) = two_nodes("multinode::a_lost_listening_connection_does_not_lose_a_change").await
    else {
        return;
    };
    let key = reader_key(&c).await;
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&std::env::var(PG_ENV).unwrap())
            .await
            .unwrap();
    for round in 0..3 {
        let pid = wait_for_listener(&c.nodes[1], None).await;
        let etag = current_etag(&c, 1, &key).await;
        let poll = long_poll(&c, 1, &key, &etag, 30);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Cut node 1's listening connection and write on node 0 at once,
        // while node 1 is not listening.
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(killed);
        let value = canary("gap");
        c.post(0, "/v1/secrets", json!({"name": "gap", "value": value}))
            .await
            .ok();
        let (r, _) = tokio::time::timeout(Duration::from_secs(15), poll)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the change was lost: {}", c.logs()))
            .unwrap();
        let body = r.ok();
        assert!(
            body["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["value"] == value.as_str()),
            "{body}"
        );
        // The node listens again, on a new connection, and caught up.
        wait_for_listener(&c.nodes[1], Some(pid)).await;
    }
    let log = c.nodes[1].log_text();
    assert_eq!(log.matches("catching up").count(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_node_ends_its_waiters_on_the_other() {
    let Some(c) =
        two_nodes("multinode::a_key_revoked_on_one_node_ends_its_waiters_on_the_other").await
    else {
        return;
    };
    wait_for_listener(&c.nodes[1], None).await;
    let key = reader_key(&c).await;
    let etag = current_etag(&c, 1, &key).await;
    let poll = long_poll(&c, 1, &key, &etag, 30);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let prefix = key.split('.').next().unwrap();
    c.req(
        0,
        Method::DELETE,
        &format!("/v1/api_keys/{prefix}"),
        &c.admin_key,
        None,
    )
    .await
    .ok();
    let revoked = Instant::now();
    let (r, at) = poll.await.unwrap();
    r.err(401, "UNAUTHORIZED");
    let took = at - revoked;
    assert!(took < Duration::from_secs(1), "{took:?}");
    report(format!(
        "revocation on node 0 to 401 for a waiter on node 1: {took:?}"
    ));
}
