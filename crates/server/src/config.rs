//! Settings from flags and their `TESSERA_*` environment equivalents.

use crate::crypto::key_command::KeyCommand;
use crate::crypto::master_key::MasterKeySource;
use crate::service::Limits;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Where the data lives and how it is protected.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory: the SQLite database, the default master key file and
    /// admin.key live here.
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
    pub data_dir: PathBuf,

    /// `sqlite://PATH` or `postgres://...`; default: SQLite inside the data directory.
    #[arg(long, env = "TESSERA_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most connections this node opens to PostgreSQL (on demand; closed
    /// after 60 s idle). Ignored for SQLite.
    #[arg(long, env = "TESSERA_PG_MAX_CONNECTIONS", default_value_t = crate::store::DEFAULT_PG_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pg_max_connections: u32,

    /// File holding the 32-byte master key (raw or base64). Default:
    /// `TESSERA_MASTER_KEY` (base64) if set, else `<data-dir>/master.key`,
    /// created on first start.
    #[arg(long, env = "TESSERA_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// A command whose standard output is the master key: 32 raw bytes, or
    /// their base64 text (a trailing newline is trimmed). Split into words
    /// as a shell would, run without one; its output and error text are
    /// never logged.
    #[arg(
        long,
        env = "TESSERA_MASTER_KEY_COMMAND",
        conflicts_with = "master_key_file"
    )]
    pub master_key_command: Option<String>,

    /// Seconds the master key command may run before it is stopped.
    #[arg(long, env = "TESSERA_MASTER_KEY_COMMAND_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub master_key_command_timeout: u64,

    /// Environment variables the master key command receives besides PATH
    /// and HOME (comma-separated names).
    #[arg(long, env = "TESSERA_MASTER_KEY_COMMAND_ENV", value_delimiter = ',')]
    pub master_key_command_env: Vec<String>,

    /// Largest accepted secret value, in bytes.
    #[arg(long, env = "TESSERA_MAX_VALUE_BYTES", default_value_t = crate::domain::secret_value::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,

    #[command(flatten)]
    pub quotas: QuotaArgs,

    #[command(flatten)]
    pub history: HistoryArgs,

    /// Record every change and runtime read in the audit log (`on`), or
    /// not (`off`: only to measure what the log costs).
    #[arg(long, env = "TESSERA_AUDIT_LOG", default_value = "on", value_parser = ["on", "off"])]
    pub audit_log: String,

    /// Days audit events are kept before they are pruned behind a signed
    /// anchor shipped in the checkpoint file first (0 keeps them for ever;
    /// more needs --audit-checkpoint-file).
    #[arg(long, env = "TESSERA_AUDIT_RETENTION_DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36500))]
    pub audit_retention_days: u64,
}

/// How long history is kept (see `service::history`).
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Previous versions kept per secret (0 keeps only the current one).
    #[arg(long, env = "TESSERA_KEEP_VERSIONS", default_value_t = crate::store::DEFAULT_KEEP_VERSIONS, value_parser = clap::value_parser!(i64).range(0..=1000))]
    pub keep_versions: i64,
    /// Days a deleted secret can be undeleted before the purge job removes
    /// it (0 removes it at once).
    #[arg(long, env = "TESSERA_KEEP_DELETED_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(0..=3650))]
    pub keep_deleted_days: u64,
}

impl HistoryArgs {
    pub fn retention(&self) -> crate::service::history::Retention {
        crate::service::history::Retention {
            keep_versions: self.keep_versions,
            keep_deleted: std::time::Duration::from_secs(self.keep_deleted_days * 24 * 3600),
        }
    }
}

/// Quotas: creating one more than these answers 409 QUOTA_EXCEEDED.
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// Secrets per team.
    #[arg(long, env = "TESSERA_MAX_SECRETS_PER_TEAM", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_secrets_per_team: i64,
    /// Teams per organization (the default team included).
    #[arg(long, env = "TESSERA_MAX_TEAMS_PER_ORG", default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_teams_per_org: i64,
    /// Users per organization.
    #[arg(long, env = "TESSERA_MAX_USERS_PER_ORG", default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_users_per_org: i64,
    /// Live personal keys per user.
    #[arg(long, env = "TESSERA_MAX_KEYS_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_keys_per_user: i64,
    /// Live keys per team (and organization-wide keys per organization).
    #[arg(long, env = "TESSERA_MAX_KEYS_PER_TEAM", default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_keys_per_team: i64,
    /// Bytes of one team's current values (the plaintext lengths of every
    /// secret's current version; a full fetch returns them all). Writes that
    /// would grow them past it are refused; reads are always served.
    #[arg(long, env = "TESSERA_MAX_VALUE_BYTES_PER_TEAM", default_value_t = crate::service::DEFAULT_VALUE_BYTES_PER_TEAM, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_value_bytes_per_team: i64,
}

