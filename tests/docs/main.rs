//! The documentation, tested (issue 25: "the next new user finds no example
//! that fails").
//!
//! * Every example block of README.md and docs/*.md runs as written against
//!   a real server, or says with a directive why it is not run, from a short
//!   fixed list of reasons (`markdown.rs`, `runner.rs`). The counts are
//!   printed (`docs examples: …`) and `scripts/test` repeats them.
//! * Every flag, variable and metric named in a table exists: flags and
//!   variables in `tessera … --help` (or, for variables only the environment
//!   sets, in the source), metrics in what a real server exposes; and the
//!   tables that promise to list every option or metric do.
//! * Claims the docs and comments make about the code: the audit actions
//!   they name are the ones recorded; error bodies are decided in one place.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly where it cannot go on"
)]

#[path = "../api/common.rs"]
#[expect(
    dead_code,
    reason = "the docs tests use a few of the api tests' helpers"
)]
mod common;
mod help;
mod markdown;
mod metrics;
mod runner;

use markdown::{code_spans, Directive, Doc};
use runner::{Outcome, Setting};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parsed_docs() -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in runner::documents(&root()) {
        match markdown::parse(&name, &text) {
            Ok(d) => docs.push(d),
            Err(e) => errors.extend(e.into_iter().map(|e| e.to_string())),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    docs
}

/// Every `.rs` file under `src/` and `crates/` (the workspace's crates),
/// with its path relative to the root.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("src"), &mut files);
    walk(&root().join("crates"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// A file's code before its unit tests (`mod tests`, last by convention),
/// without comment lines.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "mod tests {")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

#[test]
fn every_example_runs_as_written() {
    let docs = parsed_docs();
    let setting = Setting::from_env();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .iter()
            .map(|d| s.spawn(|| runner::run_doc(d, &setting)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Outcome::default();
    for o in outcomes {
        total.add(o);
    }
    // Past the harness's capture, so CI's log shows it.
    let _ = writeln!(std::io::stderr(), "{}", total.summary());
    assert!(
        total.failures.is_empty(),
        "{} documented example(s) failed:\n\n{}",
        total.failures.len(),
        total.failures.join("\n\n")
    );
    assert!(total.ran > 0, "no example ran");
}

/// `--flag` at the start of a code span (`--dir DIR`, `--audit-log off`).
fn flag_of(span: &str) -> Option<String> {
    let word = span.split([' ', '=']).next()?;
    (word.starts_with("--") && word.len() > 2).then(|| word.to_owned())
}

/// An environment variable's name: upper case, digits and underscores.
fn is_env_name(span: &str) -> bool {
    span.len() > 2
        && span.contains('_')
        && span.starts_with(|c: char| c.is_ascii_uppercase())
        && span
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn tables_name_only_flags_and_variables_that_exist() {
    let commands = help::collect(Path::new(common::BIN));
    // Every option of any command, with the variables it reads.
    let mut any: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
    let mut defaults: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for options in commands.values() {
        for (flag, opt) in options {
            any.entry(flag).or_default().insert(opt.env.as_deref());
            if let Some(d) = &opt.default {
                defaults.entry(flag).or_default().insert(d);
            }
        }
    }
    let source: String = sources().into_iter().map(|(_, t)| t).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in parsed_docs() {
        for table in &doc.tables {
            let flag_cols = table.columns(&["flag", "flags", "setting"]);
            let env_cols = table.columns(&["environment", "setting"]);
            let default_cols = table.columns(&["default"]);
            let mut listed = BTreeSet::new();
            for (line, cells) in &table.rows {
                let at = format!("{}:{line}", doc.name);
                let spans = |cols: &[usize]| -> Vec<String> {
                    cols.iter()
                        .filter_map(|c| cells.get(*c))
                        .flat_map(|c| code_spans(c))
                        .map(str::to_owned)
                        .collect()
                };
                let flags: Vec<String> = spans(&flag_cols)
                    .iter()
                    .filter_map(|s| flag_of(s))
                    .collect();
                let envs: Vec<String> = spans(&env_cols)
                    .into_iter()
                    .filter(|s| is_env_name(s))
                    .collect();
                for f in &flags {
                    checked += 1;
                    listed.insert(f.clone());
                    if !any.contains_key(f.as_str()) {
                        problems.push(format!(
                            "{at}: `{f}` is not an option of any tessera command"
                        ));
                    }
                }
                // A row of one flag whose default column shows a value in
                // code shows the default `--help` gives (prose such as
                // "64 KiB" is left to the reader).
                if let ([f], [d]) = (flags.as_slice(), default_cols.as_slice()) {
                    let shown = cells.get(*d).map(|c| code_spans(c)).unwrap_or_default();
                    if let (Some(given), false) = (defaults.get(f.as_str()), shown.is_empty()) {
                        checked += 1;
                        if !given.iter().any(|g| shown.contains(g)) {
                            problems.push(format!(
                                "{at}: the default of `{f}` is {} in `--help`, not {shown:?}",
                                given
                                    .iter()
                                    .map(|g| format!("`{g}`"))
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ));
                        }
                    }
                }
                for e in &envs {
                    checked += 1;
                    if flags.is_empty() {
                        // Read from the environment only: the code names it.
                        if !source.contains(&format!("\"{e}\"")) {
                            problems.push(format!("{at}: `{e}` is read nowhere in the sources"));
                        }
                    } else if !flags.iter().any(|f| {
                        any.get(f.as_str())
                            .is_some_and(|v| v.contains(&Some(e.as_str())))
                    }) {
                        problems.push(format!(
                            "{at}: `{e}` is not the variable of {} (see `tessera … --help`)",
                            flags.join(", ")
                        ));
                    }
                }
            }
            for d in &table.directives {
                if let Directive::OptionsOf(cmd) = d {
                    let Some(options) = commands.get(cmd.as_str()) else {
                        problems.push(format!(
                            "{}:{}: no command `tessera {cmd}`",
                            doc.name, table.line
                        ));
                        continue;
                    };
                    let missing: Vec<&str> = options
                        .keys()
                        .filter(|f| !listed.contains(*f))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "{}:{}: this table lists every option of `tessera {cmd}` but lacks {}",
                            doc.name,
                            table.line,
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 50,
        "only {checked} names checked: are the tables still found?"
    );
}

/// Metrics the traffic in `metrics.rs` cannot provoke on one machine in a
/// test's time; for these the source must still record them.
const NOT_PROVOKED: &[(&str, &str)] = &[
    (
        "tessera_accept_errors_total",
        "needs the process out of file descriptors",
    ),
    (
        "tessera_request_timeouts_total",
        "needs a handler slower than --request-timeout",
    ),
    (
        "tessera_consumers_dropped_total",
        "needs 10,000 consumer sightings waiting to be written",
    ),
];

/// Metric names the source records (`counter!("name"`, `gauge!(…`, `histogram!(…`).
fn recorded_metrics() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (file, text) in sources() {
        for (line, code) in code_lines(&text) {
            for mac in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in code.match_indices(mac) {
                    let rest = &code[at + mac.len()..];
                    if let Some(name) = rest
                        .trim_start()
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                    {
                        found.insert(name.to_owned(), format!("{file}:{line}"));
                    }
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_tables_name_exactly_what_the_server_exposes() {
    let mut documented: BTreeMap<String, String> = BTreeMap::new();
    for doc in parsed_docs() {
        for table in &doc.tables {
            for (line, cells) in &table.rows {
                for c in table.columns(&["metric"]) {
                    for span in cells.get(c).map(|c| code_spans(c)).unwrap_or_default() {
                        if span.starts_with("tessera_") {
                            documented.insert(span.to_owned(), format!("{}:{line}", doc.name));
                        }
                    }
                }
            }
        }
    }
    let recorded = recorded_metrics();
    assert!(
        recorded.len() > 10,
        "metric calls not found in the sources: {recorded:?}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut exposed = metrics::scrape_after_traffic(&tmp.path().join("sqlite"), &[]).await;
    let pg = common::PgSchema::create().await;
    match &pg {
        Some(schema) => {
            let args = vec!["--database-url".to_owned(), schema.url()];
            exposed.extend(metrics::scrape_after_traffic(&tmp.path().join("pg"), &args).await);
        }
        None => common::announce_skip(
            "metrics_tables_name_exactly_what_the_server_exposes [postgres part]",
            "TESSERA_TEST_DATABASE_URL is not set",
        ),
    }
    exposed.retain(|n| n.starts_with("tessera_"));

    let mut problems = Vec::new();
    for (name, at) in &documented {
        let unprovoked = NOT_PROVOKED.iter().any(|(n, _)| n == name)
            || (pg.is_none() && name.contains("postgres"));
        let shown = exposed.contains(name) || (unprovoked && recorded.contains_key(name));
        if !shown {
            problems.push(format!(
                "{at}: `{name}` is documented but the server does not expose it"
            ));
        }
    }
    let all: BTreeSet<&String> = exposed.iter().chain(recorded.keys()).collect();
    for name in all {
        if !documented.contains_key(name) {
            let from = recorded.get(name).map(String::as_str).unwrap_or("/metrics");
            problems.push(format!(
                "`{name}` ({from}) is missing from the metrics table of docs/operations.md"
            ));
        }
    }
    for (name, why) in NOT_PROVOKED {
        if !recorded.contains_key(*name) {
            problems.push(format!(
                "NOT_PROVOKED lists `{name}` ({why}), which the source no longer records"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn audit_actions_in_the_docs_are_the_ones_recorded() {
    use tessera::domain::audit_action::AuditAction;
    let actions: BTreeSet<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    let subjects: BTreeSet<&str> = actions.iter().filter_map(|a| a.split('.').next()).collect();
    let mut problems = Vec::new();
    let mut security_names = BTreeSet::new();
    for (name, text) in runner::documents(&root()) {
        for (i, line) in text.lines().enumerate() {
            for span in code_spans(line) {
                let looks_like_action = span.contains('.')
                    && span
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                    && span.split('.').next().is_some_and(|s| subjects.contains(s));
                if !looks_like_action {
                    continue;
                }
                if !actions.contains(span) {
                    problems.push(format!(
                        "{name}:{}: `{span}` is not an audit action (they are: {})",
                        i + 1,
                        AuditAction::names()
                    ));
                }
                if name == "docs/security.md" {
                    security_names.insert(span.to_owned());
                }
            }
        }
    }
    for a in &actions {
        if !security_names.contains(*a) {
            problems.push(format!(
                "docs/security.md does not name the audit action `{a}`"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn error_bodies_are_decided_in_one_place() {
    use tessera::api::error::ErrorCode::*;
    let codes = [
        InvalidRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        QuotaExceeded,
        PayloadTooLarge,
        RateLimited,
        Internal,
        Unavailable,
    ]
    .map(|c| format!("\"{}\"", c.as_str()));
    let mut problems = Vec::new();
    for (file, text) in sources() {
        if file == "crates/wire/src/error.rs" {
            continue;
        }
        for (line, code) in code_lines(&text) {
            if code.contains("\"code\":") || codes.iter().any(|c| code.contains(c.as_str())) {
                problems.push(format!("{file}:{line}: {}", code.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "error bodies are built in crates/wire/src/error.rs only (ErrorBody, unparsable_request_body); \
         built elsewhere:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The harness itself: it must fail when an example does.
// ---------------------------------------------------------------------------

#[test]
fn a_failing_example_fails_and_stops_its_document() {
    let text = "```sh\nX=kept\n```\n\n```sh\ntest \"$X\" = kept\nfalse\necho after\n```\n\n```sh\necho never\n```\n";
    let o = runner::run_text("self.md", text, &Setting::from_env());
    assert_eq!(o.ran, 1, "{o:?}");
    assert_eq!(o.failures.len(), 2, "{o:?}");
    assert!(
        o.failures[0].starts_with("self.md:5: failed"),
        "{}",
        o.failures[0]
    );
    assert!(
        o.failures[1].contains("self.md:11: not reached"),
        "{}",
        o.failures[1]
    );
}

#[test]
fn what_a_page_shows_is_checked() {
    let text = r#"
<!-- doc-test: expect hello [..] here -->
```sh
echo "hello from here"     # hello from here
```

<!-- doc-test: expect goodbye -->
```sh
echo hi                    # goodbye
```

```sh
curl -s http://127.0.0.1:8000/v1/teams
```

```console
$ echo one
one
$ echo two
three
```

```sh
team=$(tessera teams create docs-self-test --output id)
tessera teams list --output id | grep -qx "$team"
```
"#;
    let o = runner::run_text("self.md", text, &Setting::from_env());
    assert_eq!(o.ran, 2, "{o:?}");
    let f = o.failures.join("\n");
    assert_eq!(o.failures.len(), 3, "{f}");
    assert!(
        f.contains("self.md:8: no output line matches `goodbye`"),
        "{f}"
    );
    assert!(f.contains("self.md:12: printed an error answer"), "{f}");
    assert!(f.contains("self.md:16: output shown as `three`"), "{f}");
}

#[test]
fn nothing_started_by_an_example_outlives_its_document() {
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let text = format!(
        "```sh\nsleep 1000 &\necho $! >> {p}\nsetsid sleep 1000 &\necho $! >> {p}\n```\n",
        p = pids.display()
    );
    let o = runner::run_text("self.md", &text, &Setting::from_env());
    assert_eq!(o.ran, 1, "{o:?}");
    let pids = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(pids.lines().count(), 2);
    for pid in pids.lines() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, s)| s.trim_start().chars().next());
        assert!(
            matches!(state, None | Some(Some('Z' | 'X'))),
            "process {pid} still runs: {stat}"
        );
    }
}

/// The README's first command, `cargo run --release -- serve`, names no
/// binary: with the workspace's two (`tessera`, `tessera-workload`) Cargo
/// must be told which one it means, or the command fails before building.
#[test]
fn the_readme_start_command_picks_the_server_binary() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- serve"));
    let root_package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tessera")
        .unwrap();
    assert_eq!(root_package["default_run"], "tessera", "{root_package}");
}
