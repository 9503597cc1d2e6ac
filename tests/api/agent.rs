//! `tessera agent` through the real binary against a real server: exact
//! bytes, both spellings, updates and deletes (also while stopped), scope,
//! foreign files, modes, a server restart, `--once` exit codes, revocation
//! and `--wipe-on-revoke`, and no value in any log.

use crate::common::{canary, Storage};
use crate::workload::{assert_no_values, eventually, mode, read, Background, Env};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

const MANIFEST: &str = ".tessera-agent.json";

fn has(dir: &Path, name: &str, value: &[u8]) -> bool {
    read(&dir.join(name)).as_deref() == Some(value)
}

/// Runs `tessera agent --once` to completion.
fn once(url: &str, key: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["agent", "--once", "--dir", dir.to_str().unwrap()];
    args.extend(extra);
    crate::workload::run_with_stdin(
        &args,
        &[("TESSERA_URL", url), ("TESSERA_API_KEY", key)],
        b"",
    )
}

async fn agent_mirrors_values_and_follows_changes(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let other = env.create_team("other").await;

    let multi = format!("first line\n{}\nlast line\n", canary("multi"));
    let unicode = format!("ünïcødé ✓ 🔑 {}", canary("unicode"));
    let mut big = canary("big");
    big.push_str(&"x".repeat(64 * 1024 - big.len()));
    assert_eq!(big.len(), 65536);
    let foreign_value = canary("other-team");
    env.put("multi-line", &multi).await;
    env.put("unicode.value", &unicode).await;
    env.put("big_one", &big).await;
    env.put_in(&other, "other-secret", &foreign_value).await;
    let key = env.read_key(&team, None).await;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not the agent's").unwrap();
    let hook_log = tmp.path().join("hook.log");
    let hook = format!(
        "echo \"$TESSERA_CHANGED_SECRETS\" >> {}",
        hook_log.display()
    );
    let mut agent = Background::agent(
        &env.url,
        &key,
        &dir,
        &["--on-change", &hook],
        &tmp.path().join("agent.log"),
    );

    eventually("the files hold the values", || {
        has(&dir, "multi-line", multi.as_bytes())
            && has(&dir, "multi_line", multi.as_bytes())
            && has(&dir, "unicode.value", unicode.as_bytes())
            && has(&dir, "unicode_value", unicode.as_bytes())
            && has(&dir, "big_one", big.as_bytes())
    });
    assert_eq!(mode(&dir), 0o700);
    for f in [
        "multi-line",
        "multi_line",
        "unicode.value",
        "big_one",
        MANIFEST,
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert!(manifest.contains("multi-line"), "{manifest}");
    assert_no_values(&manifest, &[&multi, &unicode, &big[..40], &foreign_value]);

    // An update changes both spellings; another team's write changes nothing here.
    let multi2 = format!("{}\n", canary("multi2"));
    env.put("multi-line", &multi2).await;
    env.put_in(&other, "other-secret", &canary("other-team-2"))
        .await;
    eventually("the update reaches both files", || {
        has(&dir, "multi-line", multi2.as_bytes()) && has(&dir, "multi_line", multi2.as_bytes())
    });

    // A delete removes the secret's files and nothing else.
    env.delete("unicode.value").await;
    eventually("the deleted secret's files are gone", || {
        !dir.join("unicode.value").exists() && !dir.join("unicode_value").exists()
    });
    assert!(has(&dir, "big_one", big.as_bytes()));
    assert!(has(&dir, "notes.txt", b"not the agent's"));
    assert!(!dir.join("other-secret").exists() && !dir.join("other_secret").exists());
    // Exactly these files (once the manifest's own atomic rewrite is done).
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    eventually("no other file remains", || {
        listing()
            == [
                MANIFEST,
                ".tessera-agent.status",
                "big_one",
                "multi-line",
                "multi_line",
                "notes.txt",
            ]
    });

    // --on-change ran after the first sync, the update and the delete.
    eventually("the hook ran three times", || {
        std::fs::read_to_string(&hook_log)
            .map(|t| t.lines().count() >= 3)
            .unwrap_or(false)
    });
    let hooks = std::fs::read_to_string(&hook_log).unwrap();
    let lines: Vec<&str> = hooks.lines().collect();
    assert_eq!(lines[0], "big_one multi-line unicode.value", "{hooks}");
    assert_eq!(lines[1], "multi-line", "{hooks}");
    assert_eq!(lines[2], "unicode.value", "{hooks}");

    // SIGTERM stops it cleanly; its log names secrets and never a value.
    assert_eq!(agent.terminate().code(), Some(0));
    let log = agent.log_text();
    assert!(
        log.contains("multi-line") && log.contains("version"),
        "{log}"
    );
    assert_no_values(
        &log,
        &[&multi, &multi2, &unicode, &big[..40], &foreign_value],
    );
}

async fn agent_restart_catches_up_on_deletes_and_keeps_foreign_files(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (a, b) = (canary("a"), canary("b"));
    env.put("keep", &a).await;
    env.put("drop", &b).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");

    let mut agent = Background::agent(&env.url, &key, &dir, &[], &tmp.path().join("1.log"));
    eventually("both files", || {
        has(&dir, "keep", a.as_bytes()) && has(&dir, "drop", b.as_bytes())
    });
    assert_eq!(agent.terminate().code(), Some(0));

    // While the agent is stopped: a delete, and a file of someone else's.
    env.delete("drop").await;
    std::fs::write(dir.join("mine"), b"foreign").unwrap();

    let out = once(&env.url, &key, &dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.join("drop").exists(),
        "deleted while stopped: removed at start"
    );
    assert!(has(&dir, "keep", a.as_bytes()));
    assert!(has(&dir, "mine", b"foreign"));

    // And again, across another restart (the manifest remembers).
    let mut agent = Background::agent(&env.url, &key, &dir, &[], &tmp.path().join("2.log"));
    let c = canary("c");
    env.put("later", &c).await;
    eventually("the new secret", || has(&dir, "later", c.as_bytes()));
    assert!(has(&dir, "mine", b"foreign"));
    assert_eq!(agent.terminate().code(), Some(0));
    let out = once(&env.url, &key, &dir, &[]);
    assert!(out.status.success());
    assert!(has(&dir, "mine", b"foreign"));
    for log in [tmp.path().join("1.log"), tmp.path().join("2.log")] {
        assert_no_values(&std::fs::read_to_string(log).unwrap(), &[&a, &b, &c]);
    }
    assert_no_values(&String::from_utf8_lossy(&out.stderr), &[&a, &b, &c]);
}

async fn agent_once_scope_modes_and_exit_codes(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (x, y, z) = (canary("x"), canary("y"), canary("z"));
    env.put("x", &x).await;
    env.put("y", &y).await;
    env.put("z-z", &z).await;
    let narrow = env.read_key(&team, Some(&["x", "z_z"])).await;
    let tmp = tempfile::tempdir().unwrap();

    // A narrowed key sees only its names.
    let dir = tmp.path().join("narrow");
    let out = once(&env.url, &narrow, &dir, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has(&dir, "x", x.as_bytes()) && has(&dir, "z-z", z.as_bytes()));
    assert!(has(&dir, "z_z", z.as_bytes()));
    assert!(!dir.join("y").exists());
    assert_no_values(&String::from_utf8_lossy(&out.stderr), &[&x, &y, &z]);

    // --group: 0750 and 0640, owned by the group (ours, which we may give).
    let gid = nix::unistd::getegid().as_raw();
    let shared = tmp.path().join("shared");
    let out = once(&env.url, &narrow, &shared, &["--group", &gid.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&shared), 0o750);
    assert_eq!(mode(&shared.join("x")), 0o640);
    assert_eq!(std::fs::metadata(shared.join("x")).unwrap().gid(), gid);
    assert_eq!(mode(&shared.join(MANIFEST)), 0o600);

    // The key from a file: refused when others may read it, used when private.
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, format!("{narrow}\n")).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let from_file = tmp.path().join("from-file");
    let args = [
        "agent",
        "--once",
        "--dir",
        from_file.to_str().unwrap(),
        "--api-key-file",
        key_file.to_str().unwrap(),
    ];
    let url = [("TESSERA_URL", env.url.as_str())];
    let out = crate::workload::run_with_stdin(&args, &url, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("chmod 600"),
        "{stderr}"
    );
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = crate::workload::run_with_stdin(&args, &url, b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(has(&from_file, "x", x.as_bytes()));

    // Failures: non-zero with a clear message, and no value file written.
    let cases = [
        (
            "bad key",
            env.url.clone(),
            "AAAAAAAA.nosuchkeynosuchkeynosuchkey".to_owned(),
            "refused the API key",
        ),
        (
            "wrong key type",
            env.url.clone(),
            env.admin.clone(),
            "WORKSPACE_READ_SECRETS",
        ),
        (
            "no server",
            format!("http://{}", crate::workload::free_addr()),
            narrow.clone(),
            "cannot fetch the secrets",
        ),
    ];
    for (what, url, key, expect) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        let out = once(&url, &key, &dir, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains(expect), "{what}: {stderr}");
        assert!(!dir.join("x").exists(), "{what}");
    }
}

