//! Running a document's examples as a reader would, against a real server.
//!
//! Per document: a fresh working directory, `tessera serve` (the binary
//! under test) started there on a random port with its data in
//! `./tessera-data` (where the README says it is), and one bash process
//! that runs the document's blocks in order, so variables and files made by
//! one block are there for the next. Each shell block runs with
//! `set -euo pipefail`: the first failing command fails the block, and the
//! blocks after it are not reached. The environment is what the docs tell a
//! reader to set: `tessera` on `PATH`, `TESSERA_URL` at the server and
//! `TESSERA_API_KEY` holding its admin key, and nothing else of ours.
//! The only change made to an example before it runs: the server's default
//! address `127.0.0.1:8000` becomes the address of the server under test.
//!
//! Checked besides the exit status: every `expect` directive (a line of the
//! block's output, and a line of the block itself, so the output the page
//! shows cannot drift from what is checked), and that no output line is a
//! Tessera error body (`{"code": ..., "message": ...}`: curl exits 0 on a
//! 4xx).
//!
//! Documents with a `postgres DATABASE` directive get the test PostgreSQL's
//! address in libpq's variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`). The database they create is theirs only while they run:
//! the harness holds an advisory lock meanwhile, refuses to start if that
//! database already exists (it never drops what it did not see created),
//! and drops it afterwards.

use crate::common;
use crate::markdown::{matches, Block, Directive, Doc, Kind, Reason};
use common::ServerProcess;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use common::announce_skip;

/// How long one document may take, all blocks together.
const DOC_DEADLINE: Duration = Duration::from_secs(300);
/// The address the docs use; replaced with the server's.
const DOCUMENTED_ADDR: &str = "127.0.0.1:8000";

/// What the harness needs from its surroundings.
pub struct Setting {
    pub bin: PathBuf,
    /// The interpreter with the pinned Baseten SDK (`TESSERA_SDK_PYTHON`).
    pub python: Option<PathBuf>,
    /// The test PostgreSQL (`TESSERA_TEST_DATABASE_URL`).
    pub pg_url: Option<String>,
}

