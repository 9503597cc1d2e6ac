//! A destroyed version or a purged secret leaves the data files: on SQLite
//! its ciphertext is gone from the database file, the WAL and the
//! shared-memory file within [`BOUND`] of the last write, while readers keep
//! the database busy (docs/security.md states the bound). On PostgreSQL,
//! what remains physically is PostgreSQL's (dead tuples, WAL, backups; see
//! docs/operations-postgres.md); the test checks what Tessera controls: no
//! row keeps a destroyed or purged ciphertext.

use crate::common::{to_resp, wait_until, ServerProcess, TestApp};
use reqwest::Method;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The documented bound: after the last write, old ciphertexts are gone from
/// the files within this time (no read lasting that long).
const BOUND: Duration = Duration::from_secs(3);

/// The documented bound while other writes continue without a pause: the
/// writer empties the WAL every 5 s (retrying after 1 s when a read holds
/// it up).
const BOUND_WHILE_WRITING: Duration = Duration::from_secs(8);

/// A pause in writes this long lets the checkpointer's idle tick (250 ms)
/// empty the WAL; the continuous-writes check must see none.
const WRITE_PAUSE: Duration = Duration::from_millis(250);

const N: usize = 300;

/// Every secret's current ciphertext, read from the database file by name.
fn ciphertexts(db: &Path) -> HashMap<String, Vec<u8>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare("SELECT canonical_name, ciphertext FROM secrets")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<HashMap<String, Vec<u8>>, _>>()
        .unwrap();
    rows
}

/// Two 16-byte pieces of a ciphertext that nothing else shares: part of its
/// wrapped data key and its authentication tag (both random).
fn fingerprints(ct: &[u8]) -> [[u8; 16]; 2] {
    assert!(ct.len() > 64);
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&ct[24..40]);
    b.copy_from_slice(&ct[ct.len() - 16..]);
    [a, b]
}

/// The bytes of every file in `dir`, read now.
fn snapshot(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
        .collect()
}

/// A hasher for keys that are already uniformly random (8 bytes of a
/// ciphertext): the search below does millions of lookups.
#[derive(Default)]
struct RandomKeyHasher(u64);

impl std::hash::Hasher for RandomKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        panic!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// How many of `needles` (by fingerprint) appear anywhere in `files`.
fn found_in(files: &[Vec<u8>], needles: &[&Vec<u8>]) -> usize {
    let mut index: HashMap<u64, (usize, [u8; 16]), std::hash::BuildHasherDefault<RandomKeyHasher>> =
        HashMap::default();
    for (i, n) in needles.iter().enumerate() {
        for f in fingerprints(n) {
            let key = u64::from_le_bytes(f[..8].try_into().unwrap());
            index.insert(key, (i, f));
        }
    }
    let mut found = HashSet::new();
    for bytes in files {
        for w in bytes.windows(16) {
            let key = u64::from_le_bytes(w[..8].try_into().unwrap());
            if let Some((i, f)) = index.get(&key) {
                if w == f {
                    found.insert(*i);
                }
            }
        }
    }
    found.len()
}

