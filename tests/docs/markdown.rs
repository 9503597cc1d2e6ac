//! Reading the documents: fenced blocks, tables, and the `doc-test`
//! directives that say how to treat them.
//!
//! A directive is an HTML comment on a line of its own, invisible on GitHub:
//!
//! ```text
//! <!-- doc-test: not-run needs-kubernetes -->       the next block is not run, for this reason
//! <!-- doc-test: expect audit log intact: [..] -->  a line of the next block's output
//! <!-- doc-test: setup printf 'x' > server.py -->   run (hidden) before the next block
//! <!-- doc-test: options-of serve -->               the next table lists every option of `tessera serve`
//! <!-- doc-test: postgres tessera -->               this document creates the PostgreSQL database `tessera`
//! ```
//!
//! Block and table directives sit on the lines right above their block's
//! opening fence or their table's first line.

use std::fmt;

/// Why a block is not run. The list is short and fixed on purpose: CI
/// prints how many blocks each reason covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    HarnessProvides,
    Slow,
    NeedsRoot,
    NeedsKubernetes,
    NeedsSystemd,
    NeedsCloud,
    NeedsOwnHost,
    Synopsis,
    TestedElsewhere,
    PendingFix,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::HarnessProvides,
        Reason::Slow,
        Reason::NeedsRoot,
        Reason::NeedsKubernetes,
        Reason::NeedsSystemd,
        Reason::NeedsCloud,
        Reason::NeedsOwnHost,
        Reason::Synopsis,
        Reason::TestedElsewhere,
        Reason::PendingFix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::HarnessProvides => "harness-provides",
            Reason::Slow => "slow",
            Reason::NeedsRoot => "needs-root",
            Reason::NeedsKubernetes => "needs-kubernetes",
            Reason::NeedsSystemd => "needs-systemd",
            Reason::NeedsCloud => "needs-cloud",
            Reason::NeedsOwnHost => "needs-own-host",
            Reason::Synopsis => "synopsis",
            Reason::TestedElsewhere => "tested-elsewhere",
            Reason::PendingFix => "pending-fix",
        }
    }

    pub fn meaning(self) -> &'static str {
        match self {
            Reason::HarnessProvides => {
                "starts the server or runs the test suite: the harness does that itself"
            }
            Reason::Slow => "takes minutes (the benchmarks)",
            Reason::NeedsRoot => {
                "uses system paths (/etc, /run, /var, /secrets) only root may create"
            }
            Reason::NeedsKubernetes => "needs a Kubernetes cluster",
            Reason::NeedsSystemd => "needs systemd",
            Reason::NeedsCloud => "needs a cloud account",
            Reason::NeedsOwnHost => {
                "names the reader's own host or DNS name (a TLS server certificate for it)"
            }
            Reason::Synopsis => {
                "a usage synopsis ([optional] parts, a|b choices), not a command line"
            }
            Reason::TestedElsewhere => {
                "belongs to a set-up other than the page's; the named test file runs it in that set-up"
            }
            Reason::PendingFix => {
                "fails today; the change that fixes it is in flight (the marker names it)"
            }
        }
    }

    fn parse(name: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    NotRun { reason: Reason, note: String },
    Expect(String),
    Setup(String),
    OptionsOf(String),
    Postgres(String),
}

/// How the harness treats a block's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// sh, bash, shell: run with bash.
    Shell,
    /// console: the `$ ` lines are run, the other lines are their output.
    Console,
    /// python: run with the interpreter that has the pinned Baseten SDK.
    Python,
    /// sql: run with psql against the test PostgreSQL, in a transaction
    /// that is rolled back.
    Sql,
    /// json, text: shapes and diagrams, not examples.
    Data,
    /// Any other language: an example the harness cannot run, so it must
    /// say why with `not-run`.
    Other,
}

