//! Recovering a secret and seeing who holds it, through the real binary: a
//! running agent (named with `--instance-id`) receives a restored value,
//! `tessera secrets versions|restore|destroy|consumers|deleted|undelete`
//! and `set --destroy-previous` do what they say, and no command prints a
//! value.

use crate::common::{canary, Storage};
use crate::workload::{assert_no_values, eventually, read, run_with_stdin, Background, Env};
use serde_json::Value;
use std::path::Path;

fn cli(env: &Env, args: &[&str], stdin: &[u8], printed: &mut String) -> (bool, String) {
    let out = run_with_stdin(
        args,
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
        stdin,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    printed.push_str(&stdout);
    printed.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

fn json(env: &Env, args: &[&str], printed: &mut String) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (ok, stdout) = cli(env, &all, b"", printed);
    assert!(ok, "{args:?} failed");
    serde_json::from_str(&stdout).unwrap()
}

fn holds(dir: &Path, value: &str) -> bool {
    read(&dir.join("db-url")).as_deref() == Some(value.as_bytes())
}

async fn recover_a_secret_and_see_who_holds_it(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let key = env.read_key(&team, None).await;
    let (v1, v2, v3) = (canary("v1"), canary("v2"), canary("v3"));
    env.put("db-url", &v1).await;
    env.put("db-url", &v2).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    let mut agent = Background::agent(
        &env.url,
        &key,
        &dir,
        &["--instance-id", "edge-1"],
        &tmp.path().join("agent.log"),
    );
    eventually("the agent holds version 2", || holds(&dir, &v2));
    let mut printed = String::new();

    // The version listing names the agent beside version 2 (written about
    // once a second).
    eventually("the agent shows as a consumer of version 2", || {
        let v = json(&env, &["secrets", "versions", "db-url"], &mut printed);
        v["versions"][0]["consumers"][0]["instance"] == "edge-1"
    });
    let (ok, table) = cli(&env, &["secrets", "versions", "db-url"], b"", &mut printed);
    assert!(ok);
    assert!(table.starts_with("VERSION"), "{table}");

    // Restore version 1: the agent's file gets the old bytes.
    let (ok, out) = cli(
        &env,
        &["secrets", "restore", "db-url", "--version", "1"],
        b"",
        &mut printed,
    );
    assert!(ok && out.contains("db-url"), "{out}");
    eventually("the agent holds the restored value", || holds(&dir, &v1));
    eventually("the consumers view shows it on version 3", || {
        let (_, out) = cli(&env, &["secrets", "consumers", "db-url"], b"", &mut printed);
        out.starts_with("1 consumer: 1 on version 3, last seen ")
    });

    // Nobody holds version 2 now: it can be destroyed. The current one cannot.
    let (ok, _) = cli(
        &env,
        &["secrets", "destroy", "db-url", "--version", "2"],
        b"",
        &mut printed,
    );
    assert!(ok);
    let (ok, _) = cli(
        &env,
        &["secrets", "destroy", "db-url", "--version", "3"],
        b"",
        &mut printed,
    );
    assert!(!ok);

    // A rotation that destroys every earlier value.
    let (ok, _) = cli(
        &env,
        &["secrets", "set", "db-url", "--destroy-previous"],
        v3.as_bytes(),
        &mut printed,
    );
    assert!(ok);
    eventually("the agent holds the rotated value", || holds(&dir, &v3));
    let v = json(&env, &["secrets", "versions", "db-url"], &mut printed);
    let destroyed: Vec<bool> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["destroyed"].as_bool().unwrap())
        .collect();
    assert_eq!(destroyed, vec![false, true, true, true]);

    // Deleted, listed, undeleted: the agent's file goes and comes back.
    env.delete("db-url").await;
    eventually("the agent removed the file", || {
        !dir.join("db-url").exists()
    });
    let deleted = json(&env, &["secrets", "deleted"], &mut printed);
    assert_eq!(deleted["deleted_secrets"][0]["name"], "db-url");
    let (ok, _) = cli(&env, &["secrets", "undelete", "db-url"], b"", &mut printed);
    assert!(ok);
    eventually("the agent holds the undeleted value", || holds(&dir, &v3));

    assert_eq!(agent.terminate().code(), Some(0));
    assert_no_values(&printed, &[&v1, &v2, &v3]);
    assert_no_values(&agent.log_text(), &[&v1, &v2, &v3]);
}

