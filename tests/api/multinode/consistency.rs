//! What one node writes, the others see: race-free upserts, listings,
//! revocations and teams across processes, and nodes started together.

use super::cluster::*;
use crate::common::{canary, pg_schema_or_skip, ServerProcess};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::service::TeamRef;
use tessera::wire::management::TeamsView;

// Race-free upserts across two processes.

/// `n` distinct spellings of one canonical name: `race_name_of_the_day`
/// with each separator one of `_`, `-`, `.`.
fn spellings(n: usize) -> Vec<String> {
    let words = ["race", "name", "of", "the", "day"];
    let seps = ['_', '-', '.'];
    assert!(n <= 81);
    (0..n)
        .map(|i| {
            let mut digits = i;
            let mut s = String::from(words[0]);
            for w in &words[1..] {
                s.push(seps[digits % 3]);
                digits /= 3;
                s.push_str(w);
            }
            s
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_free_upserts_across_two_nodes() {
    let Some(schema) = pg_schema_or_skip("multinode::race_free_upserts_across_two_nodes").await
    else {
        return;
    };
    let url = schema.url();
    let cluster = Arc::new(Cluster::start(schema, vec![url.clone(), url]).await);

    const N: usize = 50;
    let names = spellings(N);
    let values: Vec<String> = (0..N).map(|i| canary(&format!("race{i}"))).collect();
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), N);

    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (cluster, barrier) = (cluster.clone(), barrier.clone());
        let body = json!({"name": names[i], "value": values[i]});
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cluster.post(i % 2, "/v1/secrets", body).await
        }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.unwrap().ok());
    }

    // One id, one created_at, one spelling in every response.
    let ids: BTreeSet<_> = responses
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let created: BTreeSet<_> = responses
        .iter()
        .map(|r| r["created_at"].as_str().unwrap().to_owned())
        .collect();
    let spelled: BTreeSet<_> = responses
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "several ids were handed out: {ids:?}");
    assert_eq!(created.len(), 1, "created_at differs: {created:?}");
    assert_eq!(spelled.len(), 1, "stored spelling differs: {spelled:?}");
    let id = ids.into_iter().next().unwrap();
    let first_created = responses
        .iter()
        .map(|r| parse_time(&r["created_at"]))
        .min()
        .unwrap();
    let stored_name = spelled.into_iter().next().unwrap();
    assert!(names.contains(&stored_name), "{stored_name}");

    // Both nodes list exactly that one secret.
    for node in 0..2 {
        let list = cluster.get(node, "/v1/secrets").await.ok();
        let secrets = list["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 1, "node {node}: {list}");
        assert_eq!(secrets[0]["id"], id.as_str());
        assert_eq!(secrets[0]["name"], stored_name.as_str());
        assert_eq!(parse_time(&secrets[0]["created_at"]), first_created);
    }

    // Through the library: the value is one of those sent, and each of the
    // 50 writes counted once in the version (none lost, none doubled).
    let lib = cluster.library().await;
    let p = lib
        .identity()
        .authenticate(Some(&format!("Bearer {}", cluster.admin_key)))
        .await
        .unwrap();
    let value = lib
        .reveal_secret(&p, TeamRef::Implicit, "race_name_of_the_day")
        .await
        .unwrap();
    assert!(
        values.iter().any(|v| v == value.expose()),
        "the stored value is none of the values sent"
    );
    let records = lib
        .list_team_secrets(&p, TeamRef::Implicit)
        .await
        .unwrap()
        .pages
        .next()
        .await
        .unwrap()
        .map(|page| page.entries)
        .unwrap_or_default();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec.id, id);
    assert_eq!(rec.version, N as i64, "one version per upsert");
    assert_eq!(rec.created_at, first_created.timestamp_micros());
}

