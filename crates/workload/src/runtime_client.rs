//! The client side of the runtime API (`/runtime/v1/…`), shared by
//! `tessera agent` and `tessera run`: where the key comes from, one fetch of
//! every value (plain or as a long poll), what the client tells the server
//! it holds, and how failures are classified. (How long to wait between
//! attempts: [`super::link`] and [`super::backoff`].)
//!
//! Values are held in [`SecretValue`]s (zeroized on drop, redacted in
//! `Debug`); no error or log line built here contains one.

use super::http::http_client_with;
use crate::domain::consumer_kind::ConsumerKind;
use crate::domain::secret_name::{canonicalize, SecretName};
use crate::domain::secret_value::SecretValue;
use anyhow::{bail, Context};
use clap::Args;
use reqwest::header::{HeaderValue, AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tessera_wire::runtime::{SecretItem, SecretsBody};

pub use crate::key::{load_key, protect_the_key, KEY_VARIABLES};
use zeroize::Zeroizing;

/// The header that identifies a consumer instance on every runtime request.
pub use tessera_wire::runtime::INSTANCE_HEADER;

/// The header in which a client says what it holds (see [`Holds`]).
pub use tessera_wire::runtime::HOLDS_HEADER;

/// What a client tells the server it holds, for the consumers view
/// ("who holds which version").
#[derive(Debug, Clone, Copy)]
pub enum Holds<'a> {
    /// Nothing said: the server counts what it sends as held (`tessera
    /// run`, which hands the values to the command it execs at once).
    AsSent,
    /// Nothing new: the server records only that this client asked.
    Nothing,
    /// Everything the answer with this `ETag` carried, applied in full.
    Revision(&'a HeaderValue),
}

/// The header that says what kind of consumer this is.
pub use tessera_wire::runtime::KIND_HEADER;

/// How long a long poll asks the server to wait (the server allows 60).
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(55);

/// A long poll answered "unchanged" sooner than this was cut short (the
/// server answers its waiters at once when it shuts down): the next one
/// waits a backoff step first rather than spin.
pub const EARLY_ANSWER: Duration = Duration::from_secs(1);

/// Extra time, beyond the wait, before a request counts as lost.
const REQUEST_SLACK: Duration = Duration::from_secs(15);

/// How `tessera agent` and `tessera run` reach the runtime API.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Base URL of the Tessera server.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,

    /// A WORKSPACE_READ_SECRETS key. Prefer --api-key-file (or the
    /// environment variable): a flag shows in the process list.
    #[arg(long, env = "TESSERA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Read the key from this file instead (surrounding whitespace is
    /// ignored). Refused when group or others may access the file. Takes
    /// precedence over --api-key / TESSERA_API_KEY.
    #[arg(long, env = "TESSERA_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Sent as `X-Tessera-Agent` on every request so the server can tell
    /// consumers apart in its "who holds what" view (default: a random id
    /// chosen at start).
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,

    /// A PEM file of CA certificates to trust for an https:// URL, besides
    /// the system's trust store (server certificates are always verified).
    #[arg(long, env = "TESSERA_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// One secret as the runtime API delivers it.
pub struct RuntimeSecret {
    /// The stored spelling.
    pub name: String,
    pub canonical_name: String,
    pub value: SecretValue,
    pub version: i64,
}

impl fmt::Debug for RuntimeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Every secret in the key's scope at one revision of its team.
#[derive(Debug)]
pub struct Snapshot {
    /// The `ETag` to hold for the next long poll.
    pub etag: Option<HeaderValue>,
    pub revision: i64,
    /// Only secrets whose names passed the client-side check (see
    /// [`Snapshot::refused`]).
    pub secrets: Vec<RuntimeSecret>,
    /// Names the server sent that are not safe file or variable names;
    /// their secrets are left out.
    pub refused: Vec<String>,
}

impl Snapshot {
    /// When the key can read no secret at all, a warning that says so
    /// (usually the key was made for another team than the one the
    /// secrets were written to).
    pub fn empty_scope_warning(&self, key_prefix: &str) -> Option<String> {
        if !self.secrets.is_empty() || !self.refused.is_empty() {
            return None;
        }
        Some(format!(
            "the key {key_prefix} can read no secret at all: its team holds none, or none of the \
             names the key is narrowed to. Check that the secrets were written to the team the key \
             was made for (`tessera keys list` shows each key's team; `tessera secrets list` shows \
             each secret's)"
        ))
    }
}

/// The answer to a fetch.
#[derive(Debug)]
pub enum Fetched {
    Changed(Snapshot),
    /// `304`: nothing changed within the wait (or the server is stopping).
    Unchanged,
}

/// Why a fetch failed, by what the caller should do about it.
#[derive(Debug)]
pub enum FetchError {
    /// 401: the key is unknown or revoked.
    Unauthorized(String),
    /// 403: the key may not read values (not a WORKSPACE_READ_SECRETS key).
    Forbidden(String),
    /// Unreachable, timed out, 5xx, 429 or an unreadable answer: worth
    /// retrying later.
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other refusal (400, 404, …): retrying will not help.
    Rejected(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Unauthorized(m) => write!(f, "the server refused the API key: {m}"),
            FetchError::Forbidden(m) => write!(
                f,
                "this API key may not read values (a WORKSPACE_READ_SECRETS key is needed): {m}"
            ),
            FetchError::Unavailable { message, .. } => f.write_str(message),
            FetchError::Rejected(m) => write!(f, "the server refused the request: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A client of the runtime API for one key.
pub struct RuntimeClient {
    http: reqwest::Client,
    base: String,
    authorization: HeaderValue,
    instance: HeaderValue,
    key_prefix: String,
    kind: ConsumerKind,
}

impl RuntimeClient {
    pub fn new(args: &RuntimeArgs) -> anyhow::Result<Self> {
        let key = load_key(args)?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", key.as_str()))
            .map_err(|_| anyhow::anyhow!("the API key cannot be sent in a header"))?;
        authorization.set_sensitive(true);
        let id = match &args.instance_id {
            Some(id) => {
                if !tessera_wire::runtime::valid_instance(id) {
                    bail!("--instance-id must be 1 to 128 visible ASCII characters");
                }
                id.clone()
            }
            None => crate::domain::ids::random_base62(16),
        };
        let instance = HeaderValue::from_str(&id).context("--instance-id")?;
        // The prefix identifies the key in listings and logs (never the
        // secret part).
        let key_prefix = key
            .split('.')
            .next()
            .unwrap_or("")
            .chars()
            .take(16)
            .collect();
        let base = args.url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("invalid server URL {base:?}"))?;
        Ok(Self {
            http: http_client_with(args.ca_file.as_deref(), None)?,
            base,
            authorization,
            instance,
            key_prefix,
            kind: ConsumerKind::Agent,
        })
    }

    /// Says what kind of consumer this is (an agent unless told).
    pub fn with_kind(mut self, kind: ConsumerKind) -> Self {
        self.kind = kind;
        self
    }

    /// The key's prefix (the part shown in key listings).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// This instance's id, as sent in `X-Tessera-Agent`.
    pub fn instance_id(&self) -> &str {
        self.instance.to_str().unwrap_or("-")
    }

    /// Every value in the key's scope. With `held` (the `ETag` of an earlier
    /// answer) this is a long poll of up to `wait`. What is sent counts as
    /// held ([`Holds::AsSent`]).
    pub async fn fetch_all(
        &self,
        held: Option<&HeaderValue>,
        wait: Duration,
    ) -> Result<Fetched, FetchError> {
        self.fetch(held, Holds::AsSent, wait).await
    }

    /// [`Self::fetch_all`], saying what the client holds.
    pub async fn fetch(
        &self,
        held: Option<&HeaderValue>,
        holds: Holds<'_>,
        wait: Duration,
    ) -> Result<Fetched, FetchError> {
        let (url, timeout) = match held {
            Some(_) => (
                format!("{}/runtime/v1/secrets?wait={}", self.base, wait.as_secs()),
                wait + REQUEST_SLACK,
            ),
            None => (format!("{}/runtime/v1/secrets", self.base), REQUEST_SLACK),
        };
        let mut req = self
            .http
            .get(url)
            .timeout(timeout)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(INSTANCE_HEADER, self.instance.clone())
            .header(KIND_HEADER, self.kind.as_str());
        if let Some(etag) = held {
            req = req.header(IF_NONE_MATCH, etag.clone());
        }
        match holds {
            Holds::AsSent => {}
            Holds::Nothing => req = req.header(HOLDS_HEADER, HeaderValue::from_static("none")),
            Holds::Revision(etag) => req = req.header(HOLDS_HEADER, etag.clone()),
        }
        let resp = req.send().await.map_err(|e| unavailable(&self.base, &e))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::Unchanged);
        }
        if status != StatusCode::OK {
            return Err(classify(resp).await);
        }
        let etag = resp.headers().get(ETAG).cloned();
        let body = read_body(resp)
            .await
            .map_err(|e| unavailable(&self.base, &e))?;
        let wire: WireSnapshot =
            serde_json::from_slice(&body).map_err(|e| FetchError::Unavailable {
                // serde_json's message names a line and column, never content.
                message: format!("unreadable answer from {}: {e}", self.base),
                retry_after: None,
            })?;
        Ok(Fetched::Changed(checked(wire, etag)))
    }
}

fn unavailable(base: &str, e: &reqwest::Error) -> FetchError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The source chain (connection refused, …) without the URL's query.
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let hint = super::http::tls_hint(&detail)
        .map(|h| format!(". {h}"))
        .unwrap_or_default();
    let mut message = if detail.is_empty() {
        format!("{base}: {what}")
    } else {
        format!("{base}: {what} ({detail}){hint}")
    };
    if base.starts_with("http://") && not_http(e) {
        message.push_str(
            "; the server did not answer in HTTP: if it now serves HTTPS, use an https:// URL \
             (with --ca-file for a private CA)",
        );
    }
    FetchError::Unavailable {
        message,
        retry_after: None,
    }
}

