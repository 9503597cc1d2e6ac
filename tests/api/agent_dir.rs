//! Issue 24, finding 6: the agent trusts only a directory its own user
//! controls, and the Kubernetes layout it is meant for (a shared `emptyDir`,
//! root's and mode 0777, with the agent's own directory inside, shared with
//! the pod's `fsGroup`, and the model reading it as another user).
//!
//! The tests run as root; other users are real uids given to the agent and
//! to the "model" with `Command::uid`/`gid`, and another user's directory is
//! one chowned to another uid. No store is involved beyond one fetch: one
//! engine.

use crate::common::{canary, Backend, Storage, BIN};
use crate::workload::{assert_no_values, eventually, mode, Env};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The agent's user and the pod's fsGroup, the model's user, and a user
/// outside the pod's group.
const AGENT_UID: u32 = 31000;
const FS_GROUP: u32 = 32000;
const MODEL_UID: u32 = 31001;
const STRANGER_UID: u32 = 31002;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `tessera agent ARGS` as `uid:gid`, with the key in the environment.
fn agent_as(
    uid: u32,
    gid: u32,
    url: &str,
    key: &str,
    args: &[&str],
    log: &Path,
) -> std::process::Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .arg("agent")
        .args(args)
        .env_remove("TESSERA_API_KEY_FILE")
        .env("TESSERA_URL", url)
        .env("TESSERA_API_KEY", key)
        .env("TESSERA_LOG", "info")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Runs a command as `uid:gid` to completion.
fn as_user(uid: u32, gid: u32, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .env_remove("TESSERA_API_KEY")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

fn once(env: &Env, key: &str, dir: &Path) -> std::process::Output {
    crate::workload::run_with_stdin(
        &["agent", "--once", "--dir", dir.to_str().unwrap()],
        &[("TESSERA_URL", &env.url), ("TESSERA_API_KEY", key)],
        b"",
    )
}

fn refused(out: &std::process::Output, expect: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "missing {e:?} in: {stderr}");
    }
}

/// A symbolic link, another user's directory, and one others may write to
/// are refused, each with the fix, and nothing is written or changed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_a_directory_someone_else_controls() {
    let env = Env::start(Storage::new(Backend::Sqlite).await.unwrap());
    let team = env.default_team().await;
    let value = canary("trust");
    env.put("token", &value).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();

    // A link to a directory (as the issue found: its target was chmod'ed
    // and written).
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    chmod(&target, 0o755);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = once(&env, &key, &link);
    refused(
        &out,
        &["is a symbolic link", &format!("--dir {}", target.display())],
    );
    assert_eq!(mode(&target), 0o755);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

    // A directory another user made with mode 0777 (who then swapped a
    // value under the workload).
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    chmod(&theirs, 0o777);
    std::os::unix::fs::chown(&theirs, Some(STRANGER_UID), None).unwrap();
    let out = once(&env, &key, &theirs);
    refused(&out, &[&format!("owned by uid {STRANGER_UID}"), "chown 0"]);
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    assert_eq!(mode(&theirs), 0o777);

    // Ours, but writable by others.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o775);
    let out = once(&env, &key, &open);
    refused(&out, &["mode 0775", "chmod go-w"]);
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // Inside another user's directory.
    let parent = tmp.path().join("their-parent");
    std::fs::create_dir(&parent).unwrap();
    std::os::unix::fs::chown(&parent, Some(STRANGER_UID), None).unwrap();
    let out = once(&env, &key, &parent.join("secrets"));
    refused(
        &out,
        &[&format!("owned by uid {STRANGER_UID}, neither root")],
    );
    assert!(!parent.join("secrets").exists());

    // After the fix the message gives, the same directory is used.
    chmod(&open, 0o755);
    let out = once(&env, &key, &open);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(open.join("token")).unwrap(), value.as_bytes());
    assert_eq!(mode(&open), 0o700);
    assert_no_values(&String::from_utf8_lossy(&out.stderr), &[&value]);
}

