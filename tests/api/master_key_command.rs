//! `--master-key-command` through the real binary: the key a command prints
//! opens the store across restarts, a command printing another key is
//! refused by the key check, and a failing command stops the start with an
//! error naming it. Neither the key nor the command's error text reaches the
//! log or the error.

use crate::common::{ServerProcess, Storage};
use base64::Engine;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes an executable script that prints `stdout` and a canary on
/// standard error, then exits with `code`.
fn key_script(dir: &Path, name: &str, stdout: &str, code: i32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho run >> '{runs}'\necho stderr-canary-{name} >&2\nprintf '%s\\n' '{stdout}'\nexit {code}\n",
            runs = dir.join(format!("{name}.runs")).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn start(storage: &Storage, data: &Path, script: &Path) -> Result<ServerProcess, String> {
    let mut args = storage.db_args();
    args.extend(["--master-key-command".into(), script.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(data, &args, &[])
}

fn assert_no_leak(text: &str, key_b64: &str) {
    assert!(!text.contains(key_b64), "the key reached the log: {text}");
    assert!(
        !text.contains("stderr-canary"),
        "the command's error text reached the log: {text}"
    );
}

async fn the_commands_key_opens_the_store_across_restarts(storage: Storage) {
    let dir = storage.dir.path().to_owned();
    let data = dir.join("data");
    let key = base64::engine::general_purpose::STANDARD.encode(crate::common::rand_key());
    let good = key_script(&dir, "good", &key, 0);

    let server = start(&storage, &data, &good).unwrap();
    let log = server.log_text();
    assert_eq!(server.terminate(), Some(0));
    assert_no_leak(&log, &key);
    assert!(
        !data.join("master.key").exists(),
        "no key file is made beside the data"
    );
    let runs = std::fs::read_to_string(dir.join("good.runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "the command runs once per start");

    // The same key again: the key check passes.
    let server = start(&storage, &data, &good).unwrap();
    let log = server.log_text();
    assert_eq!(server.terminate(), Some(0));
    assert_no_leak(&log, &key);

    // Another key: refused by the check, not by the command.
    let other = base64::engine::general_purpose::STANDARD.encode(crate::common::rand_key());
    let wrong = key_script(&dir, "wrong", &other, 0);
    let err = start(&storage, &data, &wrong)
        .err()
        .expect("another key is refused");
    assert!(err.contains("cannot open this database's data"), "{err}");
    assert_no_leak(&err, &other);

    let failing = key_script(&dir, "failing", &key, 7);
    let err = start(&storage, &data, &failing)
        .err()
        .expect("a failing command stops the start");
    assert!(
        err.contains("master key command") && err.contains("exit status: 7"),
        "{err}"
    );
    assert_no_leak(&err, &key);

    let garbage = key_script(&dir, "garbage", "certainly-not-a-key", 0);
    let err = start(&storage, &data, &garbage)
        .err()
        .expect("output that is not a key stops the start");
    assert!(err.contains("that are not a key"), "{err}");
    assert!(!err.contains("certainly-not"), "{err}");
}

crate::on_both_engines!(Storage::new => the_commands_key_opens_the_store_across_restarts);

/// A command that hangs is stopped after its timeout and the start fails.
#[test]
fn a_hanging_command_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = crate::common::run_cli(
        &[
            "serve",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--master-key-command",
            "sleep 60",
            "--master-key-command-timeout",
            "1",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("did not finish within 1 s"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// The key file inside the data directory on a server others can reach is
/// warned of at start; on loopback (the laptop start), or with the key kept
/// elsewhere, it is not.
#[test]
fn a_key_beside_reachable_data_is_warned_of() {
    const WARNING: &str = "the master key file is inside the data directory";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reachable = ServerProcess::start_on("0.0.0.0:0", &data, &[], &[]).unwrap();
    let log = reachable.log_text();
    assert_eq!(reachable.terminate(), Some(0));
    assert!(log.contains(WARNING), "{log}");

    // The warning comes before "listening", which came before ready.
    let local = ServerProcess::start(&data, &[], &[]).unwrap();
    let log = local.log_text();
    assert_eq!(local.terminate(), Some(0));
    assert!(log.contains("listening") && !log.contains(WARNING), "{log}");

    let apart = dir.path().join("master.key");
    std::fs::copy(data.join("master.key"), &apart).unwrap();
    let apart_arg = apart.display().to_string();
    let elsewhere =
        ServerProcess::start_on("0.0.0.0:0", &data, &["--master-key-file", &apart_arg], &[])
            .unwrap();
    let log = elsewhere.log_text();
    assert_eq!(elsewhere.terminate(), Some(0));
    assert!(log.contains("listening") && !log.contains(WARNING), "{log}");
}
