//! The `serve` flags of the network layer, each with its `TESSERA_*`
//! environment equivalent.

use super::tls::TlsFiles;
use super::{NetConfig, TrustedProxies};
use crate::api::throttle::{Rate, RateTable, ThrottleSettings};
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

    /// Request rate per API key, by key type: `TYPE=RATE,...` with RATE as
    /// N/s, N/min or N/h, `*` for every other type, e.g.
    /// `PERSONAL=50/s,*=200/s`; `off` for none. The default limits read
    /// keys only (a long poll that waits does not count); a table given
    /// here replaces it.
    #[arg(long, env = "TESSERA_RATE_LIMIT", default_value = crate::api::throttle::DEFAULT_KEY_RATES, value_parser = parse_rate_table)]
    pub rate_limit: RateTable,

    /// Failed authentications allowed per client address (N/s, N/min or
    /// N/h; also the burst) before they are answered 429; `off` to never
    /// throttle. Valid keys are never throttled by it.
    #[arg(long, env = "TESSERA_AUTH_FAILURE_LIMIT", default_value = crate::api::throttle::DEFAULT_AUTH_FAILURE_BUDGET, value_parser = parse_budget)]
    pub auth_failure_limit: FailureBudget,
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

    pub fn throttle_settings(&self) -> ThrottleSettings {
        ThrottleSettings {
            auth_failure_budget: self.auth_failure_limit.0,
            key_rates: self.rate_limit.clone(),
        }
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit (use ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse()
}

fn parse_rate_table(s: &str) -> Result<RateTable, String> {
    s.parse()
}

/// A rate, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct FailureBudget(pub Option<Rate>);

fn parse_budget(s: &str) -> Result<FailureBudget, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        Ok(FailureBudget(None))
    } else {
        s.parse().map(|r| FailureBudget(Some(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "0s", "ten", "5d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
