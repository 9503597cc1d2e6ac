//! What the store says about itself: `ping`, `backend`, and `listen`, which
//! delivers changes made through the shared database (PostgreSQL) or has
//! nothing to say and closes the sink at once (SQLite, one process only).

use super::{create_secret, Org};
use std::time::Duration;
use tessera_store::{DynStore, StoreEvent};

pub async fn ping_and_backend(store: DynStore) {
    store.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&store.backend()));
}

/// A listening store hears a team's revision move, with the revision the
/// write reported. Nothing says when listening has begun, so the write is
/// repeated until heard. The channel is shared by every schema of the test
/// database: other tests' events are skipped.
pub async fn listen_hears_revisions(store: DynStore) {
    let (sink, mut events) = tokio::sync::mpsc::unbounded_channel();
    store.listen(sink);
    if store.backend() == "sqlite" {
        // Nothing to say: the sink is closed at once.
        let heard = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert_eq!(heard, Ok(None));
        return;
    }
    let acme = Org::create(&*store, "acme").await;
    let team = acme.default_access();
    for round in 0..50 {
        let written = create_secret(&*store, &team, &format!("s{round}")).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let StoreEvent::Revision { team_id, revision } = event {
                if team_id == team.team_id() && revision == written.revision {
                    return;
                }
            }
        }
    }
    panic!("no event heard for the team's writes");
}
