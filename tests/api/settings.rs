//! Settings go through the configuration (flags and their `TESSERA_*`
//! variables, parsed by clap): a bad value stops the start with an error
//! naming the setting, instead of being ignored for a default.

use crate::common::{pg_schema_or_skip, run_cli, to_resp, ServerProcess, Storage};
use serde_json::json;

/// A value clap refuses: the binary exits non-zero, naming the flag, before
/// it opens anything.
fn refused(args: &[&str], envs: &[(&str, &str)], flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut all = vec!["serve", "--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_cli(&all, envs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{all:?} started: {stderr}");
    assert!(
        stderr.contains(flag),
        "{all:?}: the error names {flag}: {stderr}"
    );
    assert!(
        !data.exists(),
        "{all:?}: nothing is created before the check"
    );
}

#[test]
fn a_bad_pool_size_is_refused_as_a_flag_or_a_variable() {
    let flag = "--pg-max-connections";
    refused(&[flag, "0"], &[], flag);
    refused(&[flag, "many"], &[], flag);
    // Before it went through clap, the variable's bad values meant 32.
    refused(&[], &[("TESSERA_PG_MAX_CONNECTIONS", "0")], flag);
    refused(&[], &[("TESSERA_PG_MAX_CONNECTIONS", "-5")], flag);
}

/// The pool size reaches the store: one connection serves a node's writes,
/// reads and its change listener's catch-up.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_connection_pool_serves() {
    let test = "settings::a_one_connection_pool_serves";
    let Some(pg) = pg_schema_or_skip(test).await else {
        return;
    };
    let storage = Storage {
        dir: tempfile::tempdir().unwrap(),
        pg: Some(pg),
    };
    let data = storage.dir.path().join("data");
    let mut args = storage.db_args();
    args.extend(["--pg-max-connections".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&data, &args, &[]).expect("server starts");
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let url = format!("http://{}", server.addr());
    let http = reqwest::Client::new();
    for i in 0..5 {
        let resp = to_resp(
            http.post(format!("{url}/v1/secrets"))
                .bearer_auth(key.trim())
                .json(&json!({"name": format!("s{i}"), "value": "v"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        resp.ok();
    }
    let list = to_resp(
        http.get(format!("{url}/v1/secrets"))
            .bearer_auth(key.trim())
            .send()
            .await
            .unwrap(),
    )
    .await
    .ok();
    assert_eq!(list["secrets"].as_array().unwrap().len(), 5, "{list}");
}