/// Issue 25, stumble 3, as a new user met it: six `tessera run -- env`
/// calls that had exited blocked `secrets destroy`, whose refusal said
/// `force=true`. One-shot runs are listed as such, with a warning, and do
/// not block; a consumer that does not say what it is still blocks, and the
/// CLI's refusals name its own flags.
async fn one_shot_runs_never_block_destroy_and_refusals_name_flags(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let key = env.read_key(&team, None).await;
    let (v1, v2, v3) = (canary("v1"), canary("v2"), canary("v3"));
    env.put("db-url", &v1).await;
    let run_env = [("TESSERA_URL", env.url.as_str()), ("TESSERA_API_KEY", &key)];
    for _ in 0..6 {
        let out = run_with_stdin(&["run", "--", "env"], &run_env, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.put("db-url", &v2).await;
    let mut printed = String::new();

    // Listed as one-shot, with a warning (the view is written about once a
    // second).
    eventually("six one-shot consumers", || {
        let v = json(&env, &["secrets", "consumers", "db-url"], &mut printed);
        v["consumers"].as_array().map_or(0, Vec::len) == 6
    });
    let out = run_with_stdin(
        &["secrets", "consumers", "db-url"],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
        b"",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        stdout.starts_with("6 consumers (one-shot runs): 6 on version 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("KIND") && stdout.contains("one-shot"),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning: 6 of these are one-shot runs"),
        "{stderr}"
    );

    // They do not block destroying version 1; the CLI passes the warning on.
    let out = run_with_stdin(
        &["secrets", "destroy", "db-url", "--version", "1"],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: 6 one-shot runs received version 1"),
        "{stderr}"
    );

    // A client that does not say what it is (here curl-like) holds version
    // 2 and blocks; the refusal names --force, not the API's force=true.
    let r = env
        .http
        .get(format!("{}/runtime/v1/secrets", env.url))
        .bearer_auth(&key)
        .header("X-Tessera-Agent", "edge")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.put("db-url", &v3).await;
    let destroy = |version: &str| {
        let out = run_with_stdin(
            &["secrets", "destroy", "db-url", "--version", version],
            &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
            b"",
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = destroy("2");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("held by 1 consumer") && stderr.contains("with --force to go ahead"),
        "{stderr}"
    );
    assert!(!stderr.contains("force=true"), "{stderr}");
    // The current version: the way out is a CLI command, not an API field.
    let (ok, stderr) = destroy("3");
    assert!(!ok);
    assert!(
        stderr.contains("(tessera secrets set db-url --destroy-previous)"),
        "{stderr}"
    );

    // Team deletion and key creation relay the server's refusals in CLI
    // terms too.
    let other = env.create_team("busy").await;
    env.put_in(&other, "keep", "k").await;
    let admin = |args: &[&str]| {
        let out = run_with_stdin(
            args,
            &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
            b"",
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = admin(&["teams", "delete", &other]);
    assert!(!ok && stderr.contains("pass --cascade"), "{stderr}");
    assert!(!stderr.contains("cascade=true"), "{stderr}");
    let (ok, stderr) = admin(&[
        "keys",
        "create",
        "--type",
        "PERSONAL",
        "--name",
        "k",
        "--model-id",
        "m1",
    ]);
    assert!(
        !ok && stderr.contains("--model-id is only allowed"),
        "{stderr}"
    );
    let (ok, stderr) = admin(&[
        "keys",
        "create",
        "--type",
        "WORKSPACE_MANAGE_API_KEYS",
        "--name",
        "k",
        "--team",
        &other,
    ]);
    assert!(
        !ok && stderr.contains("create them without --team"),
        "{stderr}"
    );
    assert_no_values(&printed, &[&v1, &v2, &v3]);
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    recover_a_secret_and_see_who_holds_it,
    one_shot_runs_never_block_destroy_and_refusals_name_flags,
);
