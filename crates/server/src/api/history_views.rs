//! Bodies of the history routes (extensions). Metadata only: no value and
//! no fingerprint ever appears here.

use super::views::Timestamp;
use crate::domain::time::Micros;
use crate::domain::types::SecretRecord;
use crate::service::history::{DestroyedVersion, Versions, ONE_SHOT_LISTED_FOR};
use crate::store::{Actor, Consumer, DeletedSecret, VersionRecord};
use serde::Serialize;
use utoipa::ToSchema;

/// Who wrote a version.
#[derive(Serialize, ToSchema)]
pub struct ActorView {
    /// The prefix of the API key that wrote it.
    pub key_prefix: Option<String>,
    /// The user behind that key (its owner, or who created a workspace key).
    pub user_id: Option<String>,
}

impl From<&Actor> for ActorView {
    fn from(a: &Actor) -> Self {
        Self {
            key_prefix: a.key_prefix.clone(),
            user_id: a.user_id.clone(),
        }
    }
}

/// A workload that received a version: its key and agent instance.
#[derive(Serialize, ToSchema)]
pub struct ConsumerView {
    pub key_prefix: String,
    /// The agent instance (`X-Tessera-Agent` header); empty when the
    /// client sent none.
    pub instance: String,
    /// What it said it is (`X-Tessera-Consumer-Kind`): `agent`,
    /// `supervisor` (`tessera run --watch`), `one-shot` (`tessera run`,
    /// which execs and never reports again: listed for 10 minutes after it
    /// was last seen and never blocking a destroy) or `unspecified`.
    #[schema(example = "agent")]
    pub kind: &'static str,
    /// The client's address when it was last seen.
    pub client: Option<String>,
    /// The version of this secret it last received.
    pub version: i64,
    #[schema(value_type = String)]
    pub received_at: Timestamp,
    #[schema(value_type = String)]
    pub last_seen_at: Timestamp,
}

impl From<&Consumer> for ConsumerView {
    fn from(c: &Consumer) -> Self {
        Self {
            key_prefix: c.key_prefix.clone(),
            instance: c.instance.clone(),
            kind: c.kind.as_str(),
            client: c.client.clone(),
            version: c.version,
            received_at: Timestamp(c.received_at),
            last_seen_at: Timestamp(c.last_seen_at),
        }
    }
}

/// One version of a secret.
#[derive(Serialize, ToSchema)]
pub struct VersionView {
    pub version: i64,
    /// When this version was written.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    pub created_by: ActorView,
    pub current: bool,
    /// Whether its value was destroyed (it can no longer be restored).
    pub destroyed: bool,
    #[schema(value_type = Option<String>)]
    pub destroyed_at: Option<Timestamp>,
    /// The consumers whose last delivery of this secret was this version.
    pub consumers: Vec<ConsumerView>,
}

/// A secret's versions, newest first.
#[derive(Serialize, ToSchema)]
pub struct SecretVersionsView {
    pub id: String,
    pub name: String,
    pub team_name: String,
    pub current_version: i64,
    pub versions: Vec<VersionView>,
}

impl From<&Versions> for SecretVersionsView {
    fn from(v: &Versions) -> Self {
        let r = &v.history.record;
        let view = |version: &VersionRecord| VersionView {
            version: version.version,
            created_at: Timestamp(version.written_at),
            created_by: (&version.actor).into(),
            current: version.current,
            destroyed: version.destroyed_at.is_some(),
            destroyed_at: version.destroyed_at.map(Timestamp),
            consumers: v
                .consumers
                .iter()
                .filter(|c| c.version == version.version)
                .map(ConsumerView::from)
                .collect(),
        };
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            team_name: r.team_name.clone(),
            current_version: r.version,
            versions: v.history.versions.iter().map(view).collect(),
        }
    }
}

/// How many consumers hold one version.
#[derive(Serialize, ToSchema)]
pub struct VersionCountView {
    pub version: i64,
    pub consumers: usize,
}

/// Who holds which version of a secret.
#[derive(Serialize, ToSchema)]
pub struct SecretConsumersView {
    pub id: String,
    pub name: String,
    pub team_name: String,
    pub current_version: i64,
    /// In words, e.g. "3 consumers: 2 on version 7, 1 on version 6, last
    /// seen 4 s ago".
    pub summary: String,
    /// Newest version first.
    pub by_version: Vec<VersionCountView>,
    pub consumers: Vec<ConsumerView>,
    /// Present when one-shot runs are listed: what they hold is a guess.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl SecretConsumersView {
    pub fn new(record: &SecretRecord, consumers: &[Consumer], now: Micros) -> Self {
        let mut by_version: Vec<VersionCountView> = Vec::new();
        for c in consumers {
            match by_version.iter_mut().find(|v| v.version == c.version) {
                Some(v) => v.consumers += 1,
                None => by_version.push(VersionCountView {
                    version: c.version,
                    consumers: 1,
                }),
            }
        }
        by_version.sort_by_key(|v| std::cmp::Reverse(v.version));
        Self {
            id: record.id.clone(),
            name: record.name.clone(),
            team_name: record.team_name.clone(),
            current_version: record.version,
            summary: summary(consumers, &by_version, now),
            warning: one_shot_warning(consumers),
            by_version,
            consumers: consumers.iter().map(ConsumerView::from).collect(),
        }
    }
}

