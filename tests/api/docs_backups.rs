//! The backup commands of `docs/operations.md` and
//! `docs/operations-postgres.md`, run as written (issue 25, stumbles 7 and
//! 8): the SQLite copy is private (it was 0644), and `pg_dump` dumps what the
//! documented set-up creates (`--schema=tessera` found nothing there).

use crate::common::{announce_skip, run_cli, ServerProcess};
use crate::startup::mode;
use std::path::Path;
use std::process::Command;

/// The first ```sh block after the line containing `marker`, dedented.
fn block_after(doc: &str, marker: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} in the document"));
    let open = (at..lines.len())
        .find(|&i| lines[i].trim() == "```sh")
        .expect("a sh block after the marker");
    let indent = lines[open].len() - lines[open].trim_start().len();
    lines[open + 1..]
        .iter()
        .take_while(|l| l.trim() != "```")
        .map(|l| l.get(indent..).unwrap_or("").to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn doc(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name),
    )
    .unwrap()
}

/// Runs `script` with `sh -eu` in `dir` under the usual umask (022), with
/// `envs`.
fn run_sh(dir: &Path, script: &str, envs: &[(&str, &str)]) {
    let out = Command::new("sh")
        .arg("-euc")
        .arg(format!("umask 022\n{script}"))
        .current_dir(dir)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one file in `dir` whose name starts with `stem`.
fn made(dir: &Path, stem: &str) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(stem))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn the_sqlite_backup_command_makes_a_private_copy_that_opens() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        announce_skip(
            "docs_backups::the_sqlite_backup_command_makes_a_private_copy_that_opens",
            "no sqlite3 command",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&tmp.path().join("tessera-data"), &[], &[]).unwrap();
    let script = block_after(&doc("operations.md"), "**SQLite**: take a consistent copy");
    run_sh(tmp.path(), &script, &[]);
    let backups = tmp.path().join("backups");
    assert_eq!(mode(&backups), 0o700);
    let copy = made(&backups, "tessera-");
    assert_eq!(mode(&copy), 0o600, "the copy must be private");
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let orgs: i64 = conn
        .query_row("SELECT COUNT(*) FROM organizations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orgs, 1);
    drop(server);
}

/// A database of its own on the test server (dropped with this value).
struct Database {
    admin: String,
    name: String,
}

impl Database {
    async fn create(admin: &str) -> Self {
        let name = format!(
            "tessera_docs_{}",
            tessera::domain::ids::random_base62(10).to_lowercase()
        );
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .execute(&mut c)
            .await
            .unwrap();
        Self {
            admin: admin.to_owned(),
            name,
        }
    }

    /// Its URL, with `query` (e.g. `?options=…`).
    fn url(&self, query: &str) -> String {
        let base = self.admin.split('?').next().unwrap();
        let server = &base[..base.rfind('/').unwrap()];
        format!("{server}/{}{query}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin)
            .arg("-qc")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// Initializes a store at `url`, dumps it with `script` (the documented
/// command, `$DB` set to `url`), and restores the dump into `restore_to`:
/// the restored store holds the organization.
async fn dump_and_restore(url: &str, script: &str, restore_to: &str, schema: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("master.key");
    crate::binary::write_private_key(&key, &crate::common::rand_key());
    let out = run_cli(
        &[
            "init",
            "--database-url",
            url,
            "--master-key-file",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_sh(tmp.path(), script, &[("DB", url)]);
    let dump = made(tmp.path(), "tessera-");
    assert_eq!(mode(&dump), 0o600, "the dump must be private");
    let out = Command::new("pg_restore")
        .arg("--no-owner")
        .arg("--dbname")
        .arg(restore_to)
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(restore_to)
        .await
        .unwrap();
    let orgs: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}.organizations"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(orgs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pg_dump_commands_dump_what_the_documented_set_ups_create() {
    let test = "docs_backups::the_pg_dump_commands_dump_what_the_documented_set_ups_create";
    let Ok(admin) = std::env::var("TESSERA_TEST_DATABASE_URL") else {
        announce_skip(test, "TESSERA_TEST_DATABASE_URL is not set");
        return;
    };
    if Command::new("pg_dump").arg("--version").output().is_err() {
        announce_skip(test, "no pg_dump command");
        return;
    }
    let page = doc("operations-postgres.md");

    // Tessera's own database (the page's set-up): the whole database.
    let (own, restored) = (
        Database::create(&admin).await,
        Database::create(&admin).await,
    );
    let script = block_after(&page, "dump the whole database");
    dump_and_restore(&own.url(""), &script, &restored.url(""), "public").await;

    // A schema of its own in a shared database, named in the URL.
    let (shared, restored) = (
        Database::create(&admin).await,
        Database::create(&admin).await,
    );
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&shared.url(""))
        .await
        .unwrap();
    sqlx::query("CREATE SCHEMA tessera")
        .execute(&mut c)
        .await
        .unwrap();
    let script = block_after(&page, "dump that schema only");
    let url = shared.url("?options=-c%20search_path%3Dtessera");
    dump_and_restore(&url, &script, &restored.url(""), "tessera").await;
}
