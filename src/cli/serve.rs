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
    let (router, state) = crate::app::build_with(service, args.net.throttle_settings());
    crate::net::shutdown::cancel_on_signal(state.shutdown.clone());
    crate::net::serve(
        listener,
        router,
        args.net.net_config(),
        state.shutdown.clone(),
    )
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
