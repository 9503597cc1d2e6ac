//! The master key from a command's standard output (`--master-key-command`):
//! the hook for a cloud KMS decrypt, an HSM client or a password manager.
//!
//! - The command line is split into words as a POSIX shell splits them
//!   (quotes and backslashes, by `shlex`), but no shell runs it: no
//!   variables, globs, pipes or redirections.
//! - It runs with standard input closed, a minimal environment (`PATH`,
//!   `HOME` and the variables the operator names), in its own process group,
//!   which is killed when the command outlives its timeout (and once it has
//!   exited, so that nothing it left behind holds its output open).
//! - Its standard output is the key: 32 raw bytes, or their base64 text with
//!   surrounding whitespace (a trailing newline) trimmed.
//! - Neither its output nor its error text is logged or shown. An error says
//!   what went wrong (exit status, timeout, length) and how many bytes it
//!   wrote, so an operator runs the command by hand to see the rest.

use super::keyring::KEK_LEN;
use anyhow::{bail, Context};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The most a key command may write to standard output: a key in base64 is
/// 44 bytes; anything near this is not a key.
const MAX_OUTPUT: usize = 4096;

/// Variables every key command receives (when the server has them).
const BASE_ENV: [&str; 2] = ["PATH", "HOME"];

/// How often a running command is checked for having exited.
const POLL: Duration = Duration::from_millis(5);

/// A configured key command: what runs, for how long, with which variables.
#[derive(Clone)]
pub struct KeyCommand {
    pub line: String,
    pub timeout: Duration,
    /// Variables passed through besides [`BASE_ENV`].
    pub pass_env: Vec<String>,
}

impl std::fmt::Debug for KeyCommand {
    // The line may carry a token for the tool it runs: only the program.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCommand")
            .field("program", &program_of(&self.line))
            .field("timeout", &self.timeout)
            .field("pass_env", &self.pass_env)
            .finish()
    }
}

fn program_of(line: &str) -> String {
    shlex::split(line)
        .and_then(|words| words.into_iter().next())
        .unwrap_or_default()
}

impl KeyCommand {
    /// Runs the command and reads the key from its standard output.
    pub fn run(&self) -> anyhow::Result<Zeroizing<[u8; KEK_LEN]>> {
        let words = shlex::split(&self.line)
            .filter(|w| !w.is_empty())
            .context("--master-key-command is not a command line (an unclosed quote, or empty)")?;
        let (program, args) = words
            .split_first()
            .context("--master-key-command is empty")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in BASE_ENV
            .iter()
            .copied()
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("the master key command `{program}` could not be started"))?;
        let group = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let output = std::thread::spawn(move || read_capped(stdout));
        // Read (and count) the error text only so that a chatty command does
        // not block on a full pipe; its content is dropped.
        let errors = std::thread::spawn(move || count_bytes(stderr));

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .context("waiting for the master key command")?
            {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(POLL);
        };
        kill_group(group);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = output
            .join()
            .map_err(|_| anyhow::anyhow!("reading the master key command's output failed"))?;
        let error_bytes = errors.join().unwrap_or(0);

        let Some(status) = status else {
            bail!(
                "the master key command `{program}` did not finish within {} s and was stopped \
                 (--master-key-command-timeout)",
                self.timeout.as_secs_f64()
            );
        };
        if !status.success() {
            bail!(
                "the master key command `{program}` failed ({status}); it wrote {error_bytes} bytes of \
                 error text, not shown here: run it by hand to see them"
            );
        }
        let output = output.with_context(|| {
            format!(
                "the master key command `{program}` wrote more than {MAX_OUTPUT} bytes: not a key"
            )
        })?;
        // 32 raw bytes may come with a newline after them, like base64 text.
        let key_bytes = match output.as_slice() {
            [raw @ .., b'\n'] if raw.len() == KEK_LEN => raw,
            all => all,
        };
        super::master_key::decode(key_bytes).with_context(|| {
            format!(
                "the master key command `{program}` wrote {} bytes that are not a key \
                 (expected 32 raw bytes or their base64 text)",
                output.len()
            )
        })
    }
}

