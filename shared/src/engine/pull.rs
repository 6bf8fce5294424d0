//! Pull: the changes between the request's cookie and the space's current version, read
//! with a read-committed query and validated as one snapshot before they are answered.

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::debug;

use super::{Attempt, Caller, Engine, EngineError};
use crate::app::Operation;
use crate::cookie::{self, Base};
use crate::protocol::{PatchOp, PullRequest, PullResponse, Reply, VersionType};
use crate::snapshot::changes_at;
use crate::store::{all_pages, Address, Record};

impl Engine {
    /// Answers a pull: cookie, lmid changes of the caller's client group, and patch, all from
    /// one snapshot of the space.
    pub async fn pull(
        &self,
        caller: &Caller,
        req: &PullRequest,
    ) -> Result<Reply<PullResponse>, EngineError> {
        if let Some(e) =
            self.version_error(req.pull_version, VersionType::Pull, &req.schema_version)
        {
            return Ok(Reply::Error(e));
        }
        super::validate_id("clientGroupID", &req.client_group_id)?;
        self.authorize(caller, Operation::Pull).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.pull_attempt(caller, req).await {
                Ok(response) => return Ok(Reply::Ok(response)),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => {
                    debug!(attempt, %why, "pull saw a partial commit; retrying");
                    if attempt >= self.config.max_attempts {
                        return Err(EngineError::Unavailable(format!(
                            "no consistent snapshot after {attempt} attempts: {why}"
                        )));
                    }
                    self.back_off(attempt).await;
                }
            }
        }
    }

    async fn pull_attempt(
        &self,
        caller: &Caller,
        req: &PullRequest,
    ) -> Result<PullResponse, Attempt> {
        let space = caller.space.as_str();
        let got = self
            .store
            .get(&[
                Address::Space {
                    space: space.to_owned(),
                },
                Address::Group {
                    group: req.client_group_id.clone(),
                },
            ])
            .await?;
        let (version, epoch) = match &got[0] {
            Some(Record::Space(m)) => (m.version, m.epoch.clone()),
            _ => (0, String::new()),
        };
        if let Some(Record::Group(g)) = &got[1] {
            super::check_group(g, caller)?;
        }
        let base = cookie::base_for(&req.cookie, version, &epoch);
        let next = cookie::next_cookie(&base, version, &epoch);
        let after = match &base {
            Base::Version(c) => c.version,
            Base::Null | Base::Reset { .. } => 0,
        };
        let records = if after == version {
            Vec::new()
        } else {
            let store = self.store.as_ref();
            all_pages(|page| store.changes(space, after, page)).await?
        };
        let latest = changes_at(records, after, version, self.config.commit_log_slots)
            .map_err(Attempt::Retry)?;

        let full = !matches!(base, Base::Version(_));
        let mut patch = Vec::new();
        if full {
            patch.push(PatchOp::Clear);
        }
        let mut lmids = BTreeMap::new();
        for record in latest.into_values() {
            match record {
                Record::Entity(e) => match e.value {
                    Some(text) => patch.push(PatchOp::Put {
                        key: e.key,
                        value: serde_json::from_str(&text).unwrap_or(Value::Null),
                    }),
                    None if !full => patch.push(PatchOp::Del { key: e.key }),
                    None => {}
                },
                Record::Client(c) if c.group == req.client_group_id => {
                    lmids.insert(c.id, c.lmid);
                }
                _ => {}
            }
        }
        Ok(PullResponse {
            cookie: next.to_json(),
            last_mutation_id_changes: lmids,
            patch,
        })
    }
}
