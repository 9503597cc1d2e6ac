//! A small client for operators' commands against a running server.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// A table.
    Text,
    /// The server's JSON answer.
    Json,
    /// Only the identifier the next command takes (a team's or user's id,
    /// a key's prefix, a secret's name), one per line, for
    /// `team=$(tessera teams create ml --output id)`. A new key is printed
    /// whole, as in text: it is shown only once.
    Id,
}

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Base URL of the Tessera server.
    #[arg(
        long,
        env = "TESSERA_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub url: String,

    /// API key (an org admin's for most commands). Prefer the environment
    /// variable: a flag shows in the process list.
    #[arg(long, env = "TESSERA_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,

    /// A PEM file of CA certificates to trust for an https:// URL, besides
    /// the system's trust store (server certificates are always verified).
    #[arg(long, env = "TESSERA_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// The HTTP client every command that talks to a server uses (operator
/// commands here; the agent and `run` too). HTTPS servers are verified
/// against the system's trust store (read by `rustls-native-certs`, which
/// also honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus the CA certificates
/// in `ca_file`. There is deliberately no way to skip verification.
///
/// reqwest is built without roots of its own (`rustls-tls-manual-roots`):
/// the trust this function sets up is the only trust there is.
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    http_client_with(ca_file, Some(std::time::Duration::from_secs(30)))
}

/// [`http_client`] with a chosen overall timeout per request (`None` for
/// long polls, which bound each request themselves).
pub fn http_client_with(
    ca_file: Option<&Path>,
    timeout: Option<std::time::Duration>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder =
        reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    let native = rustls_native_certs::load_native_certs();
    let mut roots = 0usize;
    for der in native.certs {
        // A system certificate reqwest cannot use is skipped, as curl does.
        if let Ok(cert) = reqwest::Certificate::from_der(der.as_ref()) {
            builder = builder.add_root_certificate(cert);
            roots += 1;
        }
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("no PEM certificate in the CA file {}", path.display()))?;
        if certs.is_empty() {
            bail!("no PEM certificate in the CA file {}", path.display());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
            roots += 1;
        }
    }
    if roots == 0 {
        tracing::warn!(
            "no trusted CA certificates (empty system store and no --ca-file): \
             https:// servers cannot be verified"
        );
    }
    Ok(builder.build()?)
}

/// A request the server answered with an error: its status, the line
/// printed for it, and the JSON body (for commands that explain it in their
/// own terms).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub message: String,
    pub body: Value,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// What to do about a TLS failure whose cause the error chain names only
/// by rustls's identifier.
pub fn tls_hint(chain: &str) -> Option<&'static str> {
    if chain.contains("CaUsedAsEndEntity") {
        // `openssl req -x509` makes a CA certificate (basicConstraints
        // CA:TRUE); TLS clients refuse one as a server's own certificate,
        // even when it is the very certificate they were told to trust.
        return Some(
            "The server presents a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` \
             makes by default) as its own: clients refuse that even with --ca-file. Serve a leaf \
             certificate instead: either one made with `-addext basicConstraints=critical,CA:FALSE` \
             (and trust that file with --ca-file), or a CA that signs a leaf (serve the leaf, trust the \
             CA with --ca-file). See docs/operations.md, TLS",
        );
    }
    None
}

pub struct Remote {
    http: reqwest::Client,
    base: String,
    key: String,
    pub output: Output,
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> anyhow::Result<Self> {
        let key = args
            .api_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .context("no API key: set TESSERA_API_KEY")?;
        Ok(Self {
            http: http_client(args.ca_file.as_deref())?,
            base: args.url.trim_end_matches('/').to_owned(),
            key: key.trim().to_owned(),
            output: args.output,
        })
    }

    /// Sends a request; a non-200 answer becomes an error with the server's
    /// code and message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_as(method, path, body, &[]).await
    }

    /// [`Remote::call`] for a command that sets API parameters from its
    /// flags: the server words its messages for API callers ("pass
    /// force=true"), so each `(API wording, CLI wording)` pair is replaced
    /// in a refusal's message ("pass --force"). The wordings are whole
    /// phrases, not bare parameter names, so that a secret or key name that
    /// happens to match is never rewritten.
    pub async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        cli_words: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            // reqwest's top-level message hides the TLS reason; show the chain.
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            let hint = tls_hint(&chain)
                .map(|h| format!(". {h}"))
                .unwrap_or_default();
            anyhow::anyhow!("cannot reach {}: {chain}{hint}", self.base)
        })?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = value["code"].as_str().unwrap_or("ERROR");
            let mut message = value["message"]
                .as_str()
                .unwrap_or(text.as_str())
                .to_owned();
            for (api, cli) in cli_words {
                message = message.replace(api, cli);
            }
            return Err(Refused {
                status: status.as_u16(),
                message: format!("{code} ({}): {message}", status.as_u16()),
                body: value,
            }
            .into());
        }
        Ok(value)
    }

    /// Prints a response: JSON as is, the chosen fields as a table, or the
    /// first of them (the identifier) alone.
    pub fn print_list(&self, value: &Value, items: &Value, columns: &[&str]) {
        let rows = items.as_array().map(Vec::as_slice).unwrap_or_default();
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => print_table(rows, columns),
            Output::Id => {
                for row in rows {
                    println!("{}", cell(&row[columns.first().copied().unwrap_or("id")]));
                }
            }
        }
    }

    /// Whether output is the text table (not `--output json`).
    pub fn is_text(&self) -> bool {
        matches!(self.output, Output::Text)
    }

    pub fn print_one(&self, value: &Value, columns: &[&str]) {
        self.print_list(value, &Value::Array(vec![value.clone()]), columns)
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) => o
            .get("email")
            .or_else(|| o.get("user_id"))
            .map(cell)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Value], columns: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for r in cells {
        println!("{}", line(r));
    }
}
