//! `tessera secrets set|list|delete` through the real binary: values from
//! standard input and from a file arrive byte for byte (checked through the
//! runtime API), listings in text and JSON, teams, and no value printed.

use crate::common::{canary, Storage};
use crate::workload::{assert_no_values, run_with_stdin, Env};
use serde_json::Value;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn cli(env: &Env, args: &[&str], stdin: &[u8]) -> Out {
    let out = run_with_stdin(
        args,
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", &env.admin)],
        stdin,
    );
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn names(listing: &Value) -> Vec<String> {
    let mut n: Vec<String> = listing["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["team_name"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            )
        })
        .collect();
    n.sort();
    n
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = cli(env, &all, b"");
    assert!(out.ok, "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

async fn secrets_set_list_delete_round_trip(storage: Storage) {
    let env = Env::start(storage);
    let team = env.default_team().await;
    let ml = env.create_team("ml").await;
    let read = env.read_key(&team, None).await;
    let read_ml = env.read_key(&ml, None).await;
    let mut printed = String::new();

    // From a pipe: exact bytes, the trailing newline included.
    let piped = format!("{}\n", canary("piped"));
    let out = cli(&env, &["secrets", "set", "hf-token"], piped.as_bytes());
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("NAME") && out.stdout.contains("hf-token"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("ends with a newline"), "{}", out.stderr);
    printed += &(out.stdout + &out.stderr);
    assert_eq!(env.runtime_value(&read, "hf-token").await, piped);

    // From a file: exact bytes, CR LF and non-ASCII included; into a team.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("value");
    let from_file = format!("multi\r\nline ✓ {}", canary("file"));
    std::fs::write(&file, &from_file).unwrap();
    let out = cli(
        &env,
        &[
            "secrets",
            "set",
            "db.password",
            "--team",
            &ml,
            "--from-file",
            file.to_str().unwrap(),
        ],
        b"ignored",
    );
    assert!(out.ok, "{}", out.stderr);
    printed += &(out.stdout + &out.stderr);
    assert_eq!(env.runtime_value(&read_ml, "db.password").await, from_file);

    // An update through stdin replaces the value.
    let updated = canary("updated");
    let out = cli(&env, &["secrets", "set", "hf_token"], updated.as_bytes());
    assert!(out.ok && !out.stderr.contains("newline"), "{}", out.stderr);
    printed += &(out.stdout + &out.stderr);
    assert_eq!(env.runtime_value(&read, "hf-token").await, updated);

    // Listings: every team, one team; text and JSON.
    // (The listing's order across teams is by team id.)
    let all = json(&env, &["secrets", "list"]);
    let mut all_names = names(&all);
    all_names.sort();
    assert_eq!(
        all_names,
        vec!["default/hf-token".to_owned(), "ml/db.password".to_owned()]
    );
    assert_eq!(
        names(&json(&env, &["secrets", "list", "--team", &ml])),
        vec!["ml/db.password"]
    );
    let out = cli(&env, &["secrets", "list"], b"");
    assert!(out.ok && out.stdout.starts_with("NAME"), "{}", out.stdout);
    printed += &(out.stdout + &out.stderr);

    // Not UTF-8: refused before anything is sent.
    std::fs::write(&file, [0xff, 0xfe, b'x']).unwrap();
    let out = cli(
        &env,
        &[
            "secrets",
            "set",
            "bin",
            "--from-file",
            file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        !out.ok && out.stderr.contains("not UTF-8"),
        "{}",
        out.stderr
    );

    // Delete (any spelling), then again: NOT_FOUND and non-zero.
    assert!(cli(&env, &["secrets", "delete", "hf.token"], b"").ok);
    let out = cli(&env, &["secrets", "delete", "hf-token"], b"");
    assert!(
        !out.ok && out.stderr.contains("NOT_FOUND"),
        "{}",
        out.stderr
    );
    assert!(
        cli(
            &env,
            &["secrets", "delete", "db.password", "--team", &ml],
            b""
        )
        .ok
    );
    assert!(names(&json(&env, &["secrets", "list"])).is_empty());

    assert_no_values(&printed, &[piped.trim_end(), &from_file, &updated]);
}

crate::on_both_engines!(crate::common::Storage::new => secrets_set_list_delete_round_trip);