/// Sends every request, 16 at a time, and asserts each answers 200.
async fn all_ok(url: &str, key: &str, requests: Vec<(Method, String, Option<serde_json::Value>)>) {
    let http = reqwest::Client::new();
    for chunk in requests.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for (method, path, body) in chunk.iter().cloned() {
            let mut req = http
                .request(method, format!("{url}{path}"))
                .bearer_auth(key);
            if let Some(b) = body {
                req = req.json(&b);
            }
            set.spawn(async move { to_resp(req.send().await.unwrap()).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().ok();
        }
    }
}

fn upserts(names: &[String], tag: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    names
        .iter()
        .map(|n| {
            let value = format!("{tag}-{n}-{}", tessera::domain::ids::random_base62(100));
            (
                Method::POST,
                "/v1/secrets".to_owned(),
                // Each write destroys the versions before it: their
                // ciphertexts must leave the files as a replaced value's did
                // before versions were kept.
                Some(json!({"name": n, "value": value, "destroy_previous": true})),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replaced_and_deleted_values_leave_the_files_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Versions are kept (the default 10), their values destroyed by each
    // write; deleted secrets are purged at once.
    let server = ServerProcess::start(&data, &["--keep-deleted-days", "0"], &[]).unwrap();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let db = data.join("tessera.db");
    let names: Vec<String> = (0..N).map(|i| format!("rem_{i:03}")).collect();

    // Version 1 of 300 secrets.
    all_ok(&url, &key, upserts(&names, "v1")).await;
    let v1 = ciphertexts(&db);
    assert_eq!(v1.len(), N);

    // Readers list the team continuously from here to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let listings = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (stop, listings, http, url, key) = (
            stop.clone(),
            listings.clone(),
            http.clone(),
            url.clone(),
            key.clone(),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .get(format!("{url}/v1/secrets"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                listings.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Version 2 of every secret, then half of them deleted.
    all_ok(&url, &key, upserts(&names, "v2")).await;
    let v2 = ciphertexts(&db);
    assert_eq!(v2.len(), N);
    let deleted: Vec<&String> = names.iter().step_by(2).collect();
    all_ok(
        &url,
        &key,
        deleted
            .iter()
            .map(|n| (Method::DELETE, format!("/v1/secrets/{n}"), None))
            .collect(),
    )
    .await;
    let last_write = Instant::now();
    let current = ciphertexts(&db);
    assert_eq!(current.len(), N / 2);

    // Gone: every version 1, and version 2 of the deleted secrets.
    let mut gone: Vec<&Vec<u8>> = v1.values().collect();
    gone.extend(deleted.iter().map(|n| &v2[n.as_str()]));
    assert_eq!(gone.len(), N + N / 2);
    let survivors: Vec<&Vec<u8>> = current.values().collect();

    // Each check looks at the files as they were when it read them.
    let mut remaining = usize::MAX;
    let mut cleared_after = None;
    loop {
        let at = last_write.elapsed();
        if at > BOUND {
            break;
        }
        remaining = found_in(&snapshot(&data), &gone);
        if remaining == 0 {
            cleared_after = Some(at);
            break;
        }
        // sleep: sampling the files while measuring how long clearing takes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = listings.load(Ordering::Relaxed);
    assert!(listed > 20, "the readers barely ran: {listed} listings");
    assert_eq!(
        remaining,
        0,
        "{remaining} of {} old ciphertexts are still in the data files {:?} after {BOUND:?}",
        gone.len(),
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    // The search works: the current values are found.
    assert_eq!(
        found_in(&snapshot(&data), &survivors),
        survivors.len(),
        "the current ciphertexts are in the files"
    );
    let _ = writeln!(
        std::io::stderr(),
        "MEASURED remanence: {} old ciphertexts gone from the SQLite files {:?} after the last write ({listed} listings meanwhile)",
        gone.len(),
        cleared_after.unwrap()
    );

    // While writes continue (other secrets, without a pause) and the readers
    // keep reading: the surviving secrets' replaced values still leave the
    // files within the bound for continuous writes.
    let writing = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicUsize::new(0));
    // When each write was acknowledged: the writes must not pause while the
    // old values are cleared, or the checkpointer's idle path did the work.
    let written_at = Arc::new(parking_lot::Mutex::new(Vec::<Instant>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (writing, writes, url, key, written_at) = (
            writing.clone(),
            writes.clone(),
            url.clone(),
            key.clone(),
            written_at.clone(),
        );
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                let value = format!("noise-{}", tessera::domain::ids::random_base62(100));
                let r = http
                    .post(format!("{url}/v1/secrets"))
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("noise_{w}_{}", i % 25), "value": value}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
                written_at.lock().push(Instant::now());
                i += 1;
            }
        }));
    }
    // The load is on (writes are being acknowledged).
    wait_until("the writers writing", || {
        writes.load(Ordering::Relaxed) >= 40
    })
    .await;
    let survivor_names: Vec<String> = current.keys().cloned().collect();
    all_ok(&url, &key, upserts(&survivor_names, "v3")).await;
    let replaced_at = Instant::now();
    let writes_before = writes.load(Ordering::Relaxed);
    let mut remaining = usize::MAX;
    let mut cleared_after = Duration::ZERO;
    loop {
        let at = replaced_at.elapsed();
        if at > BOUND_WHILE_WRITING {
            break;
        }
        remaining = found_in(&snapshot(&data), &survivors);
        if remaining == 0 {
            cleared_after = at;
            break;
        }
        // sleep: sampling the files while measuring how long clearing takes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes_during = writes.load(Ordering::Relaxed) - writes_before;
    writing.store(false, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    // Writes went on throughout the clearing: no gap between acknowledged
    // writes (or the window's ends) as long as the checkpointer's idle tick.
    let window_end = replaced_at + cleared_after;
    let mut times: Vec<Instant> = written_at
        .lock()
        .iter()
        .copied()
        .filter(|t| (replaced_at..=window_end).contains(t))
        .collect();
    times.sort();
    let mut marks = vec![replaced_at];
    marks.extend(times);
    marks.push(window_end);
    let longest_pause = marks
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest_pause < WRITE_PAUSE,
        "writes paused for {longest_pause:?} while old values were cleared ({writes_during} writes)"
    );
    assert_eq!(
        remaining,
        0,
        "{remaining} of {} replaced ciphertexts are still in the data files after {BOUND_WHILE_WRITING:?} of continuous writes",
        survivors.len()
    );
    let _ = writeln!(
        std::io::stderr(),
        "MEASURED remanence under continuous writes: {} replaced ciphertexts gone after {cleared_after:?} ({writes_during} other writes meanwhile)",
        survivors.len()
    );
    assert_eq!(server.terminate(), Some(0));
}

/// Every ciphertext any row holds: current values, kept versions, deleted
/// secrets.
async fn stored_ciphertexts(storage: &crate::common::Storage) -> Vec<Vec<u8>> {
    const SQL: &str = "SELECT ciphertext FROM secrets
        UNION ALL SELECT ciphertext FROM secret_versions WHERE ciphertext IS NOT NULL
        UNION ALL SELECT ciphertext FROM deleted_secrets";
    let url = storage.database_url();
    match tessera::store::sqlite_path(&url) {
        Some(path) => {
            let conn = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let mut st = conn.prepare(SQL).unwrap();
            let rows = st
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<Vec<u8>>, _>>()
                .unwrap();
            rows
        }
        None => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query_scalar(SQL).fetch_all(&pool).await.unwrap()
        }
    }
}

/// What Tessera controls on both backends: once a version is destroyed
/// (here by `destroy_previous`) or a deleted secret purged, no row holds its
/// ciphertext, while the current values stay.
async fn no_row_keeps_a_destroyed_or_purged_ciphertext(app: TestApp) {
    for i in 0..10 {
        app.post(
            "/v1/secrets",
            json!({"name": format!("row_{i}"), "value": format!("first-{i}")}),
        )
        .await
        .ok();
    }
    let before = stored_ciphertexts(&app.storage).await;
    assert_eq!(before.len(), 10);
    for i in 0..10 {
        app.post(
            "/v1/secrets",
            json!({"name": format!("row_{i}"), "value": format!("second-{i}"), "destroy_previous": true}),
        )
        .await
        .ok();
    }
    for i in 0..5 {
        app.request(
            Method::DELETE,
            &format!("/v1/secrets/row_{i}"),
            Some(&app.admin_key),
            None,
        )
        .await
        .ok();
    }
    // Deleted secrets are kept until the purge.
    assert_eq!(stored_ciphertexts(&app.storage).await.len(), 10);
    let later = tessera::domain::time::now_micros() + 8 * 24 * 3600 * 1_000_000;
    assert_eq!(app.service().purge_expired(later).await.unwrap(), 5);
    let after = stored_ciphertexts(&app.storage).await;
    assert_eq!(after.len(), 5);
    for old in &before {
        assert!(
            !after.contains(old),
            "a destroyed ciphertext is still stored"
        );
    }
}

crate::on_both_engines!(
    crate::common::TestApp::start =>
    no_row_keeps_a_destroyed_or_purged_ciphertext,
);
