//! What runs beside a workload: `tessera agent` (keeps a directory equal to
//! a workload key's secrets) and `tessera run` (runs a command with them in
//! its environment), with their `status`, and the runtime API client they
//! share. The `tessera-workload` binary is this crate alone; the full
//! `tessera` binary dispatches `agent` and `run` to the same code.
//!
//! Files: `runtime_client` (requests, what the client holds, failures
//! classified), `key` (the workload key), `http` (the HTTP client and its
//! trust), `link` and `backoff` (outages and retries), `signals`, `health`
//! (the status file).
//!
//! This crate depends on `tessera-wire` and `tessera-core` only: no
//! database driver, no server code (CI checks the built binary).

pub mod agent;
pub mod backoff;
pub mod health;
pub mod http;
pub mod key;
pub mod link;
pub mod run;
pub mod runtime_client;
pub mod signals;

pub(crate) use tessera_core::domain;

/// An exit status a command chose (`tessera run --watch` exits with its
/// child's), with an optional message for standard error.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// The process's exit status for a command's result, with the message on
/// standard error after `program: ` (both binaries end this way).
pub fn exit_status(program: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => {
                if let Some(m) = &exit.message {
                    eprintln!("{program}: {m}");
                }
                std::process::ExitCode::from(exit.code)
            }
            None => {
                eprintln!("{program}: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
