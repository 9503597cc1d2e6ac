//! What `tessera … --help` says exists: every command's options, with the
//! environment variable each one reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `--flag` → the variable it reads (`[env: NAME]`), per command path
/// (`serve`, `secrets set`, …).
pub type Options = BTreeMap<String, Option<String>>;

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

/// The options a help text lists, with their variables.
pub fn options(text: &str) -> Options {
    let mut options = Options::new();
    let mut current: Option<String> = None;
    let record = |flag: &Option<String>, chunk: &str, options: &mut Options| {
        if let Some(f) = flag {
            if let Some(env) = chunk.split("[env: ").nth(1) {
                let name: String = env
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                options.insert(f.clone(), Some(name));
            }
        }
    };
    for line in text.lines() {
        let t = line.trim_start();
        if line.starts_with(' ') && t.starts_with('-') {
            let long = t
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<' || c == '[')
                .find(|w| w.starts_with("--"))
                .map(str::to_owned);
            if let Some(f) = &long {
                options.entry(f.clone()).or_insert(None);
            }
            current = long;
        } else if !line.starts_with(' ') {
            current = None;
        }
        record(&current, line, &mut options);
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
        assert_eq!(o["--listen"].as_deref(), Some("TESSERA_LISTEN"));
        assert_eq!(o["--api-key"].as_deref(), Some("TESSERA_API_KEY"));
        assert_eq!(o["--once"], None);
        assert!(!o.contains_key("--help"));
        let cmds = super::subcommands("Commands:\n  serve  Run\n  help   Print\n\nOptions:\n");
        assert_eq!(cmds, vec!["serve"]);
    }
}