/// Everything on `pipe`, or `None` past [`MAX_OUTPUT`] bytes.
fn read_capped(pipe: Option<impl Read>) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(64));
    let mut pipe = pipe?;
    let mut chunk = Zeroizing::new([0u8; 512]);
    loop {
        match pipe.read(chunk.as_mut()) {
            Ok(0) => return Some(out),
            Ok(n) => {
                if out.len() + n > MAX_OUTPUT {
                    return None;
                }
                out.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Some(out),
        }
    }
}

fn count_bytes(pipe: Option<impl Read>) -> u64 {
    pipe.map_or(0, |p| {
        std::io::copy(&mut p.take(u64::MAX), &mut std::io::sink()).unwrap_or(0)
    })
}

/// Kills what is left of the command's process group (nothing, usually).
fn kill_group(leader: u32) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(leader) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    #[cfg(not(unix))]
    let _ = leader;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str, timeout_ms: u64) -> KeyCommand {
        KeyCommand {
            line: line.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            pass_env: vec![],
        }
    }

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn base64_with_a_trailing_newline_is_a_key() {
        let key = command(&format!("echo {KEY_B64}"), 5000).run().unwrap();
        let want: Vec<u8> = (0u8..32).collect();
        assert_eq!(key.as_slice(), want.as_slice());
    }

    #[test]
    fn raw_bytes_with_or_without_a_newline_are_a_key() {
        for line in ["head -c 32 /dev/zero", "sh -c 'head -c 32 /dev/zero; echo'"] {
            assert_eq!(command(line, 5000).run().unwrap().as_slice(), [0u8; 32]);
        }
    }

    #[test]
    fn words_are_split_without_a_shell() {
        // A shell would expand $HOME and run the second command.
        let err = command("printf '%s' '$HOME; echo' ", 5000)
            .run()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("wrote 11 bytes that are not a key"),
            "{err:#}"
        );
    }

    #[test]
    fn a_failure_names_the_status_and_hides_the_text() {
        let err = command("sh -c 'echo topsecret-diagnostic >&2; exit 3'", 5000)
            .run()
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("wrote 21 bytes of error text"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn a_command_past_its_timeout_is_stopped_with_its_children() {
        let started = Instant::now();
        // The grandchild holds standard output open: killing only the
        // command would leave the read waiting for it.
        let err = command("sh -c 'sleep 30 & sleep 30'", 200)
            .run()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("did not finish within 0.2 s"),
            "{err:#}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_that_is_not_a_key_is_refused_without_echoing_it() {
        for line in ["echo not-a-key-canary", "head -c 5000 /dev/zero", "true"] {
            let err = command(line, 5000).run().unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("not a key"), "{line}: {text}");
            assert!(
                !text.contains("canary") && !text.contains("symbol"),
                "{line}: {text}"
            );
        }
    }

    #[test]
    fn the_environment_is_minimal() {
        std::env::set_var("TESSERA_KEY_COMMAND_TEST_HIDDEN", "x");
        std::env::set_var("TESSERA_KEY_COMMAND_TEST_PASSED", KEY_B64);
        let script = "sh -c 'test -z \"$TESSERA_KEY_COMMAND_TEST_HIDDEN\" && echo \"$TESSERA_KEY_COMMAND_TEST_PASSED\"'";
        let mut cmd = command(script, 5000);
        assert!(cmd.run().is_err(), "a variable not named is not passed");
        cmd.pass_env = vec!["TESSERA_KEY_COMMAND_TEST_PASSED".into()];
        assert_eq!(cmd.run().unwrap()[1], 1);
    }

    #[test]
    fn debug_shows_the_program_only() {
        let cmd = command("vault-read --token s3cr3t-token path", 1000);
        let shown = format!("{cmd:?}");
        assert!(
            shown.contains("vault-read") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
