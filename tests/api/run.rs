//! `tessera run` through the real binary: values in `TRUSS_SECRET_<name>`
//! (both spellings) or plain names, the child's exit status and pid, the
//! refusals, fetch failures that start nothing, and `--watch` restarts.

use crate::common::{canary, Storage, BIN};
use crate::workload::{assert_no_values, eventually, read, run_with_stdin, Background, Env};
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::{Command, Stdio};

fn run(url: &str, key: &str, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["run"];
    all.extend(args);
    let mut e = vec![("TESSERA_URL", url), ("TESSERA_API_KEY", key)];
    e.extend(envs);
    run_with_stdin(&all, &e, b"")
}

fn text(path: &Path) -> String {
    String::from_utf8(read(path).unwrap_or_default()).unwrap()
}

async fn run_passes_values_and_exit_status(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let token = format!("two\nlines ✓ {}\n", canary("token"));
    env.put("hf-token", &token).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let f = |n: &str| tmp.path().join(n);

    // Same process (exec): the pid the child sees is the one we started.
    let script = r#"printf %s "$TRUSS_SECRET_hf_token" > "$1"; echo $$ > "$2"; printf %s "${TESSERA_API_KEY-unset}" > "$3"; exit 7"#;
    let mut child = Command::new(BIN)
        .args(["run", "--", "sh", "-c", script, "sh"])
        .args([f("canonical"), f("pid"), f("key")])
        .env("TESSERA_URL", &env.url)
        .env("TESSERA_API_KEY", &key)
        .env("TESSERA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert_eq!(text(&f("canonical")), token);
    assert_eq!(text(&f("pid")).trim(), pid.to_string());
    assert_eq!(
        text(&f("key")),
        "unset",
        "the child does not get the workload key"
    );
    assert_no_values(&stderr, &[&token]);

    // The stored spelling too (read without a shell in between: dash drops
    // variables whose names are not shell identifiers).
    let out = run(
        &env.url,
        &key,
        &["--", "printenv", "TRUSS_SECRET_hf-token"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{token}\n"),
        "printenv adds one newline"
    );

    // --plain: upper-cased canonical names only.
    let out = run(
        &env.url,
        &key,
        &[
            "--plain",
            "--",
            "sh",
            "-c",
            r#"printf %s "$HF_TOKEN" > "$1"; printf %s "${TRUSS_SECRET_hf_token-none}" > "$2""#,
            "sh",
            f("p1").to_str().unwrap(),
            f("p2").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&f("p1")), token);
    assert_eq!(text(&f("p2")), "none");

    // A command that does not exist: 127, as a shell would say.
    let out = run(&env.url, &key, &["--", "/nonexistent/command"], &[]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/command"));
}

async fn run_refuses_unsafe_ambiguous_or_missing_secrets(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    let touch = [
        "--",
        "sh",
        "-c",
        r#"touch "$1""#,
        "sh",
        marker.to_str().unwrap(),
    ];
    let with = |flags: &[&'static str]| {
        let mut a: Vec<&str> = flags.to_vec();
        a.extend(touch);
        a
    };
    let preload = canary("preload");
    env.put("ld_preload", &preload).await;

    // --plain would set LD_PRELOAD: refused, nothing started.
    let out = run(&env.url, &key, &with(&["--plain"]), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("LD_PRELOAD"),
        "{stderr}"
    );
    assert!(!marker.exists());
    assert_no_values(&stderr, &[&preload]);
    // Under its Truss name (TRUSS_SECRET_ld_preload) it is harmless.
    let out = run(&env.url, &key, &with(&[]), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    env.delete("ld_preload").await;

    // Two secrets mapping to one variable.
    env.put("HF_TOKEN", "a").await;
    env.put("hf-token", "b").await;
    let out = run(&env.url, &key, &with(&["--plain"]), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("both map to the variable HF_TOKEN"),
        "{stderr}"
    );
    assert!(!marker.exists());
    env.delete("HF_TOKEN").await;

    // A variable already set: an error unless --override.
    let value = canary("hf");
    env.put("hf-token", &value).await;
    let preset = [("HF_TOKEN", "from-the-environment")];
    let out = run(&env.url, &key, &with(&["--plain"]), &preset);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--override"),
        "{stderr}"
    );
    assert!(!marker.exists());
    let seen = tmp.path().join("seen");
    let out = run(
        &env.url,
        &key,
        &[
            "--plain",
            "--override",
            "--",
            "sh",
            "-c",
            r#"printf %s "$HF_TOKEN" > "$1""#,
            "sh",
            seen.to_str().unwrap(),
        ],
        &preset,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text(&seen), value);

    // A failed fetch starts nothing.
    let nowhere = format!("http://{}", crate::workload::free_addr());
    for (url, k, expect) in [
        (nowhere.as_str(), key.as_str(), "cannot fetch the secrets"),
        (
            env.url.as_str(),
            "AAAAAAAA.nosuchkeynosuchkeynosuchkey",
            "refused the API key",
        ),
        (
            env.url.as_str(),
            env.admin.as_str(),
            "WORKSPACE_READ_SECRETS",
        ),
    ] {
        let out = run(url, k, &with(&[]), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains("not started"),
            "{stderr}"
        );
        assert!(!marker.exists());
    }
}

/// A child that records the value it was started with in `DIR/seen.<pid>`.
fn seen_values(dir: &Path) -> Vec<String> {
    let mut v: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seen."))
        .map(|e| (e.metadata().unwrap().modified().unwrap(), text(&e.path())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

async fn run_watch_restarts_the_command_with_new_values(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    env.put("x", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Records its value, then exits 3 on SIGTERM.
    let script = r#"printf %s "$TRUSS_SECRET_x" > "$1/seen.$$"; trap 'exit 3' TERM; while :; do sleep 0.1; done"#;
    let mut sup = Background::spawn(
        &[
            "run",
            "--watch",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            out.to_str().unwrap(),
        ],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &key)],
        &tmp.path().join("run.log"),
    );
    eventually("the first child", || seen_values(&out) == [v1.clone()]);
    env.put("x", &v2).await;
    eventually("a restart with the new value", || {
        seen_values(&out) == [v1.clone(), v2.clone()]
    });
    // A write that changes nothing the child sees does not restart it.
    env.put("x", &v2).await;
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(seen_values(&out).len(), 2);

    // SIGTERM goes to the child; the supervisor exits with its status.
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait_exit().code(), Some(3));
    let log = sup.log_text();
    assert!(log.contains("restarting"), "{log}");
    assert_no_values(&log, &[&v1, &v2]);
}

async fn run_watch_kills_a_child_that_ignores_sigterm(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    env.put("x", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let stop = tmp.path().join("stop");
    // Ignores SIGTERM; leaves with 5 when the stop file appears.
    let script = r#"printf %s "$TRUSS_SECRET_x" > "$1/seen.$$"; trap '' TERM; while [ ! -e "$2" ]; do sleep 0.1; done; exit 5"#;
    let mut sup = Background::spawn(
        &[
            "run",
            "--watch",
            "--grace",
            "1",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            out.to_str().unwrap(),
            stop.to_str().unwrap(),
        ],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &key)],
        &tmp.path().join("run.log"),
    );
    eventually("the first child", || seen_values(&out) == [v1.clone()]);
    env.put("x", &v2).await;
    eventually("killed after the grace period and restarted", || {
        seen_values(&out) == [v1.clone(), v2.clone()]
    });
    assert!(sup
        .log_text()
        .contains("did not stop within the grace period"));
    // The child leaving on its own ends the supervisor with its status.
    std::fs::write(&stop, b"").unwrap();
    assert_eq!(sup.wait_exit().code(), Some(5));
}

crate::storage_tests!(
    run_passes_values_and_exit_status,
    run_refuses_unsafe_ambiguous_or_missing_secrets,
    run_watch_restarts_the_command_with_new_values,
    run_watch_kills_a_child_that_ignores_sigterm,
);
