//! Wakes long-polling workloads when something they depend on changes.
//!
//! Three kinds of wake-up, all pushed, none on a timer:
//!
//! - a team's revision moved: one `watch` channel per team that has waiters,
//!   so a write wakes only that team's waiters. Published after the store has
//!   acknowledged the write (durable), by this node's writer or by the
//!   listener that hears other nodes' writes;
//! - identity changed (a key, user or team deleted, here or on another
//!   node): every waiter re-checks its key, so a revoked key's waiters get
//!   401 at once;
//! - shutdown: every waiter answers at once.
//!
//! A waiter costs a watch receiver and nothing else while it waits.

use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Notifier {
    teams: Mutex<HashMap<String, watch::Sender<i64>>>,
    identity: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

/// Drop entries without waiters once the map holds this many.
const PRUNE_AT: usize = 1024;

impl Default for Notifier {
    fn default() -> Self {
        Self {
            teams: Mutex::new(HashMap::new()),
            identity: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        }
    }
}

/// What one waiter listens to.
pub struct Subscription {
    pub revision: watch::Receiver<i64>,
    pub identity: watch::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
}

impl Notifier {
    pub fn subscribe(&self, team_id: &str) -> Subscription {
        let revision = {
            let mut teams = self.teams.lock();
            if teams.len() >= PRUNE_AT {
                teams.retain(|_, tx| tx.receiver_count() > 0);
            }
            match teams.get(team_id) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(i64::MIN);
                    teams.insert(team_id.to_owned(), tx);
                    rx
                }
            }
        };
        Subscription {
            revision,
            identity: self.identity.subscribe(),
            shutdown: self.shutdown.subscribe(),
        }
    }

    /// A team's revision moved to `revision` (never moves it back).
    pub fn publish(&self, team_id: &str, revision: i64) {
        let mut teams = self.teams.lock();
        if let Some(tx) = teams.get(team_id) {
            if tx.receiver_count() == 0 {
                teams.remove(team_id);
                return;
            }
            tx.send_if_modified(|v| {
                let moved = revision > *v;
                if moved {
                    *v = revision;
                }
                moved
            });
        }
    }

    /// How many waiters are subscribed to a team's changes now.
    pub fn waiters(&self, team_id: &str) -> usize {
        let teams = self.teams.lock();
        teams.get(team_id).map_or(0, |tx| tx.receiver_count())
    }

    /// Teams that have waiters now.
    pub fn watched_teams(&self) -> Vec<String> {
        let teams = self.teams.lock();
        teams
            .iter()
            .filter(|(_, tx)| tx.receiver_count() > 0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn identity_changed(&self) {
        self.identity.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_wakes_only_its_team() {
        let n = Notifier::default();
        let mut a = n.subscribe("a");
        let b = n.subscribe("b");
        n.publish("a", 3);
        assert!(a.revision.has_changed().unwrap());
        assert!(!b.revision.has_changed().unwrap());
        assert_eq!(*a.revision.borrow_and_update(), 3);
        // Never moves back.
        n.publish("a", 2);
        assert!(!a.revision.has_changed().unwrap());
        n.identity_changed();
        assert!(b.identity.has_changed().unwrap());
        assert_eq!(n.watched_teams().len(), 2);
        drop(a);
        n.publish("a", 4);
        assert_eq!(n.watched_teams(), vec!["b".to_owned()]);
    }
}