/// Whether the answer could not be parsed as HTTP at all (what a TLS
/// server's alert looks like to a plain-HTTP client).
fn not_http(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Reads a body into a buffer that is wiped when dropped.
async fn read_body(mut resp: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, reqwest::Error> {
    let hint = resp.content_length().unwrap_or(0).min(16 << 20) as usize;
    let mut body = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > body.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (body.len() + chunk.len()).max(2 * body.capacity()),
            ));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Turns a non-200 answer into an error carrying the server's code and
/// message (error bodies never hold values).
async fn classify(resp: reqwest::Response) -> FetchError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = body["code"].as_str().unwrap_or("ERROR");
    let message = body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    let m = format!("{code} ({}): {message}", status.as_u16());
    match status {
        StatusCode::UNAUTHORIZED => FetchError::Unauthorized(m),
        StatusCode::FORBIDDEN => FetchError::Forbidden(m),
        StatusCode::TOO_MANY_REQUESTS => FetchError::Unavailable {
            message: m,
            retry_after,
        },
        s if s.is_server_error() => FetchError::Unavailable {
            message: m,
            retry_after,
        },
        _ => FetchError::Rejected(m),
    }
}

/// The runtime answer as the wire crate spells it, values held wiped.
type WireSnapshot = SecretsBody<SecretItem<WireValue>>;

