//! Hears what other nodes change, through PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Writers call `pg_notify` inside their transactions, so a notification is
//! delivered only once the change has committed (durably: `synchronous_commit`
//! is on). Payloads on [`EVENTS_CHANNEL`]:
//!
//! - `r <team id> <revision>`: a team's revision moved (secret written or deleted);
//! - `i`: keys, users or teams were deleted.
//!
//! The listening connection is a dedicated one. When it is lost (the
//! database restarted, an operator terminated it), the loop reconnects with
//! backoff and, once it listens again, reports [`StoreEvent::Resync`]: a
//! change made while nobody listened is then found by re-reading, never
//! missed.

use super::EVENTS_CHANNEL;
use crate::{EventSink, StoreEvent};
use sqlx::postgres::PgListener;
use std::time::Duration;

const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Listens on its own connection to `url` (outside the request pool, so it
/// never takes a request's slot) until `sink` is closed.
pub fn spawn(url: String, sink: EventSink) {
    tokio::spawn(async move {
        let mut first = true;
        let mut backoff = Duration::from_millis(50);
        loop {
            if sink.is_closed() {
                return;
            }
            let mut listener = match connect(&url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            // The backend's pid, for an operator matching this connection
            // in pg_stat_activity (and for the tests that cut it).
            match sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut listener)
                .await
            {
                Ok(pid) => tracing::info!(pid, "listening for other nodes' changes"),
                Err(e) => {
                    tracing::warn!(error = %e, "listening connection failed at once; retrying");
                    continue;
                }
            }
            if !first {
                tracing::info!("listening for other nodes' changes again; catching up");
                if sink.send(StoreEvent::Resync).is_err() {
                    return;
                }
            }
            first = false;
            // `try_recv` answers `None` when the connection was lost; any
            // error ends this connection too. Either way: reconnect.
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if let Some(event) = parse(n.payload()) {
                            if sink.send(event).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("lost the connection listening for other nodes' changes");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for other nodes' changes failed");
                        break;
                    }
                }
            }
        }
    });
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = tokio::time::timeout(Duration::from_secs(5), PgListener::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    // We reconnect ourselves, so that a reconnection is always followed by a
    // resync.
    listener.eager_reconnect(false);
    // The channel of the schema this connection uses, as writers name it.
    let channel: String = sqlx::query_scalar(concat!("SELECT $1 || ", super::channel_suffix!()))
        .bind(EVENTS_CHANNEL)
        .fetch_one(&mut listener)
        .await?;
    tokio::time::timeout(Duration::from_secs(5), listener.listen(&channel))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    Ok(listener)
}

fn parse(payload: &str) -> Option<StoreEvent> {
    let mut parts = payload.split(' ');
    match parts.next()? {
        "r" => {
            let team_id = parts.next()?.to_owned();
            let revision = parts.next()?.parse().ok()?;
            Some(StoreEvent::Revision { team_id, revision })
        }
        "i" => Some(StoreEvent::IdentityChanged),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(
            parse("r abc 12"),
            Some(StoreEvent::Revision {
                team_id: "abc".into(),
                revision: 12
            })
        );
        assert_eq!(parse("i"), Some(StoreEvent::IdentityChanged));
        assert_eq!(parse("r abc x"), None);
        assert_eq!(parse("zzz"), None);
    }
}
