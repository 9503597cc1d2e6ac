use crate::config::{MetricsListen, ServeArgs, StoreArgs};
use crate::datadir::DatabaseLock;
use crate::service::Service;
use crate::store::StoreError;
use anyhow::Context;
use std::net::SocketAddr;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    refuse_unshipped_pruning(&args)?;
    let listener = bind(args.listen).await?;
    let metrics_listener = bind_metrics(args.metrics_listen).await?;
    let Started { service, lock } = start_up(&args.store).await?;
    warn_key_beside_reachable_data(&args.store, listener.local_addr()?);
    let backend = service.backend();
    let (router, state) = crate::app::build_with(service, args.throttle.throttle_settings());
    let exporter = start_checkpoint_export(&args, &state)?;
    let metrics = metrics_listener.map(|l| serve_metrics(l, &state));
    crate::disk_space::spawn_watch(args.store.data_dir.clone(), args.disk_free_warning);
    // Before "listening": whoever waits for that line may signal at once.
    crate::net::shutdown::cancel_on_signal(state.shutdown.clone());
    tracing::info!(addr = %listener.local_addr()?, backend, "listening");
    crate::net::serve(
        listener,
        router,
        args.net.net_config(),
        state.shutdown.clone(),
    )
    .await?;
    if let Err(e) = state.service.identity().flush_usage().await {
        tracing::warn!(error = %e, "could not record the last API key uses");
    }
    if let Err(e) = state.service.flush_consumers().await {
        tracing::warn!(error = %e, "could not record the last deliveries' consumers");
    }
    if let Err(e) = state.service.flush_read_summaries(true).await {
        tracing::warn!(error = %e, "could not record the last counts of repeated reads");
    }
    if let Some((stop, exporter)) = exporter {
        stop.cancel();
        let _ = exporter.await;
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("stopped");
    // The store closes before its lock is released.
    drop(state);
    drop(lock);
    Ok(())
}

/// Refuses to prune the audit log without a checkpoint file: a pruned
/// prefix is proved only by anchors shipped before the events go, and the
/// node must read back what it shipped to know where it may prune.
/// Checked before anything else, so a refused start changes nothing.
fn refuse_unshipped_pruning(args: &ServeArgs) -> anyhow::Result<()> {
    if args.store.audit_retention_days > 0 && args.checkpoints.audit_checkpoint_file.is_none() {
        anyhow::bail!(
            "--audit-retention-days needs --audit-checkpoint-file: pruned audit events are proved \
             only by the signed anchors shipped in that file before they are deleted \
             (add --audit-checkpoint-file PATH, and ship that file where the server cannot \
             rewrite it; or keep the log for ever with --audit-retention-days 0)"
        );
    }
    Ok(())
}

/// The token that stops a task and its handle.
type Stoppable = (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
);

/// Starts exporting signed audit checkpoints (and pruning), if asked to;
/// the token that stops it (after a last export) and its task.
fn start_checkpoint_export(
    args: &ServeArgs,
    state: &std::sync::Arc<crate::api::AppState>,
) -> anyhow::Result<Option<Stoppable>> {
    let public_key = state.service.audit_log().audit_public_key().to_text();
    let export =
        super::checkpoint_export::CheckpointExport::open(&args.checkpoints, &state.service)
            .context("reading back the audit checkpoint file")?;
    let Some(export) = export else {
        tracing::warn!(
            public_key,
            "audit checkpoints are not exported (--audit-checkpoint-file, --audit-checkpoint-stdout): \
             whoever holds both the database and the master key could rewrite the audit log undetected"
        );
        return Ok(None);
    };
    tracing::info!(public_key, "exporting signed audit checkpoints");
    let stop = tokio_util::sync::CancellationToken::new();
    let interval = std::time::Duration::from_secs(args.checkpoints.audit_checkpoint_interval);
    let task = tokio::spawn(super::checkpoint_export::run(
        export,
        std::sync::Arc::downgrade(state),
        interval,
        stop.clone(),
    ));
    Ok(Some((stop, task)))
}

/// Warns when the master key file sits inside the data directory while the
/// server listens beyond this machine: a copy of that directory (a backup,
/// a volume snapshot) is then a copy of every value. On loopback the
/// default layout is the two-command start on a laptop, and stays quiet.
fn warn_key_beside_reachable_data(args: &StoreArgs, addr: SocketAddr) {
    if addr.ip().is_loopback() {
        return;
    }
    let crate::crypto::master_key::MasterKeySource::File { path, .. } = args.master_key_source()
    else {
        return;
    };
    let inside = match (path.canonicalize(), args.data_dir.canonicalize()) {
        (Ok(key), Ok(dir)) => key.starts_with(dir),
        _ => false,
    };
    if inside {
        tracing::warn!(
            path = %path.display(),
            %addr,
            "the master key file is inside the data directory and the server listens beyond this \
             machine: a copy of the data directory is a copy of every value; keep the key apart \
             (--master-key-file elsewhere, or --master-key-command)"
        );
    }
}

/// Binds the listening socket first, before anything touches the data
/// directory: a port already in use leaves no new directory, store or
/// admin key behind.
async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Binds the metrics listener (before anything touches the data directory,
/// like the API's). An address the operator chose must bind; the default's
/// port may be taken (another server on this machine), which only costs
/// the metrics: a warning says so.
async fn bind_metrics(at: MetricsListen) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let MetricsListen::At(addr) = at else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if at.is_default() => {
            tracing::warn!(
                %addr,
                error = %e,
                "metrics are not served: the default metrics address is taken; \
                 choose one with --metrics-listen (or off)"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding the metrics listener {addr}")),
    }
}

/// Serves `GET /metrics` on its own listener until shutdown.
fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: &std::sync::Arc<crate::api::AppState>,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics at /metrics");
    }
    let router = crate::api::metrics_router(state.clone());
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let config = crate::net::NetConfig::default();
        if let Err(e) = crate::net::serve(listener, router, config, shutdown).await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    })
}

/// What start-up hands to the serving code: the service, and the lock on a
/// SQLite database, held until the server stops.
struct Started {
    service: Service,
    lock: Option<DatabaseLock>,
}

/// Locks a SQLite database against a second server, opens the store
/// (refusing a store it cannot write), loads and checks the master key, and
/// initializes an empty store. The data directory is created (0700) only
/// when something goes there: the SQLite database, a generated master key, or
/// the admin key of a new store.
async fn start_up(args: &StoreArgs) -> anyhow::Result<Started> {
    // Every refusal that can be known now, before anything changes.
    let key = super::preflight::check(args).await?;
    let lock = match args.sqlite_path() {
        Some(db) => {
            if args.sqlite_in_data_dir() {
                crate::datadir::ensure_data_dir(&args.data_dir)?;
            } else if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.exists() {
                    crate::datadir::create_private_dir(dir)?;
                }
            }
            Some(crate::datadir::lock_database(&db)?)
        }
        None => None,
    };
    let service = crate::app::open_service_with_key(args, key).await?;
    if service.organization_count().await? == 0 {
        match service.create_organization("default").await {
            Ok(token) => {
                crate::datadir::ensure_data_dir(&args.data_dir)?;
                let path = args.data_dir.join("admin.key");
                crate::datadir::write_private(&path, token.token())?;
                tracing::info!(path = %path.display(), "initialized a new store; the admin API key is in this file");
            }
            // Another node initialized the shared database first.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Started { service, lock })
}
