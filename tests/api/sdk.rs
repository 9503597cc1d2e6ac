//! The official Baseten Python SDK against the real binary.
//!
//! The SDK lives in a virtualenv that the test command (`scripts/test`)
//! creates; its interpreter is passed as `TESSERA_SDK_PYTHON`. Without it the
//! test says it was skipped, except under CI, where that is a failure.

use crate::common::Storage;
use std::process::Command;

fn sdk_python() -> Option<String> {
    match std::env::var("TESSERA_SDK_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "TESSERA_SDK_PYTHON is not set under CI: run the tests with scripts/test"
            );
            None
        }
    }
}

async fn baseten_python_sdk_round_trip(storage: Storage) {
    let Some(python) = sdk_python() else {
        crate::common::announce_skip(
            "sdk::baseten_python_sdk_round_trip",
            "TESSERA_SDK_PYTHON is not set",
        );
        return;
    };
    let data = storage.dir.path().join("sdk");
    let (server, key) = storage.serve(&data);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_compat.py");
    let out = Command::new(python)
        .arg(script)
        .env("TESSERA_URL", &server.url)
        .env("TESSERA_API_KEY", &key)
        .env("TESSERA_SDK_KEYS", "1")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK compatibility failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

crate::on_both_engines!(crate::common::Storage::new => baseten_python_sdk_round_trip);
