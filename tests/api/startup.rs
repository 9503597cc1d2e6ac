//! Starting the real binary: private file modes whatever the umask, the
//! master key file's mode, a missing master key, a read-only data directory,
//! a port already in use, two servers on one SQLite database, and what a
//! PostgreSQL node leaves (and logs) at start.

use crate::binary::write_private_key;
use crate::common::{announce_skip, run_cli, to_resp, Backend, ServerProcess, Storage, Tmpfs};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn db_args(storage: &Storage) -> Vec<String> {
    storage.db_args()
}

fn start(storage: &Storage, data: &Path, extra: &[&str]) -> Result<ServerProcess, String> {
    let mut args = db_args(storage);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(data, &args, &[])
}

async fn write_secret(url: &str, key: &str, name: &str, value: &str) -> crate::common::Resp {
    to_resp(
        reqwest::Client::new()
            .post(format!("{url}/v1/secrets"))
            .bearer_auth(key)
            .json(&json!({"name": name, "value": value}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Under `umask 000` the data directory is 0700 and every file in it 0600 or
/// stricter: the database, its WAL and shared-memory files, the lock, the
/// admin key and the master key (0400). A pre-existing data directory that
/// others could reach, holding only Tessera's files, is made private.
async fn files_are_private_whatever_the_umask(storage: Storage) {
    let data = storage.dir.path().join("data");
    let args = db_args(&storage);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start_with_umask(&data, &args, &[], Some("000")).unwrap();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    write_secret(&server.url, &key, "probe", "v").await.ok();
    assert_eq!(mode(&data), 0o700, "the data directory");
    let files = files_in(&data);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut expected = vec!["admin.key", "master.key"];
    if storage.pg.is_none() {
        expected.extend([
            "tessera.db",
            "tessera.db-shm",
            "tessera.db-wal",
            "tessera.db.lock",
        ]);
    }
    for want in &expected {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for f in &files {
        assert_eq!(mode(f) & 0o077, 0, "{} is {:04o}", f.display(), mode(f));
    }
    assert_eq!(mode(&data.join("master.key")), 0o400);
    assert_eq!(mode(&data.join("admin.key")), 0o600);
    assert_eq!(server.terminate(), Some(0));

    // A data directory made by an older version (or an empty volume), open
    // to everyone, is made private on the next start, its files too.
    set_mode(&data, 0o777);
    if storage.pg.is_none() {
        set_mode(&data.join("tessera.db"), 0o644);
    }
    let server = ServerProcess::start_with_umask(&data, &args, &[], Some("000")).expect("restarts");
    assert_eq!(mode(&data), 0o700);
    for f in files_in(&data) {
        assert_eq!(mode(&f) & 0o077, 0, "{} is {:04o}", f.display(), mode(&f));
    }
    assert_eq!(server.terminate(), Some(0));

    // One that holds someone else's files is not changed: refused, with the fix.
    set_mode(&data, 0o755);
    std::fs::write(data.join("notes.txt"), "not Tessera's").unwrap();
    let err = ServerProcess::start(&data, &args, &[])
        .err()
        .expect("refused");
    assert!(
        err.contains(&format!("chmod 700 {}", data.display())),
        "{err}"
    );
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(mode(&data), 0o755, "left as it was");
}

/// A master key file its group or other users can read is refused, from the
/// default location and from `--master-key-file`, with the command that
/// fixes it.
async fn a_master_key_file_others_can_read_is_refused(storage: Storage) {
    let data = storage.dir.path().join("data");
    let server = start(&storage, &data, &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    let default_key = data.join("master.key");
    set_mode(&default_key, 0o440);
    let err = start(&storage, &data, &[]).err().expect("refused");
    assert!(
        err.contains(&format!("chmod 600 {}", default_key.display())),
        "{err}"
    );
    set_mode(&default_key, 0o600);
    start(&storage, &data, &[])
        .expect("a private key file is accepted")
        .terminate();

    let outside = storage.dir.path().join("elsewhere.key");
    std::fs::copy(&default_key, &outside).unwrap();
    set_mode(&outside, 0o644);
    let flag = outside.display().to_string();
    let err = start(&storage, &data, &["--master-key-file", &flag])
        .err()
        .expect("refused");
    assert!(err.contains(&format!("chmod 600 {flag}")), "{err}");
    assert!(err.contains("0644"), "{err}");
}

/// With a store that holds data and no `master.key`, the server says the key
/// file is missing and where it was expected, and generates none.
async fn a_missing_master_key_is_reported_and_never_replaced(storage: Storage) {
    let data = storage.dir.path().join("data");
    let server = start(&storage, &data, &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    let key_path = data.join("master.key");
    let kek_id =
        tessera::crypto::Keyring::new(&std::fs::read(&key_path).unwrap().try_into().unwrap())
            .kek_id()
            .to_owned();
    std::fs::remove_file(&key_path).unwrap();
    let err = start(&storage, &data, &[]).err().expect("refused");
    assert!(
        err.contains(&format!(
            "the master key file {} is missing",
            key_path.display()
        )),
        "{err}"
    );
    assert!(err.contains(&kek_id), "names the key the data needs: {err}");
    assert!(!err.contains("configured master key"), "{err}");
    assert!(!key_path.exists(), "no new key was generated");
}

/// A port already in use: the server fails before it creates anything.
async fn a_port_in_use_leaves_no_data_directory(storage: Storage) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = storage.dir.path().join("fresh");
    let data_s = data.display().to_string();
    let mut args = vec!["serve", "--listen", &addr, "--data-dir", &data_s];
    let db = db_args(&storage);
    args.extend(db.iter().map(String::as_str));
    let out = run_cli(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("binding {addr}")), "{stderr}");
    assert!(!data.exists(), "nothing was created: {stderr}");
    if storage.pg.is_some() {
        // Nor was the database initialized.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&storage.database_url())
            .await
            .unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(tables, 0);
    }
}

/// Names, modes and sizes of what is in `dir` (recursively one level), to
/// compare before and after a refused start.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u64)> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut out = vec![(dir.to_owned(), mode(dir), 0)];
    for path in files_in(dir) {
        let meta = std::fs::metadata(&path).unwrap();
        out.push((
            path.clone(),
            mode(&path),
            if meta.is_dir() { 0 } else { meta.len() },
        ));
    }
    out
}

/// Issue 25, stumble 9: a refused start changes nothing. A store holding
/// data, a data directory others can reach (holding only Tessera's files,
/// which start-up would make private) with a SQLite database file that is
/// 0644, and a master key that is not the store's: the start is refused for
/// the key, and the directory, its files and their modes are as they were.
async fn a_refused_start_changes_nothing(storage: Storage) {
    let data = storage.dir.path().join("data");
    let server = start(&storage, &data, &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    let key_path = data.join("master.key");
    std::fs::remove_file(&key_path).unwrap();
    write_private_key(&key_path, &crate::common::rand_key());
    set_mode(&key_path, 0o400);
    set_mode(&data, 0o755);
    if storage.pg.is_none() {
        set_mode(&data.join("tessera.db"), 0o644);
        let _ = std::fs::remove_file(data.join("tessera.db.lock"));
    }
    let before = snapshot(&data);
    let err = start(&storage, &data, &[]).err().expect("refused");
    assert!(err.contains("cannot open this database's data"), "{err}");
    assert_eq!(
        snapshot(&data),
        before,
        "a refused start changed files: {err}"
    );
}

/// The stumble as it was met: `--database-url` names a SQLite database
/// elsewhere (0644) that holds data, and no master key is given (the
/// default one, in a data directory that does not exist, is missing).
/// Refused, naming the key the data needs; the database's directory is as
/// it was (no mode changed, no lock file), and no data directory appears.
#[test]
fn a_database_named_by_url_is_untouched_by_a_refused_start() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o755);
    let db = elsewhere.join("tessera.db");
    let url = format!("sqlite://{}", db.display());
    let key = tmp.path().join("init.key");
    write_private_key(&key, &crate::common::rand_key());
    let out = run_cli(
        &[
            "init",
            "--database-url",
            &url,
            "--master-key-file",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    set_mode(&db, 0o644);
    let before = snapshot(&elsewhere);
    let data = tmp.path().join("data");
    let err = ServerProcess::start(&data, &["--database-url", &url], &[])
        .err()
        .expect("refused");
    assert!(err.contains("master key file"), "{err}");
    assert!(err.contains("is missing"), "{err}");
    assert_eq!(
        snapshot(&elsewhere),
        before,
        "a refused start changed files: {err}"
    );
    assert!(!data.exists(), "no data directory was created");
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    files_are_private_whatever_the_umask,
    a_master_key_file_others_can_read_is_refused,
    a_missing_master_key_is_reported_and_never_replaced,
    a_port_in_use_leaves_no_data_directory,
    a_refused_start_changes_nothing,
);

/// A second server on the same SQLite database is refused while the first
/// runs, and starts once the first has stopped.
#[test]
fn a_second_server_on_one_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ServerProcess::start(&data, &[], &[]).unwrap();
    let err = ServerProcess::start(&data, &[], &[])
        .err()
        .expect("the second server is refused");
    assert!(
        err.contains("another Tessera server")
            && err.contains(&first.child.id().to_string())
            && err.contains(&data.join("tessera.db").display().to_string()),
        "{err}"
    );
    assert_eq!(
        crate::common::blocking_status(&format!("{}/readyz", first.url)).unwrap(),
        200,
        "the first one still serves"
    );
    assert_eq!(first.terminate(), Some(0));
    let second = ServerProcess::start(&data, &[], &[]).expect("starts once the first stopped");
    assert_eq!(second.terminate(), Some(0));
}

/// A read-only data directory holding a store: refused at start, with the
/// cause, instead of a server that is ready and fails every write. (A tmpfs
/// remounted read-only: as root, permission bits would not stop writes.)
#[test]
fn a_read_only_data_directory_is_refused() {
    let Some(fs) = Tmpfs::mount("startup::a_read_only_data_directory_is_refused", "16m") else {
        return;
    };
    // The mount itself is the data directory (the server's log goes beside it).
    let data = fs.path.clone();
    let server = ServerProcess::start(&data, &[], &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    fs.set_read_only(true);
    let err = ServerProcess::start(&data, &[], &[])
        .err()
        .expect("refused on a read-only file system");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(!err.contains("checkpoint"), "{err}");
    fs.set_read_only(false);
    let server = ServerProcess::start(&data, &[], &[]).expect("starts once writable again");
    assert_eq!(server.terminate(), Some(0));
}

/// The same when only the database file cannot be written (`chattr +i`):
/// the store's own write probe refuses it.
#[test]
fn an_unwritable_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[], &[]).unwrap();
    assert_eq!(server.terminate(), Some(0));
    let db = data.join("tessera.db");
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .status()
        .is_ok_and(|s| s.success());
    if !immutable {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED startup::an_unwritable_database_file_is_refused: chattr +i is not available here\n",
        );
        assert!(std::env::var("CI").is_err(), "cannot be skipped under CI");
        return;
    }
    let result = ServerProcess::start(&data, &[], &[]);
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&db)
        .status();
    let err = result.err().expect("refused");
    assert!(
        err.contains(&format!(
            "cannot write the SQLite database {}",
            db.display()
        )),
        "{err}"
    );
}

/// On PostgreSQL with the master key outside the data directory and an
/// initialized store, `serve` creates no data directory, and a restart logs
/// no `schema_migrations ... already exists, skipping` notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_create_no_data_directory_and_log_no_notice() {
    let Some(storage) = Storage::new(Backend::Postgres).await else {
        announce_skip(
            "startup::postgres_nodes_create_no_data_directory_and_log_no_notice",
            "TESSERA_TEST_DATABASE_URL is not set",
        );
        return;
    };
    let key = storage.dir.path().join("master.key");
    write_private_key(&key, &rand::random::<[u8; 32]>());
    let key_s = key.display().to_string();
    let url = storage.database_url();
    let init = run_cli(
        &["init", "--database-url", &url, "--master-key-file", &key_s],
        &[],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let data = storage.dir.path().join("unused-data");
    for _ in 0..2 {
        let server = ServerProcess::start(
            &data,
            &["--database-url", &url, "--master-key-file", &key_s],
            &[("TESSERA_LOG", "info")],
        )
        .unwrap();
        let log = server.log_text();
        assert!(!log.contains("already exists"), "{log}");
        assert!(log.contains("listening"), "logged at info: {log}");
        assert_eq!(server.terminate(), Some(0));
        assert!(!data.exists(), "no data directory was created");
    }
}

/// Organization names follow the name rules too (the CLI creates them).
#[test]
fn organization_names_refuse_invisible_characters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let out = run_cli(&["org", "create", "acme\u{200b}", "--data-dir", &data], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("U+200B"), "{stderr}");
}
