//! A full disk (a real one: a small tmpfs, filled up): writes answer 503
//! `UNAVAILABLE` naming the cause, `/readyz` is not ready while writes fail,
//! and both recover without a restart once space returns. SQLite only: the
//! PostgreSQL server's disk is not this process's to fill (its "disk full"
//! error, SQLSTATE 53100, maps to the same answer).

use crate::common::{to_resp, Deadline, Resp, ServerProcess, Tmpfs};
use serde_json::json;
use std::io::Write;

async fn get(url: &str) -> Resp {
    to_resp(reqwest::get(url).await.unwrap()).await
}

async fn put(url: &str, key: &str, name: &str, value: &str) -> Resp {
    to_resp(
        reqwest::Client::new()
            .post(format!("{url}/v1/secrets"))
            .bearer_auth(key)
            .json(&json!({"name": name, "value": value}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[track_caller]
fn names_the_full_disk(r: Resp) {
    let m = r.err(503, "UNAVAILABLE");
    assert!(m.contains("disk") && m.contains("full"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_and_recovers_without_restart() {
    let Some(fs) = Tmpfs::mount(
        "diskfull::a_full_disk_answers_503_and_recovers_without_restart",
        "8m",
    ) else {
        return;
    };
    let data = fs.path.clone();
    let server = ServerProcess::start(&data, &[], &[]).unwrap();
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let url = server.url.clone();
    put(&url, &key, "before", "kept").await.ok();

    // Fill the file system but for half a megabyte.
    let filler = data.join("filler");
    {
        let free = fs4::available_space(&data).unwrap();
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        let mut left = free.saturating_sub(512 * 1024);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }

    // Writes fill the rest, then fail: 503 naming the cause.
    let value = "x".repeat(48 * 1024);
    let mut written = 0;
    let failed = loop {
        let r = put(&url, &key, &format!("big_{written}"), &value).await;
        if r.status != 200 {
            break r;
        }
        written += 1;
        assert!(written < 100, "the disk never filled up");
    };
    names_the_full_disk(failed);
    names_the_full_disk(put(&url, &key, "again", &value).await);
    names_the_full_disk(get(&format!("{url}/readyz")).await);
    // Reads still work.
    let listed = to_resp(
        reqwest::Client::new()
            .get(format!("{url}/v1/secrets"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await
    .ok();
    assert_eq!(
        listed["secrets"].as_array().unwrap().len(),
        1 + written,
        "every acknowledged write is there"
    );

    // Space returns: ready again and writes succeed, no restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Deadline::new("ready again");
    loop {
        let r = get(&format!("{url}/readyz")).await;
        if r.status == 200 {
            break;
        }
        deadline.tick_showing(r.text).await;
    }
    put(&url, &key, "after", &value).await.ok();
    let log = server.log_text();
    assert_eq!(server.terminate(), Some(0));
    assert!(!log.contains(&value), "a value reached the log");
}
