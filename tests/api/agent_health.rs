//! An agent (and a `run --watch` supervisor) that cannot do its job says so
//! and is seen to: issue 24 finding 5 (a secret that could not be written
//! fails `--once`, keeps the agent unhealthy, and is not reported as held),
//! issue 25 stumble 4 (prompt reconnection, repeated warnings, a health
//! probe) and stumble 1 (a key whose scope holds nothing is called out).

use crate::common::{canary, Backend, Deadline, ServerProcess, Storage, TestApp};
use crate::workload::{assert_no_values, eventually, run_with_stdin, Background, Env};
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const MANIFEST: &str = ".tessera-agent.json";
const STATUS: &str = ".tessera-agent.status";

fn once(env: &Env, key: &str, dir: &Path, instance: &str) -> std::process::Output {
    run_with_stdin(
        &[
            "agent",
            "--once",
            "--dir",
            dir.to_str().unwrap(),
            "--instance-id",
            instance,
        ],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", key)],
        b"",
    )
}

/// `tessera agent status --dir DIR --max-age AGE`.
fn probe(dir: &Path, max_age: &str) -> std::process::Output {
    run_with_stdin(
        &[
            "agent",
            "status",
            "--dir",
            dir.to_str().unwrap(),
            "--max-age",
            max_age,
        ],
        &[],
        b"",
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The consumers view of `name`: instance → (version, last seen).
async fn consumers(
    env: &Env,
    team: &str,
    name: &str,
) -> Vec<(String, i64, chrono::DateTime<chrono::Utc>)> {
    let v = env
        .call(
            &env.admin,
            Method::GET,
            &format!("/v1/teams/{team}/secrets/{name}/consumers"),
            None,
        )
        .await
        .ok();
    v["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["instance"].as_str().unwrap().to_owned(),
                c["version"].as_i64().unwrap(),
                c["last_seen_at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Polls the consumers view until `check` holds.
async fn consumers_until(
    env: &Env,
    team: &str,
    name: &str,
    what: &str,
    check: impl Fn(&[(String, i64, chrono::DateTime<chrono::Utc>)]) -> bool,
) -> Vec<(String, i64, chrono::DateTime<chrono::Utc>)> {
    let deadline = Deadline::new(what);
    loop {
        let c = consumers(env, team, name).await;
        if check(&c) {
            return c;
        }
        deadline.tick_showing(format!("{c:?}")).await;
    }
}

/// Finding 5, as found: the manifest is gone, so the agent's own earlier
/// file is no longer known as its own; the new version cannot be written.
/// `--once` fails, the consumers view keeps the version the file really
/// holds, the long-running agent is unhealthy until the file is removed,
/// then writes it and reports the new version.
async fn agent_fails_and_reports_nothing_new_while_a_file_is_stale(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    env.put("token", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");

    let out = once(&env, &key, &dir, "model-1");
    assert!(out.status.success(), "{}", stderr(&out));
    consumers_until(&env, &team, "token", "model-1 holds version 1", |c| {
        c.iter().any(|(i, v, _)| i == "model-1" && *v == 1)
    })
    .await;

    env.put("token", &v2).await;
    std::fs::remove_file(dir.join(MANIFEST)).unwrap();
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(5);
    let out = once(&env, &key, &dir, "model-1");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write token") && err.contains("remove them"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("token")).unwrap(), v1.as_bytes());
    // Once the server has recorded that second run, the view still says
    // version 1: what the workload's file holds.
    let c = consumers_until(&env, &team, "token", "the second run is recorded", |c| {
        c.iter()
            .any(|(i, _, seen)| i == "model-1" && *seen >= before)
    })
    .await;
    let held: Vec<i64> = c
        .iter()
        .filter(|(i, ..)| i == "model-1")
        .map(|(_, v, _)| *v)
        .collect();
    assert_eq!(held, [1], "{c:?}");

    // Long-running: unhealthy while the file is in the way.
    let mut agent = Background::agent(
        &env.url,
        &key,
        &dir,
        &["--instance-id", "model-1"],
        &tmp.path().join("agent.log"),
    );
    eventually("the probe fails, naming the file", || {
        let p = probe(&dir, "2m");
        p.status.code() == Some(1) && stderr(&p).contains("cannot write token")
    });
    // The fix the message gives: remove the stale file.
    std::fs::remove_file(dir.join("token")).unwrap();
    eventually("the agent writes it", || {
        std::fs::read(dir.join("token")).ok().as_deref() == Some(v2.as_bytes())
    });
    eventually("healthy again", || probe(&dir, "2m").status.success());
    consumers_until(&env, &team, "token", "model-1 holds version 2", |c| {
        c.iter().any(|(i, v, _)| i == "model-1" && *v == 2)
    })
    .await;
    assert_eq!(agent.terminate().code(), Some(0));
    let log = agent.log_text();
    assert_eq!(
        log.matches("cannot write token").count(),
        1,
        "logged once: {log}"
    );
    assert_no_values(&log, &[&v1, &v2]);
    assert_no_values(&err, &[&v1, &v2]);
}

/// Stumble 4: a server that is down for a few seconds, then back on the
/// same port. The probe tells the outage, the agent is back within about a
/// second (a write made right after the restart reaches the file at once),
/// and the probe's exit codes follow.
async fn agent_comes_back_promptly_and_its_probe_tells(storage: Storage) {
    let mut env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    env.put("token", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let mut agent = Background::agent(&env.url, &key, &dir, &[], &tmp.path().join("agent.log"));
    eventually("the file", || {
        std::fs::read(dir.join("token")).ok().as_deref() == Some(v1.as_bytes())
    });
    eventually("healthy", || probe(&dir, "2m").status.success());
    let healthy = probe(&dir, "2m");
    let text = String::from_utf8_lossy(&healthy.stdout);
    assert!(
        text.starts_with("healthy: the last round with the server ended"),
        "{text}"
    );
    assert!(text.contains("1 secrets"), "{text}");

    env.stop_server();
    let outage = Instant::now();
    eventually("the status shows the outage", || {
        std::fs::read(dir.join(STATUS))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| s["unreachable"].is_object())
    });
    // The probe fails once the last round is older than --max-age.
    eventually("the probe fails", || {
        let p = probe(&dir, "1s");
        p.status.code() == Some(1) && stderr(&p).contains("server unreachable since")
    });
    // The scenario: a restart that keeps the server away for eight seconds
    // (with the old backoff, the agent then slept up to 6.4 s more).
    // sleep: the outage's length is the scenario under test.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(outage.elapsed()));
    env.restart_server();
    let written = Instant::now();
    env.put("token", &v2).await;
    eventually("the new value", || {
        std::fs::read(dir.join("token")).ok().as_deref() == Some(v2.as_bytes())
    });
    let lag = written.elapsed();
    assert!(
        lag < Duration::from_millis(2500),
        "the file took {lag:?} after the write"
    );
    assert!(probe(&dir, "2m").status.success());

    assert_eq!(agent.terminate().code(), Some(0));
    let stopped = probe(&dir, "2m");
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stderr(&stopped).contains("unhealthy: stopped"),
        "{}",
        stderr(&stopped)
    );
    let log = agent.log_text();
    assert_eq!(log.matches("server unreachable").count(), 1, "{log}");
    assert_eq!(log.matches("reconnected").count(), 1, "{log}");
    assert_no_values(&log, &[&v1, &v2]);
    let status = std::fs::read_to_string(dir.join(STATUS)).unwrap();
    assert_no_values(&status, &[&v1, &v2]);
}

/// Stumble 4, as found: a `run --watch` whose server moved to TLS on the
/// same port. It keeps saying so (not one warning, then silence), names
/// the likely fix, and its probe fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_watch_keeps_warning_when_its_server_moved_to_tls() {
    let mut env = Env::start(Storage::new(Backend::Sqlite).await.unwrap());
    let team = env.default_team().await;
    let v = canary("tls");
    env.put("x", &v).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let status_file = tmp.path().join("run.status");
    let check = |max_age: &str| {
        run_with_stdin(
            &[
                "run",
                "status",
                "--status-file",
                status_file.to_str().unwrap(),
                "--max-age",
                max_age,
            ],
            &[],
            b"",
        )
    };
    let mut sup = Background::spawn(
        &[
            "run",
            "--watch",
            "--status-file",
            status_file.to_str().unwrap(),
            "--",
            "sleep",
            "600",
        ],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &key)],
        &tmp.path().join("run.log"),
    );
    eventually("the supervisor is healthy", || check("2m").status.success());

    // The server comes back on the same address, now speaking TLS.
    env.stop_server();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_file, key_file) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let (cmd, log) = ServerProcess::command_on(
        &env.addr,
        &env.data,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        &[],
        None,
    );
    let _tls = ServerProcess::launch(cmd, log).expect("the TLS server starts");

    let hint = "if it now serves HTTPS, use an https:// URL";
    // The outage was announced when it began (perhaps before the TLS
    // server was up: "cannot connect"), and is announced again 10 s in,
    // with the hint.
    eventually("the warning is repeated, with the hint", || {
        sup.log_text()
            .lines()
            .any(|l| l.contains("server still unreachable after") && l.contains(hint))
    });
    let text = sup.log_text();
    assert_eq!(text.matches("server unreachable;").count(), 1, "{text}");
    eventually("the probe fails and says why", || {
        let p = check("1s");
        p.status.code() == Some(1) && stderr(&p).contains(hint)
    });
    assert!(sup.is_running(), "the command keeps running");
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    sup.wait_exit();
    let p = check("2m");
    assert!(stderr(&p).contains("unhealthy: stopped"), "{}", stderr(&p));
    assert_no_values(&sup.log_text(), &[&v]);
}

/// `run --watch` tells the server it holds what the command runs with, and
/// its status follows: values it cannot apply (a NUL byte, which no
/// environment variable can hold) make it unhealthy and are not reported as
/// held; a revoked key (no more watching) and the end of the supervisor too.
async fn run_watch_status_and_holds_follow_what_the_command_runs_with(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v3) = (canary("v1"), canary("v3"));
    let v2 = canary("v2");
    let bad = format!("{v2}\u{0}tail");
    env.put("x", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let status_file = tmp.path().join("run.status");
    let check = || {
        run_with_stdin(
            &[
                "run",
                "status",
                "--status-file",
                status_file.to_str().unwrap(),
            ],
            &[],
            b"",
        )
    };
    let mut sup = Background::spawn(
        &[
            "run",
            "--watch",
            "--instance-id",
            "sup",
            "--status-file",
            status_file.to_str().unwrap(),
            "--",
            "sleep",
            "600",
        ],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &key)],
        &tmp.path().join("run.log"),
    );
    eventually("healthy", || check().status.success());
    consumers_until(&env, &team, "x", "sup holds version 1", |c| {
        c.iter().any(|(i, v, _)| i == "sup" && *v == 1)
    })
    .await;

    env.put("x", &bad).await;
    let after = chrono::Utc::now();
    eventually("unhealthy: the new value cannot be applied", || {
        let c = check();
        c.status.code() == Some(1) && stderr(&c).contains("new secrets cannot be applied")
    });
    let c = consumers_until(&env, &team, "x", "a sighting after the write", |c| {
        c.iter().any(|(i, _, seen)| i == "sup" && *seen >= after)
    })
    .await;
    let held: Vec<i64> = c
        .iter()
        .filter(|(i, ..)| i == "sup")
        .map(|(_, v, _)| *v)
        .collect();
    assert_eq!(held, [1], "the command still runs with version 1: {c:?}");

    env.put("x", &v3).await;
    eventually("healthy again", || check().status.success());
    consumers_until(&env, &team, "x", "sup holds version 3", |c| {
        c.iter().any(|(i, v, _)| i == "sup" && *v == 3)
    })
    .await;

    env.revoke(&key).await;
    eventually("unhealthy: no longer watching", || {
        let c = check();
        c.status.code() == Some(1) && stderr(&c).contains("no longer watching")
    });
    assert!(sup.is_running(), "the command keeps running");
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    sup.wait_exit();
    assert!(stderr(&check()).contains("unhealthy: stopped"));
    assert_no_values(&sup.log_text(), &[&v1, &v2, &v3]);
    assert_no_values(
        &std::fs::read_to_string(&status_file).unwrap(),
        &[&v1, &v2, &v3],
    );
}

