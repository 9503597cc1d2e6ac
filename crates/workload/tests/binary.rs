//! The `tessera-workload` binary as built: `agent` and `run` (with their
//! `status`) answer as `tessera agent` and `tessera run` do, and nothing
//! else is there. (What they do against a server is tested through the full
//! binary in `tests/api`, which runs the same code.)

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly where it cannot go on"
)]

use std::process::Command;

fn workload(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera-workload"))
        .args(args)
        .env_remove("TESSERA_API_KEY")
        .env_remove("TESSERA_API_KEY_FILE")
        .output()
        .unwrap()
}

#[test]
fn only_the_agent_and_run_are_there() {
    let help = String::from_utf8(workload(&["--help"]).stdout).unwrap();
    for sub in ["agent", "run"] {
        assert!(help.contains(&format!("  {sub} ")), "{help}");
    }
    for absent in ["serve", "init", "migrate", "teams", "keys", "audit"] {
        assert!(
            !help.contains(&format!("  {absent} ")),
            "{absent} in: {help}"
        );
    }
    for args in [["agent", "status"], ["run", "status"]] {
        let out = workload(&[args[0], args[1], "--help"]);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

#[test]
fn run_without_a_key_is_refused_by_name() {
    let out = workload(&["run", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("tessera-workload: ") && err.contains("no API key"),
        "{err}"
    );
}