impl QuotaArgs {
    pub fn quotas(&self) -> crate::service::Quotas {
        crate::service::Quotas {
            secrets_per_team: self.max_secrets_per_team,
            teams_per_org: self.max_teams_per_org,
            users_per_org: self.max_users_per_org,
            keys_per_user: self.max_keys_per_user,
            keys_per_team: self.max_keys_per_team,
            value_bytes_per_team: self.max_value_bytes_per_team,
        }
    }
}

impl StoreArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tessera.db").display()))
    }

    /// How the store is opened.
    pub fn open_options(&self) -> crate::store::OpenOptions {
        crate::store::OpenOptions {
            pg_max_connections: self.pg_max_connections,
        }
    }

    /// The SQLite database file, when the store is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        crate::store::sqlite_path(&self.database_url())
    }

    /// Whether the store is the default SQLite database inside the data
    /// directory.
    pub fn sqlite_in_data_dir(&self) -> bool {
        self.database_url.is_none()
    }

    /// The master key's source. The inline key is read from the environment
    /// only (never a flag, which would show in the process list).
    pub fn master_key_source(&self) -> MasterKeySource {
        if let Some(path) = &self.master_key_file {
            return MasterKeySource::File {
                path: path.clone(),
                create: false,
            };
        }
        if let Some(line) = &self.master_key_command {
            return MasterKeySource::Command(KeyCommand {
                line: line.clone(),
                timeout: std::time::Duration::from_secs(self.master_key_command_timeout),
                pass_env: self.master_key_command_env.clone(),
            });
        }
        if let Ok(inline) = std::env::var("TESSERA_MASTER_KEY") {
            if !inline.is_empty() {
                return MasterKeySource::Inline(Zeroizing::new(inline));
            }
        }
        MasterKeySource::File {
            path: self.data_dir.join("master.key"),
            create: true,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_value_bytes: self.max_value_bytes,
            quotas: self.quotas.quotas(),
            history: self.history.retention(),
            audit_log: self.audit_log == "on",
            audit_retention: (self.audit_retention_days > 0)
                .then(|| std::time::Duration::from_secs(self.audit_retention_days * 24 * 3600)),
            delivery_page_bytes: crate::service::delivery_stream::PAGE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Timeouts, connection limits, TLS (see `tessera_net`).
    #[command(flatten)]
    pub net: crate::net::args::NetArgs,

    /// Rate limits per key and per failing client address (see
    /// `crate::api::throttle`).
    #[command(flatten)]
    pub throttle: crate::api::throttle::args::ThrottleArgs,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    /// Where Prometheus metrics (`GET /metrics`) are served: an address of
    /// their own, apart from the API, loopback by default; `off` serves
    /// none. They are not on the API's listener. With the default, a port
    /// already in use is a warning (the server runs without metrics); an
    /// address given here that cannot be bound stops the start.
    #[arg(long, env = "TESSERA_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    pub metrics_listen: MetricsListen,

    /// Warn (log line and the `tessera_data_disk_free_ratio` metric) when
    /// less than this share of the data directory's disk is free: `N%`;
    /// `0%` never warns. A full disk stops every write and delivery.
    #[arg(long, env = "TESSERA_DISK_FREE_WARNING", default_value = crate::disk_space::DEFAULT_FREE_WARNING)]
    pub disk_free_warning: crate::disk_space::FreeShare,
}

/// The metrics listener's default address: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::At)
            .map_err(|_| format!("expected an address such as 127.0.0.1:9464, or off; got {s:?}"))
    }
}

impl MetricsListen {
    /// Whether this is the default address (not chosen by the operator).
    pub fn is_default(&self) -> bool {
        DEFAULT_METRICS_LISTEN.parse().ok() == Some(*self)
    }
}

/// Where signed checkpoints of the audit log's chain heads are exported.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Append a signed checkpoint of each audit chain that changed to this
    /// file (JSON Lines) at every interval, and each pruning anchor before
    /// its events go. Read back at start (the node's record of what it
    /// shipped): keep it, and ship its lines where the server cannot
    /// rewrite them.
    #[arg(long, env = "TESSERA_AUDIT_CHECKPOINT_FILE")]
    pub audit_checkpoint_file: Option<PathBuf>,
    /// Also write them to standard output (for a log shipper; the server's
    /// logs go to standard error).
    #[arg(long, env = "TESSERA_AUDIT_CHECKPOINT_STDOUT")]
    pub audit_checkpoint_stdout: bool,
    /// Seconds between two exports.
    #[arg(long, env = "TESSERA_AUDIT_CHECKPOINT_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub audit_checkpoint_interval: u64,
}

#[cfg(test)]
mod metrics_listen_tests {
    use super::*;

    #[test]
    fn metrics_are_on_loopback_by_default_and_can_be_turned_off() {
        let MetricsListen::At(addr) = DEFAULT_METRICS_LISTEN.parse().unwrap() else {
            panic!("metrics are on by default");
        };
        assert!(addr.ip().is_loopback());
        assert_eq!("off".parse::<MetricsListen>().unwrap(), MetricsListen::Off);
        assert!("nonsense".parse::<MetricsListen>().is_err());
    }
}
