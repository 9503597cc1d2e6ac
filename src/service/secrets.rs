//! Secrets: upsert, list, delete. Values go in; only metadata comes out.

use super::{Service, ServiceError, ServiceResult, TeamRef};
use crate::crypto::{Envelope, SecretPlace};
use crate::domain::access::{authorize_org, authorize_team, OrgAction, Principal, TeamAction};
use crate::domain::ids::new_id;
use crate::domain::secret_name::SecretName;
use crate::domain::secret_value::SecretValue;
use crate::domain::time::now_micros;
use crate::domain::types::{SecretRecord, SecretSummary};

/// One team's secrets, as listings show them.
pub struct TeamSecrets {
    pub team_name: String,
    pub secrets: Vec<SecretSummary>,
}

impl Service {
    pub fn parse_secret_name(&self, raw: &str) -> ServiceResult<SecretName> {
        SecretName::parse(raw).map_err(|e| ServiceError::Invalid(e.to_string()))
    }

    fn check_value(&self, value: &SecretValue) -> ServiceResult<()> {
        let max = self.limits.max_value_bytes;
        if value.len() > max {
            return Err(ServiceError::Invalid(format!(
                "secret value is {} bytes; the limit is {max} bytes",
                value.len()
            )));
        }
        Ok(())
    }

    pub async fn upsert_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
        value: SecretValue,
    ) -> ServiceResult<SecretRecord> {
        let name = self.parse_secret_name(name)?;
        self.check_value(&value)?;
        let access = self.team_access(p, team, TeamAction::WriteSecrets).await?;
        let keyring = self.keyring.clone();
        let org_id = access.org_id().to_owned();
        let team_id = access.team_id().to_owned();
        let seal = Box::new(move |secret_id: &str, version: i64| {
            let place = SecretPlace {
                org_id: &org_id,
                team_id: &team_id,
                secret_id,
                version,
            };
            Envelope::new(&keyring).seal(place, &value)
        });
        let write = self
            .store
            .upsert_secret(&access, &name, new_id(), now_micros(), seal)
            .await?;
        // Durable now: wake this team's waiting workloads.
        self.notifier.publish(access.team_id(), write.revision);
        metrics::counter!("tessera_secret_writes_total").increment(1);
        Ok(write.record)
    }

    pub async fn list_team_secrets(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
    ) -> ServiceResult<TeamSecrets> {
        let access = self.team_access(p, team, TeamAction::ReadSecrets).await?;
        Ok(TeamSecrets {
            secrets: self.store.list_secrets(&access).await?,
            team_name: access.team_name().to_owned(),
        })
    }

    /// Every secret the caller can reach, across the teams of its organization.
    pub async fn list_all_secrets(&self, p: &Principal) -> ServiceResult<Vec<TeamSecrets>> {
        let org = authorize_org(p, OrgAction::ListSecrets)?;
        let teams = self.store.list_teams(&org).await?;
        let mut out = Vec::new();
        for team in &teams {
            if let Ok(access) = authorize_team(p, team, TeamAction::ReadSecrets) {
                out.push(TeamSecrets {
                    secrets: self.store.list_secrets(&access).await?,
                    team_name: access.team_name().to_owned(),
                });
            }
        }
        Ok(out)
    }

    pub async fn delete_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
    ) -> ServiceResult<SecretRecord> {
        let name = self.parse_secret_name(name)?;
        let access = self.team_access(p, team, TeamAction::WriteSecrets).await?;
        let write = self
            .store
            .delete_secret(&access, name.canonical())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "no secret named {:?} in team {:?}",
                    name.as_str(),
                    access.team_name()
                ))
            })?;
        self.notifier.publish(access.team_id(), write.revision);
        Ok(write.record)
    }

    /// Opens the latest value of a secret. Not reachable through the
    /// management API (values are write-only there); used by the delivery
    /// path and by operators' verification tooling.
    pub async fn reveal_secret(
        &self,
        p: &Principal,
        team: TeamRef<'_>,
        name: &str,
    ) -> ServiceResult<SecretValue> {
        let name = self.parse_secret_name(name)?;
        let access = self.team_access(p, team, TeamAction::ReadSecrets).await?;
        let stored = self
            .store
            .latest_secret(&access, name.canonical())
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("no secret named {:?}", name.as_str()))
            })?;
        let r = &stored.record;
        let place = SecretPlace {
            org_id: &r.org_id,
            team_id: &r.team_id,
            secret_id: &r.id,
            version: r.version,
        };
        Envelope::new(&self.keyring)
            .open(place, &stored.ciphertext)
            .map_err(|e| ServiceError::Internal(format!("secret {} failed to open: {e}", r.id)))
    }
}
