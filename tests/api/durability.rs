//! No request is answered before its write is durable: kill -9 the server
//! under concurrent write load, then find every acknowledged write present
//! and decryptable with the value that was acknowledged.

use crate::common::{to_resp, wait_until, Storage};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn acknowledged_writes_survive_kill_9(storage: Storage) {
    let data = storage.dir.path().join("crash");
    let (server, key) = storage.serve(&data);
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for w in 0..32 {
        let (url, key, acked) = (server.url.clone(), key.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let name = format!("w{w}_n{i}");
                let value = format!("value-{w}-{i}-{}", tessera::domain::ids::random_base62(8));
                let sent = http
                    .post(format!("{url}/v1/secrets"))
                    .bearer_auth(&key)
                    .json(&json!({"name": name, "value": value}))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => {
                        to_resp(r).await;
                        acked.lock().push((name, value));
                    }
                    // The server died mid-request: not acknowledged.
                    _ => break,
                }
                if Instant::now() > stop_at + Duration::from_secs(10) {
                    break;
                }
            }
        }));
    }
    // Let load build up (100 acknowledged writes), then kill without warning
    // while requests are in flight.
    wait_until("100 acknowledged writes", || acked.lock().len() >= 100).await;
    server.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 50,
        "too little load to mean anything: {}",
        acked.len()
    );

    // Reopen the store with the same master key, as a restarted server would.
    let url = match storage.pg {
        Some(_) => storage.database_url(),
        None => format!("sqlite://{}", data.join("tessera.db").display()),
    };
    let store = tessera::store::open(&url).await.unwrap();
    let kek: [u8; 32] = std::fs::read(data.join("master.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let keyring = Arc::new(tessera::crypto::Keyring::new(&kek));
    tessera::service::bootstrap::check_master_key(store.as_ref(), &keyring)
        .await
        .unwrap();
    let service = tessera::app::service_from_parts(store, keyring, Default::default())
        .await
        .unwrap();
    let p = service
        .identity()
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .unwrap();
    for (name, value) in &acked {
        let got = service
            .reveal_secret(&p, tessera::service::TeamRef::Implicit, name)
            .await
            .unwrap_or_else(|e| panic!("acknowledged write {name} is missing: {e}"));
        assert_eq!(got.expose(), value, "{name}");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "durability: {} acknowledged writes all present after kill -9\n",
            acked.len()
        )
        .as_bytes(),
    );
}

crate::on_both_engines!(crate::common::Storage::new => acknowledged_writes_survive_kill_9);