impl Setting {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            bin: PathBuf::from(common::BIN),
            python: var("TESSERA_SDK_PYTHON").map(PathBuf::from),
            pg_url: var(common::PG_ENV),
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub ran: usize,
    /// (reason, where, note)
    pub not_run: Vec<(Reason, String, String)>,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.ran += other.ran;
        self.not_run.extend(other.not_run);
        self.failures.extend(other.failures);
    }

    /// `docs examples: 14 run, 9 not run (harness-provides 1, ...)`
    pub fn summary(&self) -> String {
        let mut by: BTreeMap<Reason, usize> = BTreeMap::new();
        for (r, _, _) in &self.not_run {
            *by.entry(*r).or_default() += 1;
        }
        let reasons: Vec<String> = by
            .iter()
            .map(|(r, n)| format!("{} {n}", r.name()))
            .collect();
        let mut s = format!(
            "docs examples: {} run, {} not run ({})",
            self.ran,
            self.not_run.len(),
            reasons.join(", ")
        );
        if !self.failures.is_empty() {
            let _ = write!(s, ", {} failed", self.failures.len());
        }
        for (r, at, note) in &self.not_run {
            if *r == Reason::PendingFix {
                let _ = write!(s, "\n  pending a fix: {at} ({note})");
            }
        }
        s
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A console block: its commands (after `$ `, with `\` continuations) and
/// the output lines shown under them.
fn console_parts(text: &str) -> (String, Vec<String>) {
    let mut script = String::new();
    let mut output = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            script.push_str(cmd);
            script.push('\n');
            continued = cmd.trim_end().ends_with('\\');
        } else if continued {
            script.push_str(line);
            script.push('\n');
            continued = line.trim_end().ends_with('\\');
        } else if !line.trim().is_empty() {
            output.push(line.trim().to_owned());
        }
    }
    (script, output)
}

/// Every process started by one document's run: below its driver (found
/// before any is killed), or carrying its marker in its environment (a
/// process that left the driver's group and was re-parented, such as
/// `setsid CMD &`).
fn processes_of(root: u32, marker: &str) -> Vec<i32> {
    let mut parent: Vec<(i32, i32)> = Vec::new();
    let mut marked = Vec::new();
    let needle = format!("{MARKER_VAR}={marker}");
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(env) = std::fs::read(entry.path().join("environ")) {
                if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
                    marked.push(pid);
                }
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces.
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root as i32];
    found.extend(marked);
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        for (c, _) in parent.iter().filter(|(_, pp)| *pp == p) {
            if !found.contains(c) {
                found.push(*c);
            }
        }
        i += 1;
    }
    found
}

/// Set in the environment of everything a document's run starts.
const MARKER_VAR: &str = "DOCS_EXAMPLE_RUN";

fn kill_all(root: u32, marker: &str) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(root as i32), Signal::SIGKILL);
    for pid in processes_of(root, marker) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// libpq's variables for the test PostgreSQL.
fn libpq_env(url: &str) -> Vec<(String, String)> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let mut env = Vec::new();
    if let Some(h) = u.host_str() {
        env.push(("PGHOST".into(), h.to_owned()));
    }
    env.push(("PGPORT".into(), u.port().unwrap_or(5432).to_string()));
    if !u.username().is_empty() {
        env.push(("PGUSER".into(), u.username().to_owned()));
    }
    if let Some(p) = u.password() {
        env.push(("PGPASSWORD".into(), p.to_owned()));
    }
    env
}

/// Holds a document's PostgreSQL database for it: an advisory lock (runs
/// of the suite on the same server take turns), and the database dropped
/// when done.
struct PgClaim {
    rt: tokio::runtime::Runtime,
    conn: Option<sqlx::PgConnection>,
    database: String,
}

impl PgClaim {
    fn take(url: &str, database: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let conn = rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| format!("connect to the test PostgreSQL: {e}"))?;
            sqlx::query("SELECT pg_advisory_lock(hashtext('tessera docs examples'))")
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(database)
                    .fetch_optional(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            if exists.is_some() {
                return Err(format!(
                    "the test PostgreSQL already has a database named {database:?}, which the \
                     documented examples create; the harness drops only what it saw created. \
                     If it is left over from an interrupted run: dropdb {database}"
                ));
            }
            Ok(conn)
        })?;
        Ok(Self {
            rt,
            conn: Some(conn),
            database: database.to_owned(),
        })
    }
}

impl Drop for PgClaim {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let db = self.database.replace('"', "\"\"");
            self.rt.block_on(async {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
                let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext('tessera docs examples'))")
                    .execute(&mut conn)
                    .await;
            });
        }
    }
}

/// One block as the driver runs it.
struct Step<'a> {
    index: usize,
    block: &'a Block,
    /// Output lines a console block shows.
    console_output: Vec<String>,
}

pub fn run_doc(doc: &Doc, setting: &Setting) -> Outcome {
    let mut outcome = Outcome::default();
    let at = |b: &Block| format!("{}:{}", doc.name, b.line);
    let postgres = doc.directives.iter().find_map(|d| match d {
        Directive::Postgres(db) => Some(db.clone()),
        _ => None,
    });
    let mut steps = Vec::new();
    for block in &doc.blocks {
        if block.kind() == Kind::Data {
            continue;
        }
        if let Some((reason, note)) = block.not_run() {
            outcome.not_run.push((reason, at(block), note.to_owned()));
            continue;
        }
        let console_output = match block.kind() {
            Kind::Console => console_parts(&block.text).1,
            _ => Vec::new(),
        };
        steps.push(Step {
            index: steps.len(),
            block,
            console_output,
        });
    }
    if steps.is_empty() {
        return outcome;
    }
    let needs_pg = postgres.is_some() || steps.iter().any(|s| s.block.kind() == Kind::Sql);
    if needs_pg && setting.pg_url.is_none() {
        announce_skip(
            &format!("docs examples of {}", doc.name),
            "they use PostgreSQL and TESSERA_TEST_DATABASE_URL is not set",
        );
        return outcome;
    }
    if steps.iter().any(|s| s.block.kind() == Kind::Python) && setting.python.is_none() {
        announce_skip(
            &format!("docs examples of {}", doc.name),
            "a Python example needs TESSERA_SDK_PYTHON (scripts/test sets it)",
        );
        return outcome;
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    let work = tmp.path().join("work");
    let blocks = tmp.path().join("blocks");
    for d in [&bin, &work, &blocks] {
        std::fs::create_dir(d).unwrap();
    }
    std::os::unix::fs::symlink(&setting.bin, bin.join("tessera")).unwrap();
    if let Some(py) = &setting.python {
        // A script, not a symlink: a virtualenv's interpreter finds its
        // packages from the path it was started by.
        let script = format!(
            "#!/bin/sh\nexec {} \"$@\"\n",
            shell_quote(&py.display().to_string())
        );
        std::fs::write(bin.join("python"), script).unwrap();
        std::fs::set_permissions(
            bin.join("python"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let server = match ServerProcess::start(&work.join("tessera-data"), &[], &[]) {
        Ok(s) => s,
        Err(e) => {
            outcome
                .failures
                .push(format!("{}: the server did not start: {e}", doc.name));
            return outcome;
        }
    };
    let admin_key = std::fs::read_to_string(work.join("tessera-data/admin.key"))
        .expect("admin.key")
        .trim()
        .to_owned();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let _claim = match (&postgres, &setting.pg_url) {
        (Some(db), Some(url)) => match PgClaim::take(url, db) {
            Ok(c) => Some(c),
            Err(e) => {
                outcome.failures.push(format!("{}: {e}", doc.name));
                return outcome;
            }
        },
        _ => None,
    };

    // The driver: one bash running every block in order.
    let status = blocks.join("status");
    let mut driver = String::from("set -euo pipefail\n");
    let _ = writeln!(driver, "cd {}", shell_quote(&work.display().to_string()));
    for step in &steps {
        let b = step.block;
        let n = step.index;
        let file = |ext: &str| blocks.join(format!("{n:02}.{ext}"));
        let text = b.text.replace(DOCUMENTED_ADDR, &addr);
        let setup = b.setup().replace(DOCUMENTED_ADDR, &addr);
        let q = |p: PathBuf| shell_quote(&p.display().to_string());
        let redirect = format!("</dev/null >{} 2>{}", q(file("out")), q(file("err")));
        let _ = writeln!(driver, "# {}:{}", doc.name, b.line);
        let _ = writeln!(driver, "echo 'begin {n}' >> {}", q(status.clone()));
        match b.kind() {
            Kind::Shell | Kind::Console => {
                let script = match b.kind() {
                    Kind::Console => console_parts(&text).0,
                    _ => text,
                };
                std::fs::write(file("sh"), format!("{setup}{script}")).unwrap();
                let _ = writeln!(driver, "source {} {redirect}", q(file("sh")));
            }
            Kind::Python => {
                if !setup.is_empty() {
                    std::fs::write(file("setup.sh"), setup).unwrap();
                    let _ = writeln!(driver, "source {}", q(file("setup.sh")));
                }
                std::fs::write(file("py"), text).unwrap();
                let _ = writeln!(driver, "python {} {redirect}", q(file("py")));
            }
            Kind::Sql => {
                let url = setting.pg_url.clone().unwrap_or_default();
                std::fs::write(file("sql"), format!("BEGIN;\n{setup}{text}\nROLLBACK;\n")).unwrap();
                let _ = writeln!(
                    driver,
                    "psql -X -q -v ON_ERROR_STOP=1 -f {} {} {redirect}",
                    q(file("sql")),
                    shell_quote(&url)
                );
            }
            Kind::Data | Kind::Other => panic!("not a step"),
        }
        let _ = writeln!(driver, "echo 'end {n}' >> {}", q(status.clone()));
    }
    std::fs::write(blocks.join("driver.sh"), &driver).unwrap();

    let mut cmd = Command::new("bash");
    cmd.arg(blocks.join("driver.sh"))
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(blocks.join("driver.out")).unwrap())
        .stderr(std::fs::File::create(blocks.join("driver.err")).unwrap())
        .process_group(0);
    // What a reader's shell has, minus anything of ours.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("TESSERA_") || k.starts_with("PG") || k.starts_with("CARGO") {
            cmd.env_remove(&k);
        }
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("TESSERA_URL", &server.url)
        .env("TESSERA_API_KEY", &admin_key);
    if postgres.is_some() {
        for (k, v) in libpq_env(setting.pg_url.as_deref().unwrap_or_default()) {
            cmd.env(k, v);
        }
    }
    let marker = tmp.path().display().to_string();
    cmd.env(MARKER_VAR, &marker);
    let mut child = cmd.spawn().expect("run bash");
    let deadline = Instant::now() + DOC_DEADLINE;
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the blocks left running (an agent started with `&`).
    kill_all(child.id(), &marker);
    let _ = child.wait();

    let status_text = std::fs::read_to_string(&status).unwrap_or_default();
    let began = |n: usize| status_text.lines().any(|l| l == format!("begin {n}"));
    let ended = |n: usize| status_text.lines().any(|l| l == format!("end {n}"));
    for step in &steps {
        let b = step.block;
        let n = step.index;
        let read = |ext: &str| {
            std::fs::read_to_string(blocks.join(format!("{n:02}.{ext}"))).unwrap_or_default()
        };
        let (out, err) = (read("out"), read("err"));
        let mut problems = Vec::new();
        if !began(n) {
            problems.push("not reached: an earlier block failed".to_owned());
        } else if !ended(n) {
            problems.push(match exit {
                Some(s) => format!("failed ({s})"),
                None => format!("did not finish within {} s", DOC_DEADLINE.as_secs()),
            });
        } else {
            for pattern in b.expects() {
                if !out.lines().any(|l| matches(pattern, l)) {
                    problems.push(format!("no output line matches `{pattern}`"));
                }
                let shown = b
                    .text
                    .lines()
                    .filter_map(|l| l.split_once("# ").map(|(_, c)| c))
                    .any(|c| matches(pattern, c));
                if !shown {
                    problems.push(format!(
                        "the block shows no `# ` comment matching `{pattern}` (what it checks must be what it shows)"
                    ));
                }
            }
            let mut lines = out.lines();
            for want in &step.console_output {
                if !lines.any(|l| matches(want, l)) {
                    problems.push(format!(
                        "output shown as `{want}` is not in the output (in order)"
                    ));
                }
            }
            for line in out.lines() {
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
                if v["code"].is_string() && v["message"].is_string() {
                    problems.push(format!("printed an error answer: {}", line.trim()));
                }
            }
        }
        if problems.is_empty() {
            outcome.ran += 1;
        } else if began(n) {
            outcome.failures.push(format!(
                "{}: {}\n--- block ({}) ---\n{}--- stdout ---\n{}\n--- stderr ---\n{}\n--- server log ---\n{}",
                at(b),
                problems.join("; "),
                b.lang,
                b.text,
                tail(&out, 30),
                tail(&err, 30),
                tail(&server.log_text(), 15),
            ));
        } else {
            outcome
                .failures
                .push(format!("{}: {}", at(b), problems.join("; ")));
        }
    }
    drop(server);
    outcome
}

/// Runs a document given as text (the harness's own tests).
pub fn run_text(name: &str, text: &str, setting: &Setting) -> Outcome {
    let doc = crate::markdown::parse(name, text).expect("a valid document");
    run_doc(&doc, setting)
}

/// The documents under test: README.md and docs/*.md.
pub fn documents(root: &Path) -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).expect("read a document");
            (n, text)
        })
        .collect()
}