struct WireValue(SecretValue);

impl<'de> Deserialize<'de> for WireValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| WireValue(SecretValue::new(s)))
    }
}

/// Keeps only secrets whose name is a valid secret name and whose
/// canonical name is the one that name implies: both become file and
/// variable names.
fn checked(body: WireSnapshot, etag: Option<HeaderValue>) -> Snapshot {
    let mut secrets = Vec::with_capacity(body.secrets.len());
    let mut refused = Vec::new();
    for s in body.secrets {
        let ok = SecretName::parse(&s.name).is_ok() && canonicalize(&s.name) == s.canonical_name;
        if ok {
            secrets.push(RuntimeSecret {
                name: s.name,
                canonical_name: s.canonical_name,
                value: s.value.0,
                version: s.version,
            });
        } else {
            refused.push(s.name);
        }
    }
    // The ETag is the revision; should a proxy drop the header, the
    // revision still makes the next request a long poll.
    let etag = etag.or_else(|| HeaderValue::from_str(&format!("\"{}\"", body.revision)).ok());
    Snapshot {
        etag,
        revision: body.revision,
        secrets,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_left_out() {
        let wire: WireSnapshot = serde_json::from_str(
            r#"{"revision": 3, "secrets": [
                {"name": "hf-token", "canonical_name": "hf_token", "value": "a", "version": 1},
                {"name": "../etc", "canonical_name": "___etc", "value": "b", "version": 1},
                {"name": "ok", "canonical_name": "other", "value": "c", "version": 1},
                {"name": ".hidden", "canonical_name": "_hidden", "value": "d", "version": 1}]}"#,
        )
        .unwrap();
        let s = checked(wire, None);
        assert_eq!(s.revision, 3);
        assert_eq!(s.etag.unwrap(), "\"3\"");
        assert_eq!(s.secrets.len(), 1);
        assert_eq!(s.secrets[0].name, "hf-token");
        assert_eq!(s.refused, vec!["../etc", "ok", ".hidden"]);
    }

    #[test]
    fn debug_never_shows_a_value() {
        let s = RuntimeSecret {
            name: "n".into(),
            canonical_name: "n".into(),
            value: SecretValue::new("canary-value".into()),
            version: 2,
        };
        assert_eq!(format!("{s:?}"), "n@2");
    }
}