impl Kind {
    pub fn of(lang: &str) -> Kind {
        match lang {
            "sh" | "bash" | "shell" => Kind::Shell,
            "console" => Kind::Console,
            "python" => Kind::Python,
            "sql" => Kind::Sql,
            "json" | "text" => Kind::Data,
            _ => Kind::Other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    pub lang: String,
    pub text: String,
    pub directives: Vec<Directive>,
}

impl Block {
    pub fn kind(&self) -> Kind {
        Kind::of(&self.lang)
    }

    pub fn not_run(&self) -> Option<(Reason, &str)> {
        self.directives.iter().find_map(|d| match d {
            Directive::NotRun { reason, note } => Some((*reason, note.as_str())),
            _ => None,
        })
    }

    pub fn expects(&self) -> impl Iterator<Item = &str> {
        self.directives.iter().filter_map(|d| match d {
            Directive::Expect(p) => Some(p.as_str()),
            _ => None,
        })
    }

    pub fn setup(&self) -> String {
        self.directives
            .iter()
            .filter_map(|d| match d {
                Directive::Setup(s) => Some(format!("{s}\n")),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub line: usize,
    pub header: Vec<String>,
    /// (line, cells)
    pub rows: Vec<(usize, Vec<String>)>,
    pub directives: Vec<Directive>,
}

impl Table {
    /// Indices of the columns whose header is one of `names`.
    pub fn columns(&self, names: &[&str]) -> Vec<usize> {
        self.header
            .iter()
            .enumerate()
            .filter(|(_, h)| names.contains(&h.trim().to_lowercase().as_str()))
            .map(|(i, _)| i)
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// As shown in messages: `README.md`, `docs/delivery.md`.
    pub name: String,
    pub blocks: Vec<Block>,
    pub tables: Vec<Table>,
    /// Document-wide directives (`postgres`).
    pub directives: Vec<Directive>,
}

#[derive(Debug)]
pub struct ParseError {
    pub doc: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.doc, self.line, self.message)
    }
}

fn directive(text: &str) -> Result<Directive, String> {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    match word {
        "not-run" => {
            let (reason, note) = rest.split_once(' ').unwrap_or((rest, ""));
            let reason = Reason::parse(reason).ok_or_else(|| {
                format!(
                    "unknown not-run reason {reason:?}; the reasons are: {}",
                    Reason::ALL
                        .map(|r| format!("{} ({})", r.name(), r.meaning()))
                        .join(", ")
                )
            })?;
            if reason == Reason::PendingFix && note.trim().is_empty() {
                return Err("pending-fix must name the change that fixes it".into());
            }
            if reason == Reason::TestedElsewhere {
                let test = note.split_whitespace().next().unwrap_or_default();
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(test);
                if !test.starts_with("tests/") || !path.is_file() {
                    return Err(format!(
                        "tested-elsewhere must name the test file that runs the block (tests/...), not {test:?}"
                    ));
                }
            }
            Ok(Directive::NotRun {
                reason,
                note: note.trim().to_owned(),
            })
        }
        "expect" if !rest.is_empty() => Ok(Directive::Expect(rest.to_owned())),
        "setup" if !rest.is_empty() => Ok(Directive::Setup(rest.to_owned())),
        "options-of" if !rest.is_empty() => Ok(Directive::OptionsOf(rest.to_owned())),
        "postgres" if !rest.is_empty() => Ok(Directive::Postgres(rest.to_owned())),
        _ => Err(format!(
            "unknown doc-test directive {text:?} (not-run REASON [why], expect TEXT, setup CODE, options-of COMMAND, postgres DATABASE)"
        )),
    }
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            _ => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// Parses one document. Every problem is an error: a directive with no
/// block or table under it, an unknown reason, a block without a language.
pub fn parse(name: &str, text: &str) -> Result<Doc, Vec<ParseError>> {
    let mut doc = Doc {
        name: name.to_owned(),
        ..Doc::default()
    };
    let mut errors = Vec::new();
    let err = |line: usize, message: String| ParseError {
        doc: name.to_owned(),
        line,
        message,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut pending: Vec<(usize, Directive)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let lineno = i + 1;
        if let Some(body) = trimmed
            .strip_prefix("<!-- doc-test:")
            .and_then(|r| r.trim_end().strip_suffix("-->"))
        {
            match directive(body.trim()) {
                Ok(Directive::Postgres(db)) => doc.directives.push(Directive::Postgres(db)),
                Ok(d) => pending.push((lineno, d)),
                Err(e) => errors.push(err(lineno, e)),
            }
            i += 1;
            continue;
        }
        if trimmed.contains("doc-test") && trimmed.starts_with("<!--") {
            errors.push(err(
                lineno,
                "a doc-test directive is one line: <!-- doc-test: ... -->".into(),
            ));
        }
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        if let Some(f) = fence {
            let indent = line.len() - trimmed.len();
            let fence_char = f.chars().next().unwrap();
            let fence_len = trimmed.chars().take_while(|c| *c == fence_char).count();
            let info = trimmed[fence_len..].trim();
            let lang = info.split_whitespace().next().unwrap_or("").to_owned();
            let mut body = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < lines.len() {
                let l = lines[j];
                let t = l.trim();
                if t.len() >= fence_len && t.chars().all(|c| c == fence_char) {
                    closed = true;
                    break;
                }
                let strip = l.len() - l.trim_start().len();
                body.push_str(&l[strip.min(indent)..]);
                body.push('\n');
                j += 1;
            }
            if !closed {
                errors.push(err(lineno, "unclosed fenced block".into()));
            }
            if lang.is_empty() {
                errors.push(err(
                    lineno,
                    "a fenced block without a language: give it one (`text` for a diagram, `sh` for commands)"
                        .into(),
                ));
            }
            let directives: Vec<Directive> = pending.drain(..).map(|(_, d)| d).collect();
            if directives
                .iter()
                .any(|d| matches!(d, Directive::OptionsOf(_)))
            {
                errors.push(err(lineno, "options-of belongs above a table".into()));
            }
            doc.blocks.push(Block {
                line: lineno,
                lang,
                text: body,
                directives,
            });
            i = j + 1;
            continue;
        }
        if trimmed.starts_with('|') {
            let start = i;
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                rows.push((i + 1, split_row(lines[i])));
                i += 1;
            }
            let directives: Vec<Directive> = pending.drain(..).map(|(_, d)| d).collect();
            if let Some(d) = directives
                .iter()
                .find(|d| !matches!(d, Directive::OptionsOf(_)))
            {
                errors.push(err(start + 1, format!("{d:?} belongs above a block")));
            }
            let mut rows = rows.into_iter();
            let header = rows.next().map(|(_, c)| c).unwrap_or_default();
            // The delimiter row (`|---|---|`).
            let body: Vec<_> = rows
                .filter(|(_, cells)| {
                    !cells
                        .iter()
                        .all(|c| !c.is_empty() && c.chars().all(|ch| "-: ".contains(ch)))
                })
                .collect();
            doc.tables.push(Table {
                line: start + 1,
                header,
                rows: body,
                directives,
            });
            continue;
        }
        for (at, d) in pending.drain(..) {
            errors.push(err(
                at,
                format!("{d:?} is not right above a fenced block or a table"),
            ));
        }
        i += 1;
    }
    for (at, d) in pending.drain(..) {
        errors.push(err(
            at,
            format!("{d:?} is not right above a fenced block or a table"),
        ));
    }
    for b in &doc.blocks {
        if b.kind() == Kind::Other && !b.lang.is_empty() && b.not_run().is_none() {
            errors.push(err(
                b.line,
                format!(
                    "the harness cannot run a `{}` block: mark it `<!-- doc-test: not-run REASON -->`",
                    b.lang
                ),
            ));
        }
        if b.kind() == Kind::Data && !b.directives.is_empty() {
            errors.push(err(
                b.line,
                format!(
                    "a `{}` block is not run; its directives mean nothing",
                    b.lang
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors)
    }
}

/// Whether `line` contains `pattern`, where `[..]` in the pattern stands for
/// any run of characters (trycmd's wildcard).
pub fn matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(start) = line.find(first) else {
        return false;
    };
    let mut rest = &line[start + first.len()..];
    for part in parts {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The backticked spans of a table cell.
pub fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_any_run() {
        assert!(matches(
            "audit log intact: [..] events in [..] chains",
            "audit log intact: 12 events in 1 chains"
        ));
        assert!(matches("intact", "# audit log intact: 1234 events"));
        assert!(!matches(
            "audit log intact: [..] events in [..] chains",
            "audit log broken: 12 events"
        ));
        assert!(!matches("a[..]b", "ba"));
    }

    #[test]
    fn directives_attach_to_the_next_block_or_table() {
        let doc = parse(
            "t.md",
            "x\n<!-- doc-test: not-run needs-kubernetes -->\n```yaml\na: 1\n```\n\n<!-- doc-test: options-of serve -->\n| flag | environment |\n|---|---|\n| `--listen` | `TESSERA_LISTEN` |\n\n   ```sh\n   echo hi\n   ```\n",
        )
        .unwrap();
        assert_eq!(doc.blocks.len(), 2);
        assert_eq!(doc.blocks[0].not_run().unwrap().0, Reason::NeedsKubernetes);
        assert_eq!(doc.blocks[1].text, "echo hi\n");
        assert_eq!(doc.tables[0].rows.len(), 1);
        assert_eq!(
            doc.tables[0].directives,
            vec![Directive::OptionsOf("serve".into())]
        );
    }

    #[test]
    fn mistakes_are_errors() {
        for (text, what) in [
            (
                "<!-- doc-test: not-run too-hard -->\n```sh\nx\n```\n",
                "unknown not-run reason",
            ),
            (
                "<!-- doc-test: not-run pending-fix -->\n```sh\nx\n```\n",
                "must name the change",
            ),
            ("```yaml\na: 1\n```\n", "cannot run a `yaml` block"),
            ("```\ntree\n```\n", "without a language"),
            ("<!-- doc-test: expect x -->\n\ntext\n", "not right above"),
            (
                "<!-- doc-test: frobnicate -->\n```sh\nx\n```\n",
                "unknown doc-test directive",
            ),
        ] {
            let errors = parse("t.md", text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.message.contains(what)),
                "{text:?}: {errors:?}"
            );
        }
    }
}