// What one node writes, the other sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_written_on_one_node_is_listed_by_the_other_at_once() {
    let Some(c) =
        two_nodes("multinode::secret_written_on_one_node_is_listed_by_the_other_at_once").await
    else {
        return;
    };
    let team = c.get(1, "/v1/teams").await.json::<TeamsView>().teams[0]
        .id
        .clone();
    for round in 0..5 {
        let (writer, reader) = (round % 2, 1 - round % 2);
        let name = format!("visible_{round}");
        let created = c
            .post(
                writer,
                "/v1/secrets",
                json!({"name": name, "value": canary("vis")}),
            )
            .await
            .ok();
        // No sleep: the write is committed before the 200.
        let list = c.get(reader, "/v1/secrets").await.ok();
        assert!(
            list["secrets"].as_array().unwrap().contains(&created),
            "node {reader} does not list what node {writer} wrote: {list}"
        );
        let team_list = c
            .get(reader, &format!("/v1/teams/{team}/secrets"))
            .await
            .ok();
        assert!(team_list["secrets"].as_array().unwrap().contains(&created));

        // An update on the reader keeps the id; a delete on the writer is
        // seen by the reader at once.
        let updated = c
            .post(
                reader,
                "/v1/secrets",
                json!({"name": name.replace('_', "-"), "value": "v2"}),
            )
            .await
            .ok();
        assert_eq!(updated, created);
        let gone = c
            .req(
                writer,
                Method::DELETE,
                &format!("/v1/secrets/{name}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
        assert_eq!(gone["name"], name.as_str());
        let list = c.get(reader, "/v1/secrets").await.ok();
        assert!(
            !list["secrets"].as_array().unwrap().contains(&created),
            "node {reader} still lists a secret deleted on node {writer}: {list}"
        );
        c.req(
            reader,
            Method::DELETE,
            &format!("/v1/secrets/{name}"),
            &c.admin_key,
            None,
        )
        .await
        .err(404, "NOT_FOUND");
    }
}

/// Node B answers team listings from memory while the team's revision is
/// unchanged. After any write node A has answered, node B's very next
/// listing must show it: 1,000 rounds, no sleep, creates and deletes, past
/// the first page (so both the single-page and the streamed listings are
/// remembered and checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_listing_on_one_node_is_never_staler_than_a_write_on_the_other() {
    let Some(c) =
        two_nodes("multinode::team_listing_on_one_node_is_never_staler_than_a_write_on_the_other")
            .await
    else {
        return;
    };
    let team = c.get(1, "/v1/teams").await.json::<TeamsView>().teams[0]
        .id
        .clone();
    let listing = format!("/v1/teams/{team}/secrets");
    let names = |list: &Value| -> Vec<String> {
        list["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut expected = BTreeSet::new();
    for round in 0..1000 {
        let name = format!("fresh_{round:04}");
        c.post(0, &listing, json!({"name": name, "value": "v"}))
            .await
            .ok();
        expected.insert(name);
        if round % 3 == 2 {
            let doomed = format!("fresh_{:04}", round - 1);
            c.req(
                0,
                Method::DELETE,
                &format!("{listing}/{doomed}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
            expected.remove(&doomed);
        }
        let listed = names(&c.get(1, &listing).await.ok());
        let listed: BTreeSet<_> = listed.into_iter().collect();
        assert_eq!(
            listed, expected,
            "round {round}: node 1 lists other than what node 0 acknowledged"
        );
    }
}

/// Each node remembers the version it last wrote, to upsert in one round
/// trip. Writes through the other node make that memory stale: the next
/// upsert must notice, keep the id, take the next version and stay
/// decryptable; after a delete and re-create elsewhere it must not revive the
/// old id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_writers_keep_versions_ids_and_values_right() {
    let Some(c) =
        two_nodes("multinode::alternating_writers_keep_versions_ids_and_values_right").await
    else {
        return;
    };
    let first = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "v1"}))
        .await
        .ok();
    let mut last = String::new();
    for (i, node) in [0, 1, 1, 0, 1, 0, 0].into_iter().enumerate() {
        last = format!("value-{i}");
        let r = c
            .post(node, "/v1/secrets", json!({"name": "alt", "value": last}))
            .await
            .ok();
        assert_eq!(r["id"], first["id"], "round {i} on node {node}");
    }
    let lib = c.library().await;
    let p = lib
        .identity()
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        last
    );
    let listed = lib
        .list_team_secrets(&p, TeamRef::Implicit)
        .await
        .unwrap()
        .pages
        .next()
        .await
        .unwrap()
        .map(|page| page.entries)
        .unwrap_or_default();
    assert_eq!(
        listed[0].version, 8,
        "one version per upsert, none lost or repeated"
    );
    // Deleted and re-created on node 1: node 0's memory of the old id is stale.
    c.req(1, Method::DELETE, "/v1/secrets/alt", &c.admin_key, None)
        .await
        .ok();
    let again = c
        .post(1, "/v1/secrets", json!({"name": "alt", "value": "fresh"}))
        .await
        .ok();
    assert_ne!(again["id"], first["id"]);
    let via0 = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "from-0"}))
        .await
        .ok();
    assert_eq!(
        via0["id"], again["id"],
        "node 0 must not revive the deleted secret's id"
    );
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        "from-0"
    );
    // Deleted on node 1 only: node 0 creates a new secret rather than updating a ghost.
    c.req(1, Method::DELETE, "/v1/secrets/alt", &c.admin_key, None)
        .await
        .ok();
    let reborn = c
        .post(0, "/v1/secrets", json!({"name": "alt", "value": "reborn"}))
        .await
        .ok();
    assert_ne!(reborn["id"], again["id"]);
    assert_eq!(
        lib.reveal_secret(&p, TeamRef::Implicit, "alt")
            .await
            .unwrap()
            .expose(),
        "reborn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_revoked_on_one_node_is_refused_by_the_other_within_one_second() {
    let Some(c) =
        two_nodes("multinode::key_revoked_on_one_node_is_refused_by_the_other_within_one_second")
            .await
    else {
        return;
    };
    let mut worst = Duration::ZERO;
    let mut seen = Vec::new();
    for round in 0..4 {
        let (revoker, other) = (round % 2, 1 - round % 2);
        let created = c
            .post(
                revoker,
                "/v1/api_keys",
                json!({"type": "PERSONAL", "name": format!("rev{round}")}),
            )
            .await
            .ok();
        let key = created["api_key"].as_str().expect("api_key").to_owned();
        let prefix = key.split('.').next().unwrap().to_owned();

        // A key made on one node works on the other at once, and both nodes
        // now hold it in their short-lived cache.
        for node in [revoker, other] {
            c.req(node, Method::GET, "/v1/secrets", &key, None)
                .await
                .ok();
        }

        let deleted = c
            .req(
                revoker,
                Method::DELETE,
                &format!("/v1/api_keys/{prefix}"),
                &c.admin_key,
                None,
            )
            .await
            .ok();
        assert_eq!(deleted["prefix"], prefix.as_str());
        let revoked_at = Instant::now();

        // The revoking node refuses it immediately.
        c.req(revoker, Method::GET, "/v1/secrets", &key, None)
            .await
            .err(401, "UNAUTHORIZED");

        // The other node refuses it within a second.
        let refused_after = loop {
            let r = c.req(other, Method::GET, "/v1/secrets", &key, None).await;
            if r.status == 401 {
                r.err(401, "UNAUTHORIZED");
                break revoked_at.elapsed();
            }
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(3),
                "node {other} still accepts a key revoked on node {revoker}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            refused_after < Duration::from_secs(1),
            "node {other} accepted a revoked key for {refused_after:?}"
        );
        worst = worst.max(refused_after);
        seen.push(refused_after);

        // And it stays refused everywhere.
        for _ in 0..5 {
            for node in [revoker, other] {
                c.req(node, Method::GET, "/v1/secrets", &key, None)
                    .await
                    .err(401, "UNAUTHORIZED");
            }
            // sleep: samples spread over time (a cache refilled with the key
            // would show in a later one).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    report(format!(
        "revocation propagation to the other node: {:?} (worst {worst:?})",
        seen
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_created_on_one_node_is_visible_on_the_other() {
    let Some(c) = two_nodes("multinode::team_created_on_one_node_is_visible_on_the_other").await
    else {
        return;
    };
    let team = c
        .post(0, "/v1/teams", json!({"name": "ml-platform"}))
        .await
        .ok();
    assert_eq!(team["name"], "ml-platform");
    assert_eq!(team["default"], false);
    parse_time(&team["created_at"]);
    let id = team["id"].as_str().unwrap();

    let list = c.get(1, "/v1/teams").await.ok();
    assert!(
        list["teams"].as_array().unwrap().contains(&team),
        "node 1 does not list the team node 0 created: {list}"
    );
    assert_eq!(c.get(1, &format!("/v1/teams/{id}")).await.ok(), team);

    // The new team is usable through the other node, and back again.
    let secret = c
        .post(
            1,
            &format!("/v1/teams/{id}/secrets"),
            json!({"name": "team_token", "value": canary("team")}),
        )
        .await
        .ok();
    assert_eq!(secret["team_name"], "ml-platform");
    let listed = c.get(0, &format!("/v1/teams/{id}/secrets")).await.ok();
    assert_eq!(listed["secrets"], json!([secret]));
}

/// Replicas of one deployment start at the same moment on a database that
/// `tessera migrate` has prepared: all must come up (they race to record the
/// master key and to create the first organization), and they must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_a_new_database_all_come_up() {
    for round in 0..4 {
        let Some(schema) =
            pg_schema_or_skip("multinode::nodes_started_together_on_a_new_database_all_come_up")
                .await
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("master.key");
        write_key_file(&key_file, &rand::random());
        let migrate_dir = dir.path().join("migrate").display().to_string();
        let out = crate::common::run_cli(
            &[
                "migrate",
                "--database-url",
                &schema.url(),
                "--data-dir",
                &migrate_dir,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let starts: Vec<_> = (0..3)
            .map(|i| {
                let data = dir.path().join(format!("node{i}"));
                let (url, key_file) = (schema.url(), key_file.display().to_string());
                tokio::task::spawn_blocking(move || {
                    ServerProcess::start(
                        &data,
                        &["--database-url", &url, "--master-key-file", &key_file],
                        &[],
                    )
                })
            })
            .collect();
        let mut nodes = Vec::new();
        for s in starts {
            match s.await.unwrap() {
                Ok(node) => nodes.push(node),
                Err(e) => panic!("round {round}: a node started with the others failed: {e}"),
            }
        }
        let keys: Vec<String> = (0..3)
            .filter_map(|i| {
                std::fs::read_to_string(dir.path().join(format!("node{i}")).join("admin.key")).ok()
            })
            .collect();
        assert_eq!(keys.len(), 1, "exactly one node initializes the store");
        let key = keys[0].trim();
        let http = http();
        let mut orgs = BTreeSet::new();
        for node in &nodes {
            let org = call(
                &http,
                Method::GET,
                &format!("{}/v1/organizations/me", node.url),
                Some(key),
                None,
            )
            .await
            .ok();
            orgs.insert(org.to_string());
        }
        assert_eq!(orgs.len(), 1, "the nodes disagree on the organization");
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url())
            .await
            .unwrap();
        let (keks, organizations): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM keks), (SELECT COUNT(*) FROM organizations)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!((keks, organizations), (1, 1));
        drop(nodes);
    }
}
