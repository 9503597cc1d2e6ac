//! A small client for operators' commands against a running server.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::Value;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
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
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
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
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = value["code"].as_str().unwrap_or("ERROR");
            let message = value["message"].as_str().unwrap_or(text.as_str());
            bail!("{code} ({}): {message}", status.as_u16());
        }
        Ok(value)
    }

    /// Prints a response: JSON as is, or the chosen fields as a table.
    pub fn print_list(&self, value: &Value, items: &Value, columns: &[&str]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => print_table(
                items.as_array().map(Vec::as_slice).unwrap_or_default(),
                columns,
            ),
        }
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

/// The one place where command-line clients build their HTTP client (the
/// runtime client of `tessera agent` and `tessera run` uses it). No overall
/// timeout: long polls set their own per request.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")
}