fn one_shot_warning(consumers: &[Consumer]) -> Option<String> {
    let n = consumers
        .iter()
        .filter(|c| !c.kind.reports_while_alive())
        .count();
    (n > 0).then(|| {
        format!(
            "{n} of these {} one-shot run{} (`tessera run` without --watch): each received its \
             version once and execed; nothing reports when its command ends, so it is listed \
             for {} minutes after it was last seen and does not block a destroy",
            if n == 1 { "is a" } else { "are" },
            plural(n),
            ONE_SHOT_LISTED_FOR.as_secs() / 60
        )
    })
}

fn summary(consumers: &[Consumer], by_version: &[VersionCountView], now: Micros) -> String {
    let Some(last) = consumers.iter().map(|c| c.last_seen_at).max() else {
        return "no consumers".into();
    };
    let n = consumers.len();
    let parts: Vec<String> = by_version
        .iter()
        .map(|v| format!("{} on version {}", v.consumers, v.version))
        .collect();
    let ago = (now - last).max(0) / 1_000_000;
    let one_shot = consumers
        .iter()
        .filter(|c| !c.kind.reports_while_alive())
        .count();
    let kinds = match one_shot {
        0 => String::new(),
        n if n == consumers.len() => format!(" (one-shot run{})", plural(n)),
        n => format!(" ({n} of them one-shot run{})", plural(n)),
    };
    format!(
        "{n} consumer{}{kinds}: {}, last seen {ago} s ago",
        plural(n),
        parts.join(", ")
    )
}

/// A secret after a restore or an undelete.
#[derive(Serialize, ToSchema)]
pub struct SecretVersionView {
    pub id: String,
    pub name: String,
    pub team_name: String,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// Its current version now.
    pub version: i64,
}

impl From<&SecretRecord> for SecretVersionView {
    fn from(r: &SecretRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            team_name: r.team_name.clone(),
            created_at: Timestamp(r.created_at),
            version: r.version,
        }
    }
}

/// A destroyed version.
#[derive(Serialize, ToSchema)]
pub struct DestroyedVersionView {
    pub name: String,
    pub version: i64,
    pub destroyed: bool,
    /// Present when one-shot runs seen in the last 10 minutes had received
    /// this version: they do not block a destroy, but their commands may
    /// still be running with its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl DestroyedVersionView {
    pub fn new(d: &DestroyedVersion, version: i64) -> Self {
        let n = d.one_shot_holders;
        Self {
            name: d.record.name.clone(),
            version,
            destroyed: true,
            warning: (n > 0).then(|| {
                format!(
                    "{n} one-shot run{} received version {version} in the last {} minutes; \
                     nothing reports when their commands end, so they may still be using it",
                    plural(n),
                    ONE_SHOT_LISTED_FOR.as_secs() / 60
                )
            }),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A deleted secret that can still be undeleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedSecretView {
    pub id: String,
    pub name: String,
    pub team_name: String,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// Its version when it was deleted.
    pub version: i64,
    #[schema(value_type = String)]
    pub deleted_at: Timestamp,
    /// The prefix of the API key that deleted it.
    pub deleted_by: Option<String>,
    /// When the purge job removes it for good.
    #[schema(value_type = String)]
    pub purge_after: Timestamp,
}

impl DeletedSecretView {
    pub fn new(d: &DeletedSecret, keep_for: Micros) -> Self {
        Self {
            id: d.record.id.clone(),
            name: d.record.name.clone(),
            team_name: d.record.team_name.clone(),
            created_at: Timestamp(d.record.created_at),
            version: d.record.version,
            deleted_at: Timestamp(d.deleted_at),
            deleted_by: d.deleted_by.clone(),
            purge_after: Timestamp(d.deleted_at.saturating_add(keep_for)),
        }
    }
}

/// A team's deleted secrets, most recently deleted first.
#[derive(Serialize, ToSchema)]
pub struct DeletedSecretsView {
    pub deleted_secrets: Vec<DeletedSecretView>,
}

/// A purged deleted secret.
#[derive(Serialize, ToSchema)]
pub struct PurgedSecretView {
    pub id: String,
    pub name: String,
    pub purged: bool,
}
