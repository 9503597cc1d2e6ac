//! The real `tessera` binary: first start, restart persistence, master-key
//! refusal, the CLI, graceful shutdown, and the leak test.

use crate::common::{canary, run_cli, to_resp, ServerProcess, Storage};
use serde_json::json;
use std::path::Path;
use tessera::wire::management::TeamsView;

/// Starts the server without expecting a new admin key (restarts, and a
/// store that `tessera init` initialized).
fn start(storage: &Storage, data_dir: &Path) -> ServerProcess {
    let args = storage.db_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(data_dir, &args, &[]).expect("server starts")
}

async fn call(
    method: reqwest::Method,
    url: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> crate::common::Resp {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    to_resp(req.send().await.unwrap()).await
}

/// Writes a key file readable by its owner only (0600), as the server
/// requires.
pub fn write_private_key(path: &Path, key: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(key)
        .unwrap();
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn first_start_restart_and_graceful_shutdown(storage: Storage) {
    let data = storage.dir.path().join("data");
    let server = start(&storage, &data);
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        assert_eq!(mode(&data.join("admin.key")), 0o600);
        assert_eq!(mode(&data.join("master.key")), 0o400);
    }
    assert!(
        !server.log_text().contains(&key),
        "the admin key must not be logged"
    );
    let created = call(
        reqwest::Method::POST,
        &format!("{}/v1/secrets", server.url),
        &key,
        Some(json!({"name": "persist", "value": "kept"})),
    )
    .await
    .ok();
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0");

    let server = start(&storage, &data);
    let list = call(
        reqwest::Method::GET,
        &format!("{}/v1/secrets", server.url),
        &key,
        None,
    )
    .await
    .ok();
    assert_eq!(list["secrets"], json!([created]));
    assert_eq!(server.terminate(), Some(0));
}

async fn wrong_master_key_is_refused_with_both_ids(storage: Storage) {
    let data = storage.dir.path().join("data");
    let server = start(&storage, &data);
    server.terminate();
    let other = storage.dir.path().join("other.key");
    write_private_key(&other, &[7u8; 32]);
    let mut args = storage.db_args();
    args.extend(["--master-key-file".into(), other.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = ServerProcess::start(&data, &args, &[])
        .err()
        .expect("refused");
    let good_id = tessera::crypto::Keyring::new(
        &std::fs::read(data.join("master.key"))
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .kek_id()
    .to_owned();
    let bad_id = tessera::crypto::Keyring::new(&[7u8; 32])
        .kek_id()
        .to_owned();
    assert!(err.contains(&good_id) && err.contains(&bad_id), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
}

async fn init_and_org_create_print_only_the_key(storage: Storage) {
    let data = storage.dir.path().join("cli");
    let data_s = data.display().to_string();
    let mut base = vec!["--data-dir".to_owned(), data_s];
    base.extend(storage.db_args());
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .map(|s| s.to_string())
            .chain(base.iter().cloned())
            .collect()
    };
    let out = run_cli(
        &with(&["init"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let key = stdout.trim().to_owned();
    assert!(tessera::domain::key_token::PresentedToken::parse(&key).is_some());
    let again = run_cli(
        &with(&["init"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    let org = run_cli(
        &with(&["org", "create", "globex"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(
        org.status.success(),
        "{}",
        String::from_utf8_lossy(&org.stderr)
    );
    let org_key = String::from_utf8(org.stdout).unwrap().trim().to_owned();
    let dup = run_cli(
        &with(&["org", "create", "globex"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(!dup.status.success());
    let migrate = run_cli(
        &with(&["migrate"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let server = start(&storage, &data);
    assert!(
        !data.join("admin.key").exists(),
        "an initialized store is not re-initialized"
    );
    let me = call(
        reqwest::Method::GET,
        &format!("{}/v1/organizations/me", server.url),
        &org_key,
        None,
    )
    .await
    .ok();
    assert_eq!(me["name"], "globex");
    let me = call(
        reqwest::Method::GET,
        &format!("{}/v1/organizations/me", server.url),
        &key,
        None,
    )
    .await
    .ok();
    assert_eq!(me["name"], "default");
}

/// Upserts known random values through every write path (including requests
/// that fail), then looks for them in every file of the data directory, the
/// server's log (at debug level) and every response body.
async fn secret_values_never_leak(storage: Storage) {
    let data = storage.dir.path().join("leak");
    let server = start(&storage, &data);
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let url = &server.url;
    let team = call(reqwest::Method::GET, &format!("{url}/v1/teams"), &key, None)
        .await
        .json::<TeamsView>()
        .teams[0]
        .id
        .clone();
    let mut values = Vec::new();
    let mut bodies = String::new();
    for i in 0..20 {
        let v = canary(&format!("leak{i}"));
        let (path, name) = if i % 2 == 0 {
            (format!("{url}/v1/secrets"), format!("leak_{i}"))
        } else {
            (
                format!("{url}/v1/teams/{team}/secrets"),
                format!("leak-{i}"),
            )
        };
        let r = call(
            reqwest::Method::POST,
            &path,
            &key,
            Some(json!({"name": name, "value": v})),
        )
        .await;
        bodies.push_str(&r.text);
        // Update the same secret through an alias with a second value.
        let v2 = canary(&format!("leak{i}b"));
        let r = call(
            reqwest::Method::POST,
            &path,
            &key,
            Some(json!({"name": name.replace('_', "-"), "value": v2})),
        )
        .await;
        bodies.push_str(&r.text);
        values.push(v);
        values.push(v2);
    }
    // Failing writes that carry values: bad name, too large, wrong type, bad key.
    let v = canary("badname");
    bodies.push_str(
        &call(
            reqwest::Method::POST,
            &format!("{url}/v1/secrets"),
            &key,
            Some(json!({"name": "bad/name", "value": v})),
        )
        .await
        .text,
    );
    values.push(v);
    let v = canary("toolarge") + &"y".repeat(70_000);
    bodies.push_str(
        &call(
            reqwest::Method::POST,
            &format!("{url}/v1/secrets"),
            &key,
            Some(json!({"name": "big", "value": v})),
        )
        .await
        .text,
    );
    values.push(v[..40].to_owned());
    let v = canary("badkey");
    bodies.push_str(
        &call(
            reqwest::Method::POST,
            &format!("{url}/v1/secrets"),
            "AAAAAAAA.nope",
            Some(json!({"name": "x", "value": v})),
        )
        .await
        .text,
    );
    values.push(v);
    for path in [
        "/v1/secrets",
        "/v1/teams",
        "/v1/users/me",
        "/v1/organizations/me",
    ] {
        bodies.push_str(
            &call(reqwest::Method::GET, &format!("{url}{path}"), &key, None)
                .await
                .text,
        );
    }
    bodies.push_str(
        &reqwest::get(format!("{}/metrics", server.metrics_url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let log_path = server.log.clone();
    assert_eq!(server.terminate(), Some(0));
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("request"), "debug logging was on: {log}");

    let mut files = Vec::new();
    collect_files(&data, &mut files);
    assert!(files.iter().any(|f| f.ends_with("tessera.db")) || storage.pg.is_some());
    for v in &values {
        let needle = v.as_bytes();
        assert!(
            !bodies.contains(v.as_str()),
            "a value appeared in a response body"
        );
        assert!(!log.contains(v.as_str()), "a value appeared in the log");
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a value appeared in {}",
                f.display()
            );
        }
    }
    if let Some(pg) = &storage.pg {
        // The database holds only ciphertext: dump every text/bytea column.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url())
            .await
            .unwrap();
        let dump: Vec<(String,)> = sqlx::query_as(
            "SELECT concat_ws('|', s.name, encode(s.ciphertext, 'escape')) FROM secrets s",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(dump.len(), 20);
        for v in &values {
            assert!(
                dump.iter().all(|(row,)| !row.contains(v.as_str())),
                "a value is in PostgreSQL in plaintext"
            );
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    first_start_restart_and_graceful_shutdown,
    wrong_master_key_is_refused_with_both_ids,
    init_and_org_create_print_only_the_key,
    secret_values_never_leak,
);
