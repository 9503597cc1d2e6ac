//! What `tessera … --help` says exists: every command's options, with the
//! environment variable each one reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What `--help` says of one option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opt {
    /// The variable it reads (`[env: NAME]`).
    pub env: Option<String>,
    /// Its default (`[default: VALUE]`).
    pub default: Option<String>,
}

/// `--flag` → what help says of it, per command path (`serve`,
/// `secrets set`, …).
pub type Options = BTreeMap<String, Opt>;

fn help(bin: &Path, path: &[String]) -> String {
    let out = Command::new(bin)
        .args(path)
        .arg("--help")
        .env("COLUMNS", "1000")
        .output()
        .expect("run tessera --help");
    assert!(
        out.status.success(),
        "tessera {} --help failed",
        path.join(" ")
    );
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(text: &str) -> Vec<String> {
    let mut in_section = false;
    let mut names = Vec::new();
    for line in text.lines() {
        if line.trim_end() == "Commands:" {
            in_section = true;
            continue;
        }
        if in_section {
            if line.trim().is_empty() || !line.starts_with("  ") {
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names
}

/// The text after `[tag: ` in `chunk`, up to its `]`.
fn bracketed<'a>(chunk: &'a str, tag: &str) -> Option<&'a str> {
    let rest = chunk.split(&format!("[{tag}: ")).nth(1)?;
    rest.split(']').next()
}

/// The options a help text lists, with their variables and defaults.
pub fn options(text: &str) -> Options {
    let mut options = Options::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if line.starts_with(' ') && t.starts_with('-') {
            current = t
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<' || c == '[')
                .find(|w| w.starts_with("--"))
                .map(str::to_owned);
        } else if !line.starts_with(' ') {
            current = None;
        }
        let Some(flag) = &current else { continue };
        let opt = options.entry(flag.clone()).or_default();
        if let Some(env) = bracketed(line, "env") {
            opt.env = Some(
                env.trim_end_matches('=')
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        if let Some(default) = bracketed(line, "default") {
            opt.default = Some(default.to_owned());
        }
    }
    options.remove("--help");
    options.remove("--version");
    options
}

/// Every command's options, from the binary itself.
pub fn collect(bin: &Path) -> BTreeMap<String, Options> {
    let mut all = BTreeMap::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        let text = help(bin, &path);
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            queue.push(p);
        }
        all.insert(path.join(" "), options(&text));
    }
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_clap_help() {
        let text = "Usage: tessera serve [OPTIONS]\n\nOptions:\n      --listen <LISTEN>\n          Address [env: TESSERA_LISTEN=] [default: 127.0.0.1:8000]\n      --api-key <API_KEY>    A key [env: TESSERA_API_KEY]\n      --once                 Once\n  -h, --help\n          Print help\n";
        let o = super::options(text);
        assert_eq!(o["--listen"].env.as_deref(), Some("TESSERA_LISTEN"));
        assert_eq!(o["--listen"].default.as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(o["--api-key"].env.as_deref(), Some("TESSERA_API_KEY"));
        assert_eq!(o["--api-key"].default, None);
        assert_eq!(o["--once"], super::Opt::default());
        assert!(!o.contains_key("--help"));
        let cmds = super::subcommands("Commands:\n  serve  Run\n  help   Print\n\nOptions:\n");
        assert_eq!(cmds, vec!["serve"]);
    }
}
