//! The `serve` flags of the network layer, each with its `TESSERA_*`
//! environment equivalent. (The rate limits are the API's:
//! `tessera_server::api::throttle::args`.)

use super::tls::TlsFiles;
use super::{NetConfig, TrustedProxies};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// A request head (request line and headers) must arrive within this; it
    /// is also how long a keep-alive connection may sit idle between
    /// requests. `10s`, `500ms`, `1m`.
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A handler must answer within this, or the answer is 503 (long-poll
    /// requests under /runtime/ with `wait` are exempt).
    #[arg(long, env = "TESSERA_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On SIGTERM/SIGINT, in-flight requests get this long to finish; then
    /// every connection is closed and the process exits.
    #[arg(long, env = "TESSERA_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Open connections allowed (default: from the open-file limit, which
    /// is raised to its hard limit at start: the limit minus a tenth (at
    /// least 256) kept for files and the database, at most 50,000).
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open connections allowed from one client address (IPv6: one /64).
    /// Default 1,024 (never more than --max-connections).
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,

    /// Reverse proxies whose X-Forwarded-For is believed: comma-separated
    /// IP addresses and CIDR networks.
    #[arg(long, env = "TESSERA_TRUSTED_PROXIES", value_parser = parse_proxies)]
    pub trusted_proxies: Option<TrustedProxies>,

    /// TLS certificate chain (PEM). With --tls-key, the listener serves
    /// HTTPS; SIGHUP reloads both files.
    #[arg(long, env = "TESSERA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TESSERA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl NetArgs {
    pub fn net_config(&self) -> NetConfig {
        NetConfig {
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            trusted_proxies: self.trusted_proxies.clone().unwrap_or_default(),
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
        }
    }
}

pub use tessera_core::duration::parse_duration;

fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse()
}