/// The layout docs/delivery.md specifies for Kubernetes, with real uids:
/// a shared volume (root's, 0777, not sticky: what kubelet makes of an
/// `emptyDir`), the agent (its own uid, the pod's fsGroup) creating
/// `model/` inside it with `--group`, and the model's user, in the same
/// group, reading `model/<name>` (the model container mounts that
/// subdirectory at /secrets). A user outside the group reads nothing; the
/// volume itself is refused as the agent's directory; and another user who
/// swaps the directory for their own stops the agent instead of fooling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_layout_works_with_a_shared_volume_and_fs_group() {
    let env = Env::start(Storage::new(Backend::Sqlite).await.unwrap());
    let team = env.default_team().await;
    let value = canary("k8s");
    env.put("hf_token", &value).await;
    let key = env.read_key(&team, None).await;
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let volume = tmp.path().join("shared");
    std::fs::create_dir(&volume).unwrap();
    std::os::unix::fs::chown(&volume, Some(0), Some(0)).unwrap();
    chmod(&volume, 0o777);
    let dir = volume.join("model");
    let group = FS_GROUP.to_string();

    // The volume itself is not the agent's to keep.
    let log0 = tmp.path().join("0.log");
    let mut refused_agent = agent_as(
        AGENT_UID,
        FS_GROUP,
        &env.url,
        &key,
        &[
            "--once",
            "--dir",
            volume.to_str().unwrap(),
            "--group",
            &group,
        ],
        &log0,
    );
    assert_eq!(refused_agent.wait().unwrap().code(), Some(1));
    let log = std::fs::read_to_string(&log0).unwrap();
    assert!(
        log.contains("owned by uid 0, not by the agent's user (uid 31000)"),
        "{log}"
    );

    let log1 = tmp.path().join("1.log");
    let mut agent = agent_as(
        AGENT_UID,
        FS_GROUP,
        &env.url,
        &key,
        &[
            "--dir",
            dir.to_str().unwrap(),
            "--group",
            &group,
            "--instance-id",
            "model-0",
        ],
        &log1,
    );
    let file = dir.join("hf_token");
    eventually("the agent wrote the file", || {
        std::fs::read(&file).ok().as_deref() == Some(value.as_bytes())
    });
    let m = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (AGENT_UID, FS_GROUP, 0o750)
    );
    let f = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (f.uid(), f.gid(), f.mode() & 0o7777),
        (AGENT_UID, FS_GROUP, 0o640)
    );

    // The model's user, in the pod's group, reads it; a stranger cannot.
    let model = as_user(MODEL_UID, FS_GROUP, "cat", &[file.to_str().unwrap()]);
    assert!(
        model.status.success(),
        "{}",
        String::from_utf8_lossy(&model.stderr)
    );
    assert_eq!(model.stdout, value.as_bytes());
    let stranger = as_user(STRANGER_UID, STRANGER_UID, "cat", &[file.to_str().unwrap()]);
    assert!(!stranger.status.success());
    assert!(stranger.stdout.is_empty());

    // The probe, run as the agent's user in its container.
    let probe = as_user(
        AGENT_UID,
        FS_GROUP,
        BIN,
        &["agent", "status", "--dir", dir.to_str().unwrap()],
    );
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(String::from_utf8_lossy(&probe.stdout).starts_with("healthy:"));

    // Anyone can rename entries of a 0777 volume: a stranger moves the
    // agent's directory away and puts their own in its place. The agent
    // keeps writing into the directory it opened (never the stranger's)
    // and stops at its next round, saying why.
    let moved = volume.join("moved");
    let swap = as_user(
        STRANGER_UID,
        STRANGER_UID,
        "sh",
        &[
            "-c",
            &format!(
                "mv {0} {1} && mkdir -m 0777 {0}",
                dir.display(),
                moved.display()
            ),
        ],
    );
    assert!(
        swap.status.success(),
        "{}",
        String::from_utf8_lossy(&swap.stderr)
    );
    let v2 = canary("k8s-2");
    env.put("hf_token", &v2).await;
    let status = {
        let deadline = crate::common::Deadline::new("the agent to stop");
        loop {
            if let Some(s) = agent.try_wait().unwrap() {
                break s;
            }
            deadline.tick_blocking();
        }
    };
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(&log1).unwrap();
    assert!(
        log.contains("no longer names the directory the agent opened"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written into the stranger's directory"
    );
    assert_eq!(
        std::fs::read(moved.join("hf_token")).unwrap(),
        value.as_bytes()
    );
    assert_no_values(&log, &[&value, &v2]);

    // Started again, the agent refuses the stranger's directory.
    let log2 = tmp.path().join("2.log");
    let mut again = agent_as(
        AGENT_UID,
        FS_GROUP,
        &env.url,
        &key,
        &["--once", "--dir", dir.to_str().unwrap(), "--group", &group],
        &log2,
    );
    assert_eq!(again.wait().unwrap().code(), Some(1));
    let log = std::fs::read_to_string(&log2).unwrap();
    assert!(
        log.contains(&format!("owned by uid {STRANGER_UID}")),
        "{log}"
    );
}