/// `--watch` coalescing (a change waits out `--quiet-period` before the
/// restart that applies it) together with `X-Tessera-Holds`: a change that
/// is only pending is not what the command runs with, so the consumers view
/// and the status file keep the command's version until the restart, then
/// follow it. Checked over the whole pending window: whatever is read
/// before the supervisor has logged its restart must still show version 1.
async fn run_watch_holds_a_coalesced_change_only_once_restarted(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let (v1, v2) = (canary("v1"), canary("v2"));
    env.put("x", &v1).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let status_file = tmp.path().join("run.status");
    let status_revision = || -> Option<i64> {
        let bytes = std::fs::read(&status_file).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()?["revision"].as_i64()
    };
    // A child that records the value it was started with in `out/seen.<pid>`.
    let children = || -> Vec<String> {
        let mut v: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("seen."))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                (e.metadata().unwrap().modified().unwrap(), text)
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    };
    let held_by_sup = |c: &[(String, i64, chrono::DateTime<chrono::Utc>)]| -> Vec<i64> {
        c.iter()
            .filter(|(i, ..)| i == "sup")
            .map(|(_, v, _)| *v)
            .collect()
    };
    let script = r#"printf %s "$TRUSS_SECRET_x" > "$1/seen.$$"; exec sleep 600"#;
    let mut sup = Background::spawn(
        &[
            "run",
            "--watch",
            "--quiet-period",
            "5s",
            "--instance-id",
            "sup",
            "--status-file",
            status_file.to_str().unwrap(),
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
    eventually("the first child", || children() == [v1.clone()]);
    consumers_until(&env, &team, "x", "sup holds version 1", |c| {
        held_by_sup(c) == [1]
    })
    .await;
    let first = status_revision().expect("a status with a revision");

    let after = chrono::Utc::now();
    env.put("x", &v2).await;
    consumers_until(&env, &team, "x", "a sighting after the write", |c| {
        c.iter().any(|(i, _, seen)| i == "sup" && *seen >= after)
    })
    .await;
    // Pending: read the view and the status, then the log; as long as the
    // log has no restart, both must still show what the command runs with.
    let restarted = "restarted the command";
    let deadline = Deadline::new("a restart after the quiet period");
    let mut pending_checks = 0;
    loop {
        let c = consumers(&env, &team, "x").await;
        let revision = status_revision();
        if sup.log_text().contains(restarted) {
            break;
        }
        pending_checks += 1;
        assert_eq!(
            held_by_sup(&c),
            [1],
            "reported as held before the command runs with it: {c:?}"
        );
        assert_eq!(revision, Some(first), "the status is ahead of the command");
        assert_eq!(
            children(),
            std::slice::from_ref(&v1),
            "restarted without saying so"
        );
        deadline.tick().await;
    }
    assert!(
        pending_checks > 0,
        "the restart came before the change was seen pending (a 5 s quiet period)"
    );
    eventually("a child with the new value", || {
        children() == [v1.clone(), v2.clone()]
    });
    consumers_until(&env, &team, "x", "sup holds version 2", |c| {
        held_by_sup(c) == [2]
    })
    .await;
    eventually("the status follows the restart", || {
        status_revision().is_some_and(|r| r > first)
    });
    assert_eq!(sup.terminate().code(), Some(128 + 15));
    assert_no_values(&sup.log_text(), &[&v1, &v2]);
}

/// Stumble 1: a key whose scope holds no secret (made for another team
/// than the one written to, or narrowed to names that do not exist) makes
/// the agent and `tessera run` say so, instead of a quiet `written=0`.
async fn an_empty_scope_is_called_out(storage: Storage) {
    let env = Env::start(storage);
    let default_team = env.default_team().await;
    let other = env.create_team("ml").await;
    env.put("hf_token", &canary("elsewhere")).await;
    let keys = [
        env.read_key(&other, None).await,
        env.read_key(&default_team, Some(&["no_such_name"])).await,
    ];
    let tmp = tempfile::tempdir().unwrap();
    let loud = "can read no secret at all";
    for (i, key) in keys.iter().enumerate() {
        let out = once(&env, key, &tmp.path().join(i.to_string()), "empty");
        assert!(out.status.success(), "{}", stderr(&out));
        let prefix = key.split('.').next().unwrap();
        assert!(
            stderr(&out).contains(loud) && stderr(&out).contains(prefix),
            "{}",
            stderr(&out)
        );
        let run = run_with_stdin(
            &["run", "--", "true"],
            &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", key)],
            b"",
        );
        assert!(run.status.success(), "{}", stderr(&run));
        assert!(stderr(&run).contains(loud), "{}", stderr(&run));
    }
    // A key that reads something says nothing of the kind.
    let good = env
        .call(
            &env.admin,
            Method::POST,
            &format!("/v1/teams/{default_team}/api_keys"),
            Some(serde_json::json!({"type": "WORKSPACE_READ_SECRETS", "name": "good"})),
        )
        .await
        .json::<tessera::wire::management::NewApiKeyView>()
        .api_key;
    let out = once(&env, &good, &tmp.path().join("good"), "good");
    assert!(
        out.status.success() && !stderr(&out).contains(loud),
        "{}",
        stderr(&out)
    );
}

/// What the agent relies on, at the HTTP level: a client that says what it
/// holds (`X-Tessera-Holds`) is recorded with what it applied, not with
/// what it was sent; one that says nothing is recorded as before.
async fn consumers_record_what_a_client_says_it_holds(app: TestApp) {
    let team = app.default_team_id().await;
    let key = app.reader_key(&team).await;
    let put = |v: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/v1/secrets",
                serde_json::json!({"name": "api-token", "value": v}),
            )
            .await
            .ok();
        }
    };
    let fetch = |instance: &'static str, held: Option<String>, holds: Option<String>| {
        let (app, key) = (&app, &key);
        async move {
            let mut r = app
                .http
                .get(format!("{}/runtime/v1/secrets", app.url))
                .bearer_auth(key)
                .header("X-Tessera-Agent", instance);
            if let Some(h) = held {
                r = r.header("If-None-Match", h);
            }
            if let Some(h) = holds {
                r = r.header("X-Tessera-Holds", h);
            }
            let resp = r.send().await.unwrap();
            let etag = resp
                .headers()
                .get("etag")
                .map(|e| e.to_str().unwrap().to_owned());
            (resp.status().as_u16(), etag, resp.text().await.unwrap())
        }
    };
    let view = || {
        let (app, team) = (&app, &team);
        async move {
            app.service().flush_consumers().await.unwrap();
            let c = app
                .get(&format!("/v1/teams/{team}/secrets/api-token/consumers"))
                .await
                .ok();
            let mut seen: Vec<(String, i64)> = c["consumers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["instance"].as_str().unwrap().to_owned(),
                        c["version"].as_i64().unwrap(),
                    )
                })
                .collect();
            seen.sort();
            seen
        }
    };

    put("one").await;
    // Sent, not yet applied: not held.
    let (status, etag1, _) = fetch("agent", None, Some("none".into())).await;
    assert_eq!(status, 200);
    assert_eq!(view().await, []);
    // Applied: the next request says so, and it is recorded.
    let (status, ..) = fetch("agent", etag1.clone(), etag1.clone()).await;
    assert_eq!(status, 304);
    assert_eq!(view().await, [("agent".to_owned(), 1)]);
    // A new version is sent but could not be applied: still version 1.
    put("two").await;
    let (status, etag2, _) = fetch("agent", etag1.clone(), etag1.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(view().await, [("agent".to_owned(), 1)]);
    let (status, ..) = fetch("agent", None, Some("none".into())).await;
    assert_eq!(status, 200);
    assert_eq!(view().await, [("agent".to_owned(), 1)]);
    // Applied at last.
    let (status, ..) = fetch("agent", etag2.clone(), etag2.clone()).await;
    assert_eq!(status, 304);
    // A client that says nothing holds what it was sent (tessera run).
    fetch("runner", None, None).await;
    assert_eq!(
        view().await,
        [("agent".to_owned(), 2), ("runner".to_owned(), 2)]
    );
    // Anything else is a 400 that says what the header must be.
    let (status, _, body) = fetch("agent", None, Some("all of it".into())).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("x-tessera-holds must be `none` or the ETag"),
        "{body}"
    );
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    agent_fails_and_reports_nothing_new_while_a_file_is_stale,
    agent_comes_back_promptly_and_its_probe_tells,
    run_watch_status_and_holds_follow_what_the_command_runs_with,
    run_watch_holds_a_coalesced_change_only_once_restarted,
    an_empty_scope_is_called_out,
);

mod holds {
    use super::*;
    crate::on_both_engines!(
        crate::common::TestApp::start =>
        consumers_record_what_a_client_says_it_holds,
    );
}
