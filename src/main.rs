use clap::Parser;

// glibc's allocator spent ~13% of the server's CPU under write load, much of it
// in frees of buffers allocated on another thread (request workers allocate,
// the SQLite writer frees). mimalloc handles that pattern far better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tessera::cli::{run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tessera::telemetry::init_logging();
    tessera::telemetry::install_panic_hook();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<tessera::cli::Exit>() {
            Some(exit) => {
                if let Some(m) = &exit.message {
                    eprintln!("tessera: {m}");
                }
                std::process::ExitCode::from(exit.code)
            }
            None => {
                eprintln!("tessera: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
