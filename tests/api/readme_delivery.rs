//! Issue 25, stumbles 1 and 6: the README's delivery example, run as
//! written (the block is read from README.md) against a real server, ends
//! with the value in the file Truss reads. The one change: `/secrets` is a
//! directory of the test's, since a test may not take the machine's
//! `/secrets`.

use crate::common::{canary, Storage, BIN};
use crate::workload::{assert_no_values, Env};
use std::process::Command;

/// The first `sh` block of the README's "Delivering secrets to a workload".
fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Delivering secrets to a workload")
        .nth(1)
        .expect("the README has the section");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("```").next().unwrap().to_owned()
}

async fn readme_delivery_example_works_as_written(storage: Storage) {
    let env = Env::start(storage);
    let block = readme_block();
    assert!(
        block.contains("--dir /secrets "),
        "the example uses Truss's path: {block}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let secrets = work.join("secrets");
    // Where the example expects things: `tessera` on PATH, the admin key in
    // ./tessera-data, the server in TESSERA_URL.
    let bin = work.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("tessera")).unwrap();
    std::fs::create_dir(work.join("tessera-data")).unwrap();
    std::fs::copy(
        env.data.join("admin.key"),
        work.join("tessera-data/admin.key"),
    )
    .unwrap();
    let value = canary("hf");
    let script = format!(
        "set -eu\n{}\n\
         for _ in $(seq 1 400); do [ -f {dir}/hf_token ] && break; sleep 0.05; done\n\
         kill $!\nwait $! || true\n",
        block.replace("/secrets", secrets.to_str().unwrap()),
        dir = secrets.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("TESSERA_URL", &env.url)
        .env("HF_TOKEN", &value)
        .env_remove("TESSERA_API_KEY")
        .env_remove("TESSERA_API_KEY_FILE")
        .env("TESSERA_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read(secrets.join("hf_token")).ok().as_deref(),
        Some(value.as_bytes()),
        "{stderr}"
    );
    assert!(!stderr.contains("can read no secret"), "{stderr}");
    assert_no_values(&stderr, &[&value]);
    assert_no_values(&String::from_utf8_lossy(&out.stdout), &[&value]);
}

crate::on_both_engines!(crate::common::Storage::new => readme_delivery_example_works_as_written);
