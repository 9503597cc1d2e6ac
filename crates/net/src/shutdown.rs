//! SIGTERM and SIGINT start a graceful shutdown by cancelling the token the
//! server (and anything else that must answer early, such as long-poll
//! waiters) watches.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT. The handlers are
/// installed before this returns (not in the spawned task), so a signal sent
/// as soon as the server says it is listening is never met by the default
/// action, which would kill the process without a graceful exit.
pub fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        let (term, ctrl_c) = (
            async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            },
            async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            },
        );
        #[cfg(not(unix))]
        let (term, ctrl_c) = (std::future::pending::<()>(), async {
            let _ = tokio::signal::ctrl_c().await;
        });
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
            _ = token.cancelled() => return,
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
        token.cancel();
    });
}