async fn agent_rides_out_a_server_restart(storage: Storage) {
    let mut env = Env::start(storage);
    let team = env.default_team().await;
    let v1 = canary("v1");
    env.put("token", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let mut agent = Background::agent(&env.url, &key, &dir, &[], &tmp.path().join("agent.log"));
    eventually("first value", || has(&dir, "token", v1.as_bytes()));

    env.stop_server();
    eventually("the agent notices", || {
        agent.log_text().contains("server unreachable")
    });
    // It keeps trying while the server is away: a stand-in on the server's
    // address sees three more attempts (each cut at once, so still failed).
    let stand_in = std::net::TcpListener::bind(&env.addr).unwrap();
    stand_in.set_nonblocking(true).unwrap();
    let mut attempts = 0;
    eventually("three attempts while the server is away", || {
        while let Ok((conn, _)) = stand_in.accept() {
            drop(conn);
            attempts += 1;
        }
        attempts >= 3
    });
    drop(stand_in);
    assert!(agent.is_running());
    assert!(has(&dir, "token", v1.as_bytes()), "last good file kept");

    env.restart_server();
    let v2 = canary("v2");
    env.put("token", &v2).await;
    eventually("the agent catches up", || has(&dir, "token", v2.as_bytes()));
    assert_eq!(agent.terminate().code(), Some(0));
    let log = agent.log_text();
    assert_eq!(log.matches("server unreachable").count(), 1, "{log}");
    assert_eq!(log.matches("reconnected").count(), 1, "{log}");
    assert_no_values(&log, &[&v1, &v2]);
}

async fn agent_exits_on_revocation_keeping_or_wiping_files(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let v = canary("v");
    env.put("token", &v).await;
    let tmp = tempfile::tempdir().unwrap();

    // Default: exits non-zero and keeps the files.
    let key = env.read_key(&team, None).await;
    let kept = tmp.path().join("kept");
    let mut agent = Background::agent(&env.url, &key, &kept, &[], &tmp.path().join("1.log"));
    eventually("file", || has(&kept, "token", v.as_bytes()));
    env.revoke(&key).await;
    let status = agent.wait_exit();
    assert_eq!(status.code(), Some(1), "{:?}", status.signal());
    assert!(agent.log_text().contains("refused the API key"));
    assert!(has(&kept, "token", v.as_bytes()));
    // Its probe says why it stopped.
    let probe = crate::workload::run_with_stdin(
        &["agent", "status", "--dir", kept.to_str().unwrap()],
        &[],
        b"",
    );
    assert_eq!(probe.status.code(), Some(1));
    let why = String::from_utf8_lossy(&probe.stderr);
    assert!(
        why.contains("unhealthy: stopped") && why.contains("refused the API key"),
        "{why}"
    );

    // --wipe-on-revoke: removes its own files only.
    let key = env.read_key(&team, None).await;
    let wiped = tmp.path().join("wiped");
    std::fs::create_dir(&wiped).unwrap();
    std::fs::write(wiped.join("theirs"), b"foreign").unwrap();
    let mut agent = Background::agent(
        &env.url,
        &key,
        &wiped,
        &["--wipe-on-revoke"],
        &tmp.path().join("2.log"),
    );
    eventually("file", || has(&wiped, "token", v.as_bytes()));
    env.revoke(&key).await;
    assert_eq!(agent.wait_exit().code(), Some(1));
    assert!(!wiped.join("token").exists());
    assert!(!wiped.join(MANIFEST).exists());
    assert!(has(&wiped, "theirs", b"foreign"));
    for log in ["1.log", "2.log"] {
        assert_no_values(
            &std::fs::read_to_string(tmp.path().join(log)).unwrap(),
            &[&v],
        );
    }
}

/// Every runtime request carries `X-Tessera-Agent`; with `--once` a 5xx is
/// a clear failure. (A one-shot fake server: no store involved.)
#[test]
fn agent_identifies_itself_and_once_fails_on_5xx() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let body = r#"{"code":"UNAVAILABLE","message":"store down"}"#;
        write!(
            s,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(request).unwrap().to_lowercase()
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = once(
        &url,
        "AAAAAAAA.somekeysomekeysomekey",
        &tmp.path().join("s"),
        &["--instance-id", "model-7"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("UNAVAILABLE (503)"), "{stderr}");
    let request = server.join().unwrap();
    assert!(request.starts_with("get /runtime/v1/secrets "), "{request}");
    assert!(
        request.contains("\r\nx-tessera-agent: model-7\r\n"),
        "{request}"
    );
    assert!(
        request.contains("\r\nauthorization: bearer aaaaaaaa.somekeysomekeysomekey\r\n"),
        "{request}"
    );
}

/// The agent holds its key for as long as it runs: like `tessera run`
/// (issue 24 finding 10), it makes itself non-dumpable, so another process
/// of its user cannot read the key from its `/proc/PID/environ`; and its
/// `--on-change` command gets neither the key nor where it is.
async fn agent_keeps_its_key_from_proc_and_from_its_hook(storage: Storage) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = Env::start(storage);
    let team = env.default_team().await;
    let value = canary("x");
    env.put("x", &value).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    // As root, the agent runs as an ordinary user: root reads any
    // process's environment, so only another user can show the difference.
    let uid = nix::unistd::geteuid().is_root().then_some(65534u32);
    let key_file = tmp.path().join("read.key");
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(uid) = uid {
        let id = Some(nix::unistd::Uid::from_raw(uid));
        let gid = Some(nix::unistd::Gid::from_raw(uid));
        nix::unistd::chown(tmp.path(), id, gid).unwrap();
        nix::unistd::chown(&key_file, id, gid).unwrap();
    }
    let key_path = key_file.to_str().unwrap();
    let secrets_of = |text: &str| {
        [key.as_str(), key_path, "TESSERA_API_KEY"]
            .into_iter()
            .filter(|s| text.contains(s))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let dir = tmp.path().join("secrets");
    let hook_environ = tmp.path().join("hook-environ");
    let hook = format!(
        r#"cat /proc/$$/environ > "{0}.tmp"; mv "{0}.tmp" "{0}""#,
        hook_environ.display()
    );
    let log = tmp.path().join("agent.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.args([
        "agent",
        "--dir",
        dir.to_str().unwrap(),
        "--on-change",
        &hook,
    ])
    .env("TESSERA_LOG", "info")
    .env("TESSERA_URL", &env.url)
    .env("TESSERA_API_KEY", &key)
    .env("TESSERA_API_KEY_FILE", &key_file)
    .stdin(std::process::Stdio::null())
    .stdout(file.try_clone().unwrap())
    .stderr(file);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut agent = Background {
        child: cmd.spawn().unwrap(),
        log,
    };
    eventually("the first sync and its hook", || {
        has(&dir, "x", value.as_bytes()) && hook_environ.exists()
    });
    let hook_env = std::fs::read_to_string(&hook_environ)
        .unwrap()
        .replace('\0', "\n");
    assert!(hook_env.contains("TESSERA_AGENT_DIR="), "{hook_env}");
    assert_eq!(secrets_of(&hook_env), Vec::<String>::new(), "the hook");
    let agent_env = crate::run::environ_as(agent.child.id(), uid);
    assert!(
        agent_env
            .as_deref()
            .map(secrets_of)
            .unwrap_or_default()
            .is_empty(),
        "another process of the agent's user read its key from /proc"
    );
    assert!(agent.is_running(), "{}", agent.log_text());
    assert_eq!(agent.terminate().code(), Some(0));
    assert_no_values(&agent.log_text(), &[&value, &key]);
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    agent_mirrors_values_and_follows_changes,
    agent_restart_catches_up_on_deletes_and_keeps_foreign_files,
    agent_once_scope_modes_and_exit_codes,
    agent_rides_out_a_server_restart,
    agent_exits_on_revocation_keeping_or_wiping_files,
    agent_keeps_its_key_from_proc_and_from_its_hook,
);
