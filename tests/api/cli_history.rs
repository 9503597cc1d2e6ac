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

crate::storage_tests!(recover_a_secret_and_see_who_holds_it);
