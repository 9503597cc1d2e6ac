//! The server's views and the wire types clients read them with agree: each
//! view, built from records as a handler builds it, is serialized, read
//! back through its `tessera_wire` type and written again, and both JSON
//! texts must be equal. A field renamed, added or dropped on either side
//! (even an optional one, which a lenient read would quietly miss) fails
//! here rather than in a client.

use super::audit::{AuditEventView, AuditEventsView};
use super::history_views::{
    DeletedSecretView, DeletedSecretsView, DestroyedVersionView, PurgedSecretView,
    SecretConsumersView, SecretVersionView, SecretVersionsView,
};
use super::runtime::RuntimeOneSecretView;
use super::views::Timestamp;
use crate::audit::chain::StoredEvent;
use crate::audit::event::AuditEvent;
use crate::domain::consumer_kind::ConsumerKind;
use crate::domain::types::SecretRecord;
use crate::service::history::{DestroyedVersion, Versions};
use crate::store::{Actor, Consumer, DeletedSecret, SecretHistory, VersionRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tessera_wire::history as wire;
use tessera_wire::runtime::OneSecret;

const NOW: i64 = 1_700_000_000_000_000;
const MINUTE: i64 = 60_000_000;

/// Serializes `view`, reads it as `W` and checks `W` writes the same JSON.
#[track_caller]
fn agrees<W: Serialize + DeserializeOwned>(view: &impl Serialize) -> W {
    let sent = serde_json::to_value(view).unwrap();
    let read: W = serde_json::from_value(sent.clone()).unwrap_or_else(|e| panic!("{e}: {sent}"));
    assert_eq!(serde_json::to_value(&read).unwrap(), sent);
    read
}

fn record() -> SecretRecord {
    SecretRecord {
        id: "sec_1".into(),
        org_id: "org_1".into(),
        team_id: "team_1".into(),
        team_name: "default".into(),
        name: "db-url".into(),
        canonical_name: "db_url".into(),
        created_at: NOW - 10 * MINUTE,
        updated_at: NOW - MINUTE,
        version: 2,
    }
}

fn consumer(instance: &str, kind: ConsumerKind, version: i64) -> Consumer {
    Consumer {
        key_prefix: "AbCd1234".into(),
        instance: instance.into(),
        kind,
        client: (kind == ConsumerKind::Agent).then(|| "10.0.0.7".into()),
        version,
        received_at: NOW - 5 * MINUTE,
        last_seen_at: NOW - MINUTE,
    }
}

fn consumers() -> Vec<Consumer> {
    vec![
        consumer("host-a", ConsumerKind::Agent, 2),
        consumer("", ConsumerKind::OneShot, 1),
    ]
}

#[test]
fn versions_listing() {
    let versions = Versions {
        history: SecretHistory {
            record: record(),
            versions: vec![
                VersionRecord {
                    version: 2,
                    written_at: NOW - MINUTE,
                    actor: Actor {
                        key_prefix: Some("AbCd1234".into()),
                        user_id: Some("usr_1".into()),
                    },
                    destroyed_at: None,
                    current: true,
                },
                VersionRecord {
                    version: 1,
                    written_at: NOW - 10 * MINUTE,
                    actor: Actor::default(),
                    destroyed_at: Some(NOW - 2 * MINUTE),
                    current: false,
                },
            ],
        },
        consumers: consumers(),
    };
    let read: wire::SecretVersions = agrees(&SecretVersionsView::from(&versions));
    assert_eq!(read.versions[0].consumers.len(), 1);
    assert_eq!(
        read.versions[0].created_by.user_id.as_deref(),
        Some("usr_1")
    );
    assert!(read.versions[1].destroyed_at.is_some());
}

#[test]
fn consumers_listing_with_and_without_a_warning() {
    let read: wire::SecretConsumers =
        agrees(&SecretConsumersView::new(&record(), &consumers(), NOW));
    assert!(read.warning.is_some());
    assert_eq!(read.by_version.len(), 2);
    let read: wire::SecretConsumers = agrees(&SecretConsumersView::new(&record(), &[], NOW));
    assert_eq!(read.warning, None);
}

#[test]
fn restore_and_destroy_answers() {
    agrees::<wire::SecretVersion>(&SecretVersionView::from(&record()));
    for one_shot_holders in [0, 2] {
        let destroyed = DestroyedVersion {
            record: record(),
            one_shot_holders,
        };
        let read: wire::DestroyedVersion = agrees(&DestroyedVersionView::new(&destroyed, 1));
        assert_eq!(read.warning.is_some(), one_shot_holders > 0);
    }
}

#[test]
fn deleted_secrets_listing_and_purge() {
    let deleted = DeletedSecret {
        record: record(),
        deleted_at: NOW,
        deleted_by: Some("AbCd1234".into()),
    };
    let view = DeletedSecretsView {
        deleted_secrets: vec![DeletedSecretView::new(&deleted, 7 * 24 * 60 * MINUTE)],
    };
    agrees::<wire::DeletedSecrets>(&view);
    agrees::<wire::PurgedSecret>(&PurgedSecretView {
        id: "sec_1".into(),
        name: "db-url".into(),
        purged: true,
    });
}

#[test]
fn audit_events_page() {
    let event = |detail: Option<&str>| StoredEvent {
        event: AuditEvent {
            chain: "node-1".into(),
            seq: 7,
            time: NOW,
            actor_key: Some("AbCd1234".into()),
            actor_type: Some("PERSONAL".into()),
            actor_user: Some("usr_1".into()),
            org_id: Some("org_1".into()),
            team_id: Some("team_1".into()),
            action: "secret.write".into(),
            target_id: Some("sec_1".into()),
            target_name: Some("db-url".into()),
            result: "ok".into(),
            request_id: Some("req-1".into()),
            client: Some("10.0.0.7".into()),
            detail: detail.map(Into::into),
        },
        mac: [7; 32],
    };
    let page = AuditEventsView {
        events: vec![
            AuditEventView::from(event(Some(r#"{"version":2}"#))),
            AuditEventView::from(event(None)),
        ],
        next_cursor: Some("next".into()),
    };
    let read: wire::AuditEvents = agrees(&page);
    assert_eq!(read.events[0].detail.as_deref(), Some(r#"{"version":2}"#));
}

#[test]
fn runtime_single_secret() {
    let view = RuntimeOneSecretView {
        name: "db-url",
        value: "not-a-real-value",
        version: 2,
        fingerprint: "f1",
    };
    let read: OneSecret<String> = agrees(&view);
    assert_eq!(read.value, "not-a-real-value");
}

/// The timestamps the views write are what the wire types call RFC 3339.
#[test]
fn timestamps_are_rfc3339_text() {
    let v: Value = serde_json::to_value(Timestamp(NOW)).unwrap();
    assert!(v.as_str().unwrap().ends_with('Z'), "{v}");
}
