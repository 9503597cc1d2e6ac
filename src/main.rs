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
    tessera::workload::exit_status("tessera", run(cli).await)
}
