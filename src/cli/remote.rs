//! A small client for operators' commands against a running server.

use anyhow::Context;
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

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

pub use tessera_workload::http::{http_client, http_client_with, tls_hint};

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

    /// Prints a response read into its wire type: `value` (the JSON as the
    /// server sent it) as is, the rows as a table, or their identifiers.
    pub fn print_rows<R: Row>(&self, value: &Value, rows: &[R]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => print_cells(rows.iter().map(Row::cells).collect(), R::COLUMNS),
            Output::Id => {
                for row in rows {
                    println!("{}", row.cells().into_iter().next().unwrap_or_default());
                }
            }
        }
    }

    pub fn print_row<R: Row>(&self, value: &Value, row: &R) {
        self.print_rows(value, std::slice::from_ref(row))
    }
}

/// Reads a successful response into its wire type.
pub fn read<T: serde::de::DeserializeOwned>(value: &Value) -> anyhow::Result<T> {
    T::deserialize(value).context("the server's answer is not in the expected shape")
}

/// A response row as the text table shows it.
pub trait Row {
    /// The columns, headed in capitals; the first is the identifier
    /// `--output id` prints.
    const COLUMNS: &'static [&'static str];
    /// One cell per column: `-` for none, lists joined by commas.
    fn cells(&self) -> Vec<String>;
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
    print_cells(cells, columns)
}

fn print_cells(cells: Vec<Vec<String>>, columns: &[&str]) {
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
