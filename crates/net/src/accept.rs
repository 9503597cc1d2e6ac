//! Accepting connections without spinning on errors.
//!
//! `accept` fails when the process is out of descriptors (EMFILE), the
//! system is (ENFILE), memory is short, or a client gave up during the
//! handshake (ECONNABORTED). Retrying at once would spin a core and flood
//! the log; instead each failure waits, from 10 ms doubling to 1 s, and the
//! log says when accepting starts failing and when it works again, not once
//! per error.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Acceptor {
    /// Consecutive failures, and the next delay.
    failures: u64,
    delay: Option<Duration>,
}

impl Acceptor {
    /// The next connection. Cancel-safe.
    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(accepted) => {
                    if self.failures > 0 {
                        tracing::info!(
                            failed_accepts = self.failures,
                            "accepting connections again"
                        );
                        self.failures = 0;
                        self.delay = None;
                    }
                    return accepted;
                }
                Err(e) => {
                    metrics::counter!("tessera_accept_errors_total").increment(1);
                    if self.failures == 0 {
                        tracing::warn!(
                            error = %e,
                            "accepting connections fails; backing off (10 ms doubling to 1 s) \
                             and logging again only when it recovers"
                        );
                    }
                    self.failures += 1;
                    let delay = self.delay.unwrap_or(FIRST_DELAY);
                    self.delay = Some((delay * 2).min(MAX_DELAY));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
