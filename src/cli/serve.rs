use crate::config::ServeArgs;
use crate::service::bootstrap;
use crate::store::StoreError;
use anyhow::Context;
use std::io::Write;
use std::path::Path;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.store.data_dir)
        .with_context(|| format!("creating data directory {}", args.store.data_dir.display()))?;
    let service = crate::app::open_service(&args.store).await?;
    if service.store.organization_count().await? == 0 {
        match bootstrap::create_organization(service.store.as_ref(), "default").await {
            Ok(token) => {
                let path = args.store.data_dir.join("admin.key");
                write_private(&path, token.token())?;
                tracing::info!(path = %path.display(), "initialized a new store; the admin API key is in this file");
            }
            // Another node initialized the shared database first.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let backend = service.store.backend();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, backend, "listening");
    let (router, state) = crate::app::build(service);
    let stopping = state.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Long-polling workloads answer now instead of holding shutdown up.
        stopping.service.begin_shutdown();
    })
    .await?;
    if let Err(e) = state.service.flush_usage().await {
        tracing::warn!(error = %e, "could not record the last API key uses");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Writes the admin key readable only by the owner (0600).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{contents}")?;
    f.sync_all()?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. Graceful shutdown then stops accepting,
/// lets in-flight requests finish (their writes commit before they answer),
/// and the process exits 0.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
