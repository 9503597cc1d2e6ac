//! The operator CLI against a running server: a team, a user, a membership
//! and a team key, in text and JSON output.

use crate::common::{run_cli, Storage};
use serde_json::Value;

fn cli(url: &str, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = run_cli(args, &[("TESSERA_URL", url), ("TESSERA_API_KEY", key)]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(url: &str, key: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (ok, stdout, stderr) = cli(url, key, &all);
    assert!(ok, "{args:?}: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed non-JSON ({e}): {stdout}"))
}

async fn operator_creates_team_user_membership_and_key(storage: Storage) {
    let data = storage.dir.path().join("ops");
    let (server, admin) = storage.serve(&data);
    let url = server.url.clone();

    let team = json(&url, &admin, &["teams", "create", "ml"]);
    let team_id = team["id"].as_str().unwrap();
    let user = json(
        &url,
        &admin,
        &["users", "create", "ana@example.com", "--name", "Ana"],
    );
    let user_id = user["user_id"].as_str().unwrap();
    json(
        &url,
        &admin,
        &["members", "add", team_id, user_id, "--role", "ADMIN"],
    );
    let members = json(&url, &admin, &["members", "list", team_id]);
    assert_eq!(members["members"][0]["role"], "ADMIN");
    // The text output shows the team role just set (Ana's organization role
    // is MEMBER; showing that made the command look failed).
    let (ok, stdout, stderr) = cli(
        &url,
        &admin,
        &["members", "add", team_id, user_id, "--role", "ADMIN"],
    );
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let role = header
        .iter()
        .position(|c| *c == "ROLE")
        .expect("a ROLE column");
    assert_eq!(row[role], "ADMIN", "{stdout}");
    assert_eq!(user["role"], "MEMBER");

    // Text output: a created key is printed alone on one line.
    let (ok, stdout, stderr) = cli(
        &url,
        &admin,
        &[
            "keys",
            "create",
            "--type",
            "WORKSPACE_MANAGE_ALL",
            "--team",
            team_id,
            "--name",
            "ci",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
    let team_key = stdout.trim().to_owned();
    let (ok, stdout, _) = cli(&url, &team_key, &["teams", "list"]);
    assert!(ok);
    assert!(
        stdout.starts_with("ID") && stdout.contains("ml"),
        "{stdout}"
    );

    let (ok, user_key, _) = cli(&url, &admin, &["keys", "mint", user_id]);
    assert!(ok);
    let listed = json(&url, user_key.trim(), &["keys", "list"]);
    let prefixes: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["prefix"].as_str().unwrap())
        .collect();
    assert!(
        prefixes.contains(&team_key.split('.').next().unwrap()),
        "the team admin sees the team's key"
    );

    let users = json(&url, &admin, &["users", "list"]);
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
    let prefix = team_key.split('.').next().unwrap();
    json(&url, &admin, &["keys", "revoke", prefix]);
    let (ok, _, stderr) = cli(&url, &team_key, &["teams", "list"]);
    assert!(!ok && stderr.contains("UNAUTHORIZED"), "{stderr}");
    // Errors carry the server's code and message, and exit non-zero.
    let (ok, _, stderr) = cli(&url, &admin, &["teams", "delete", "nosuchteam"]);
    assert!(!ok && stderr.contains("NOT_FOUND"), "{stderr}");
    json(&url, &admin, &["teams", "rename", team_id, "ml-platform"]);
    json(&url, &admin, &["teams", "delete", team_id, "--cascade"]);
    json(&url, &admin, &["users", "delete", user_id]);
    let (ok, _, stderr) = cli(&url, "", &["teams", "list"]);
    assert!(!ok && stderr.contains("TESSERA_API_KEY"), "{stderr}");
}

/// `--output id` prints what the next command takes, one per line, so a
/// script (and the README) captures ids instead of copying them by hand.
async fn output_id_prints_what_the_next_command_takes(storage: Storage) {
    let data = storage.dir.path().join("ids");
    let (server, admin) = storage.serve(&data);
    let url = server.url.clone();
    let id = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--output", "id"]);
        let (ok, stdout, stderr) = cli(&url, &admin, &all);
        assert!(ok, "{args:?}: {stderr}");
        stdout
    };
    let team = id(&["teams", "create", "ml"]);
    let team = team.trim_end_matches('\n');
    assert!(
        !team.is_empty() && !team.contains(char::is_whitespace),
        "{team:?}"
    );
    let team_json = json(&url, &admin, &["teams", "list"]);
    let teams: Vec<&str> = team_json["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(teams.contains(&team), "{teams:?}");
    // A list: one id per line, no header.
    let listed = id(&["teams", "list"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    let mut expected = teams.clone();
    expected.sort();
    assert_eq!(listed, expected);

    let user = id(&["users", "create", "ana@example.com"]);
    let user = user.trim_end_matches('\n');
    id(&["members", "add", team, user, "--role", "ADMIN"]);
    let members = json(&url, &admin, &["members", "list", team]);
    assert_eq!(members["members"][0]["user_id"], user);

    // A new key is printed whole (it is shown only once); its prefix is
    // what `keys list --output id` shows and `keys revoke` takes.
    let key = id(&[
        "keys",
        "create",
        "--type",
        "WORKSPACE_MANAGE_ALL",
        "--team",
        team,
    ]);
    let key = key.trim_end_matches('\n');
    let (prefix, secret) = key.split_once('.').expect("a whole key");
    assert!(!secret.is_empty());
    assert!(id(&["keys", "list"]).lines().any(|l| l == prefix));
    assert_eq!(id(&["keys", "revoke", prefix]).trim(), prefix);

    let secret_name = {
        let out = std::process::Command::new(crate::common::BIN)
            .args(["secrets", "set", "hf-token", "--output", "id"])
            .env("TESSERA_URL", &url)
            .env("TESSERA_API_KEY", &admin)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"v")?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(secret_name, "hf-token\n");
}

/// Issue 25, stumbles 5 and 2: `keys create --secret-name` narrows a read
/// key (it needed curl), and `secrets versions` shows who wrote each
/// version in its table (it showed only in `--output json`).
async fn narrowed_keys_and_version_writers_from_the_cli(storage: Storage) {
    let data = storage.dir.path().join("narrow");
    let (server, admin) = storage.serve(&data);
    let url = server.url.clone();
    let http = reqwest::Client::new();
    for (name, value) in [("hf-token", "v1"), ("db-url", "v1"), ("hf-token", "v2")] {
        let r = http
            .post(format!("{url}/v1/secrets"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": name, "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let teams = json(&url, &admin, &["teams", "list"]);
    let team = teams["teams"][0]["id"].as_str().unwrap().to_owned();
    let (ok, stdout, stderr) = cli(
        &url,
        &admin,
        &[
            "keys",
            "create",
            "--type",
            "WORKSPACE_READ_SECRETS",
            "--team",
            &team,
            "--secret-name",
            "hf_token",
        ],
    );
    assert!(ok, "{stderr}");
    let reader = stdout.trim().to_owned();
    let fetched: Value = http
        .get(format!("{url}/runtime/v1/secrets"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = fetched["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["hf-token"], "{fetched}");

    // Who wrote each version: the admin's email (or id) and key prefix.
    let me: Value = http
        .get(format!("{url}/v1/users/me"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let who = me["email"]
        .as_str()
        .or(me["user_id"].as_str())
        .unwrap()
        .to_owned();
    let prefix = admin.split('.').next().unwrap();
    let (ok, table, stderr) = cli(&url, &admin, &["secrets", "versions", "hf-token"]);
    assert!(ok, "{stderr}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().contains("WRITTEN_BY"), "{table}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in rows {
        assert!(row.contains(&format!("{who} (key {prefix})")), "{table}");
    }
}

/// Issue 24, finding 7 from the CLI: a demotion that would leave keys behind
/// is refused naming the keys and the CLI's flags; `--transfer-keys-to` and
/// `--revoke-keys` say what to do with them.
async fn the_cli_says_what_to_do_with_keys_a_change_leaves_behind(storage: Storage) {
    let data = storage.dir.path().join("handover");
    let (server, admin) = storage.serve(&data);
    let url = server.url.clone();
    let team = json(&url, &admin, &["teams", "create", "ml"]);
    let team = team["id"].as_str().unwrap().to_owned();
    let user = |email: &str| {
        let u = json(&url, &admin, &["users", "create", email]);
        let id = u["user_id"].as_str().unwrap().to_owned();
        json(
            &url,
            &admin,
            &["members", "add", &team, &id, "--role", "ADMIN"],
        );
        id
    };
    let (ana, bob) = (user("ana@example.com"), user("bob@example.com"));
    let (ok, ana_key, _) = cli(&url, &admin, &["keys", "mint", &ana]);
    assert!(ok);
    let (ok, key, stderr) = cli(
        &url,
        ana_key.trim(),
        &[
            "keys",
            "create",
            "--type",
            "WORKSPACE_MANAGE_ALL",
            "--team",
            &team,
        ],
    );
    assert!(ok, "{stderr}");
    let prefix = key.split('.').next().unwrap().to_owned();

    let (ok, _, stderr) = cli(
        &url,
        &admin,
        &["members", "add", &team, &ana, "--role", "MEMBER"],
    );
    assert!(!ok);
    for needed in [
        "CONFLICT",
        prefix.as_str(),
        "--revoke-keys",
        "--transfer-keys-to",
    ] {
        assert!(stderr.contains(needed), "no {needed:?} in: {stderr}");
    }
    assert!(
        !stderr.contains("revoke_keys=true"),
        "API terms in a CLI message: {stderr}"
    );
    let args = [
        "members",
        "add",
        &team,
        &ana,
        "--role",
        "MEMBER",
        "--transfer-keys-to",
        &bob,
    ];
    json(&url, &admin, &args);
    let (ok, _, _) = cli(&url, key.trim(), &["teams", "list"]);
    assert!(ok, "the key works, answered for by bob");
    let (ok, _, stderr) = cli(&url, &admin, &["users", "delete", &bob]);
    assert!(!ok && stderr.contains(&prefix), "{stderr}");
    json(&url, &admin, &["users", "delete", &bob, "--revoke-keys"]);
    let (ok, _, stderr) = cli(&url, key.trim(), &["teams", "list"]);
    assert!(!ok && stderr.contains("UNAUTHORIZED"), "{stderr}");
}

crate::on_both_engines!(
    crate::common::Storage::new =>
    operator_creates_team_user_membership_and_key,
    output_id_prints_what_the_next_command_takes,
    narrowed_keys_and_version_writers_from_the_cli,
    the_cli_says_what_to_do_with_keys_a_change_leaves_behind
);
