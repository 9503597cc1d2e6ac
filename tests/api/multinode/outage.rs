//! A node whose database disappears answers 503 quickly and recovers by
//! itself.

use super::cluster::*;
use super::proxy::*;
use crate::common::pg_schema_or_skip;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tessera::service::TeamRef;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_fails_fast_with_503_and_service_resumes() {
    let Some(mut o) =
        node_behind_proxy("multinode::database_gone_fails_fast_with_503_and_service_resumes").await
    else {
        return;
    };
    warm_pool(&o.cluster).await;

    // The database goes away: open connections are cut, new ones refused.
    o.proxy.stop().await;
    let slowest = assert_unavailable(&o.cluster, 3, 8).await;

    o.proxy.start().await;
    let recovered = assert_recovers(&o, Duration::from_secs(10)).await;
    report(format!(
        "database refused: slowest 503 {slowest:?}; serving again {recovered:?} after it returned"
    ));

    // A restart nobody noticed: the database goes away for a second and
    // comes back between two requests. Every connection the pool holds is
    // dead; the next requests must not fail because of them.
    warm_pool(&o.cluster).await;
    o.proxy.stop().await;
    // sleep: the outage's length (a second) is the scenario under test.
    tokio::time::sleep(Duration::from_secs(1)).await;
    o.proxy.start().await;
    let started = Instant::now();
    for _ in 0..20 {
        let r = o.cluster.get(0, "/v1/secrets").await;
        assert_eq!(
            r.status, 200,
            "a request after the database came back failed: {}",
            r.text
        );
    }
    report(format!(
        "database blip: 20 requests served in {:?}",
        started.elapsed()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_that_stops_answering_fails_fast_and_service_resumes() {
    let Some(o) = node_behind_proxy(
        "multinode::database_that_stops_answering_fails_fast_and_service_resumes",
    )
    .await
    else {
        return;
    };
    warm_pool(&o.cluster).await;

    // Packets vanish: every connection, old and new, hangs in silence. More
    // concurrent requests than the pool has connections, so every pooled
    // connection is caught mid-query.
    o.proxy.silence();
    let slowest = assert_unavailable(&o.cluster, 2, 24).await;

    // A replacement answers at the same address; the silent connections
    // never come back (no FIN, no RST), as after a failover.
    o.proxy.heal();
    let recovered = assert_recovers(&o, Duration::from_secs(10)).await;
    report(format!(
        "database silent: slowest 503 {slowest:?}; serving again {recovered:?} after failover"
    ));
}

/// The database answers but a table is locked (a long migration, a stuck
/// transaction, an operator's `LOCK TABLE`). A node must not wait behind it
/// longer than its call timeout; with `lock_timeout` set for its sessions it
/// answers as soon as the database gives up. Both are 503, never 500, and
/// both nodes serve again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_table_fails_fast_with_503_and_service_resumes() {
    let Some(schema) =
        pg_schema_or_skip("multinode::locked_table_fails_fast_with_503_and_service_resumes").await
    else {
        return;
    };
    let url = schema.url();
    let with_lock_timeout = format!("{url}%20-c%20lock_timeout%3D250");
    assert!(url.contains("options=-c%20search_path"), "{url}");
    let c = Cluster::start(schema, vec![url.clone(), with_lock_timeout]).await;
    let before = c
        .post(0, "/v1/secrets", json!({"name": "locked", "value": "v1"}))
        .await
        .ok();

    let mut locker = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();

    let mut took = Vec::new();
    for node in 0..2 {
        for (method, body) in [
            (Method::GET, None),
            (
                Method::POST,
                Some(json!({"name": "locked", "value": "never stored"})),
            ),
        ] {
            let started = Instant::now();
            let r = c
                .req(node, method.clone(), "/v1/secrets", &c.admin_key, body)
                .await;
            let elapsed = started.elapsed();
            r.err(503, "UNAVAILABLE");
            let bound = if node == 0 {
                FAIL_FAST
            } else {
                Duration::from_secs(2)
            };
            assert!(
                elapsed < bound,
                "node {node}: {method} took {elapsed:?} behind a lock"
            );
            took.push(elapsed);
        }
    }
    report(format!(
        "locked table: 503 after {:?} (node 0, no lock_timeout), {:?} (node 1, lock_timeout=250ms)",
        &took[..2],
        &took[2..]
    ));

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    for node in 0..2 {
        let list = c.get(node, "/v1/secrets").await.ok();
        assert_eq!(list["secrets"], json!([before]));
        c.post(
            node,
            "/v1/secrets",
            json!({"name": "locked", "value": "v2"}),
        )
        .await
        .ok();
    }
    let lib = c.library().await;
    let p = lib
        .identity()
        .authenticate(Some(&format!("Bearer {}", c.admin_key)))
        .await
        .unwrap();
    let v = lib
        .reveal_secret(&p, TeamRef::Implicit, "locked")
        .await
        .unwrap();
    assert_eq!(v.expose(), "v2");
}
