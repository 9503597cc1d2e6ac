//! Property tests of every route against Tessera's own OpenAPI document:
//! schemathesis generates valid and invalid requests (bodies, paths, query
//! strings, headers) and fails on any 5xx or on a response whose status or
//! content type the document does not list.

use crate::common::Storage;
use std::process::Command;

async fn no_generated_request_gets_a_server_error(storage: Storage) {
    let Ok(schemathesis) = std::env::var("TESSERA_SCHEMATHESIS") else {
        assert!(
            std::env::var("CI").is_err(),
            "TESSERA_SCHEMATHESIS is not set under CI: run the tests with scripts/test"
        );
        crate::common::announce_skip("fuzz", "TESSERA_SCHEMATHESIS is not set");
        return;
    };
    let data = storage.dir.path().join("fuzz");
    let (server, key) = storage.serve(&data);
    let out = Command::new(schemathesis)
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["--url", &server.url])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "20261126"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server
            .log_text()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("panic"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let log = server.log_text();
    assert!(!log.contains("panic"), "the server panicked:\n{log}");
}

crate::on_both_engines!(crate::common::Storage::new => no_generated_request_gets_a_server_error);
