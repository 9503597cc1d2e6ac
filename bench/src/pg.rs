//! PostgreSQL side: a throwaway schema for Tessera and pgbench, and the
//! pgbench baseline (a plain single-row upsert at the same concurrency).

use crate::process::output;
use crate::workloads::NAMES;
use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// A schema created for this run and dropped when this value is dropped.
pub struct Schema {
    admin_url: String,
    pub name: String,
}

impl Schema {
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        // A run may create several (one per target): a counter tells them apart.
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
        let name = format!("tessera_bench_{stamp}_{}_{n}", std::process::id());
        psql(admin_url, &format!("CREATE SCHEMA {name}")).await?;
        Ok(Schema {
            admin_url: admin_url.to_string(),
            name,
        })
    }

    /// The server URL with every session's search_path set to this schema
    /// (understood by libpq, hence pgbench, and by sqlx, hence Tessera).
    pub fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Synchronous on purpose: it must also run while unwinding an error.
        // Without the SET, psql prints a NOTICE line per dropped table.
        let sql = format!(
            "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        );
        let dropped = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &self.admin_url, "-c", &sql])
            .status();
        if !matches!(dropped, Ok(s) if s.success()) {
            eprintln!("warning: could not drop schema {}", self.name);
        }
    }
}

async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    output(
        "psql",
        Command::new("psql").args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql]),
    )
    .await
}

#[derive(Debug, Clone, Serialize)]
pub struct Pgbench {
    pub clients: usize,
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub failed: u64,
}

/// Creates the pgbench table (pre-filled with the same number of rows as the
/// upsert names, so that, like Tessera's upsert-64, every upsert updates).
pub async fn prepare_pgbench(schema: &Schema, work_dir: &Path) -> anyhow::Result<()> {
    psql(
        &schema.url(),
        &format!(
            "CREATE TABLE bench_upsert (name text PRIMARY KEY, value text NOT NULL);
             INSERT INTO bench_upsert SELECT 'bench-' || i, repeat('v', 100)
               FROM generate_series(0, {}) AS i;",
            NAMES - 1
        ),
    )
    .await?;
    std::fs::write(
        script_path(work_dir),
        format!(
            "\\set id random(0, {})\n\
             INSERT INTO bench_upsert (name, value) VALUES ('bench-' || :id, repeat('v', 100)) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value;\n",
            NAMES - 1
        ),
    )?;
    Ok(())
}

fn script_path(work_dir: &Path) -> std::path::PathBuf {
    work_dir.join("pgbench-upsert.sql")
}

/// pgbench with prepared statements (as sqlx uses), two threads (the
/// machine's cores), `clients` connections, for `duration`.
pub async fn run_pgbench(
    schema: &Schema,
    work_dir: &Path,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Pgbench> {
    let script = script_path(work_dir);
    let out = output(
        "pgbench",
        Command::new("pgbench").args([
            "-n",
            "-M",
            "prepared",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &duration.as_secs().max(1).to_string(),
            "-f",
            &script.display().to_string(),
            &schema.url(),
        ]),
    )
    .await?;
    let number_after = |prefix: &str| -> Option<f64> {
        let line = out.lines().find(|l| l.starts_with(prefix))?;
        line[prefix.len()..].split_whitespace().next()?.parse().ok()
    };
    Ok(Pgbench {
        clients,
        tps: number_after("tps = ").context("no tps line in pgbench output")?,
        latency_avg_ms: number_after("latency average = "),
        failed: number_after("number of failed transactions: ").unwrap_or(0.0) as u64,
    })
}
