//! What the results were measured on: machine, kernel, server versions and
//! the commit of the server under test.

use crate::config::RunArgs;
use crate::process::output;
use crate::report::Environment;
use std::path::Path;

/// A command's output, or "unknown": the environment is informational.
async fn text_of(program: &Path, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    output(&program.display().to_string(), &mut cmd)
        .await
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn environment(args: &RunArgs, open_files_limit: Option<u64>) -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let git = Path::new("git");
    let commit = text_of(git, &["rev-parse", "--short", "HEAD"]).await;
    // The server may be under development: say when it is not a clean commit.
    let dirty = text_of(git, &["status", "--porcelain", "--", "src", "Cargo.toml"]).await;
    Environment {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        tessera_version: text_of(&args.tessera, &["--version"]).await,
        tessera_commit: if dirty.is_empty() || dirty == "unknown" {
            commit
        } else {
            format!("{commit} + uncommitted changes")
        },
        open_files_limit,
        openbao_version: match &args.bao {
            Some(bao) => text_of(bao, &["version"]).await,
            None => "not run".into(),
        },
    }
}
