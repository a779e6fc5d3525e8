//! Whether a policy's key layout fits Redis Cluster, checked before the
//! policy serves: on a cluster each atomic step and transaction must keep
//! to the keys of one slot, or the store refuses it request by request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::Policy;
use super::convert;
use super::limits::Limits;
use crate::error::Error;
use crate::loader::UserLoader;
use crate::store::{Command, MemoryStore, Reply, Store, StoreError, Transaction, key_slot};
use crate::types::{Settings, User, UserInfo};

/// The user whose operations the check runs.
const PROBE_USER: &str = "dsession-layout-probe";

/// Why a policy cannot run on a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotLayoutError {
    /// One of its atomic steps or transactions spans slots.
    #[error("{0}")]
    CrossSlot(CrossSlot),
    /// The policy failed while it was checked.
    #[error("the policy failed while its key layout was checked: {0}")]
    Policy(#[from] Error),
}

/// An atomic step or transaction over keys of several slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossSlot {
    /// The operation, as the policy exports it (`set-token`, …).
    pub operation: &'static str,
    /// `an atomic step` or `a transaction`.
    pub step: &'static str,
    /// Each key the step touched and its slot.
    pub keys: Vec<(String, u16)>,
}

impl fmt::Display for CrossSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self
            .keys
            .iter()
            .map(|(key, slot)| format!("{key:?} in slot {slot}"))
            .collect::<Vec<_>>()
            .join(", ");
        write!(
            f,
            "this policy cannot run on a Redis Cluster: its {} runs {} over keys in \
             different slots ({keys}), because its keys for one user fall in different \
             slots, so the cluster would refuse it. Use a policy that puts one hash tag per \
             user in every key, such as the built-in hardened policy (--policy hardened, or \
             path = \"hardened\" under [policy])",
            self.operation, self.step
        )
    }
}

/// Runs every operation of `policy`, with these settings, for one user on
/// an in-memory store, and checks that each atomic step and transaction it
/// runs keeps to the keys of one Redis Cluster slot. The service runs this
/// at start and before a reload when its store is a cluster; an embedder
/// on a [`crate::store::ClusterStore`] can run it before serving.
pub async fn check_slot_layout(
    policy: &Policy,
    settings: &Settings,
    policy_config: &BTreeMap<String, String>,
) -> Result<(), SlotLayoutError> {
    let recorder = Recorder::default();
    let loader: Arc<dyn UserLoader> =
        Arc::new(|_: String| async { Ok(Some(serde_json::json!({}))) });
    let instances = policy.instances(
        Limits::default(),
        Arc::new(recorder.clone()),
        Some(loader),
        policy_config,
    );
    let settings = &convert::settings(settings.clone(), true);
    let ids = [PROBE_USER.to_owned()];
    let first = instances
        .token_manage(async |api, s| api.call_set_token(s, settings, PROBE_USER, 600).await)
        .await?
        .token;
    recorder.check("set-token")?;
    let second = instances
        .token_manage(async |api, s| api.call_set_token(s, settings, PROBE_USER, 600).await)
        .await?
        .token;
    recorder.check("set-token")?;
    instances
        .token_manage(async |api, s| api.call_check_token(s, settings, &first).await)
        .await?
        .map(User::try_from)
        .transpose()?;
    recorder.check("check-token")?;
    instances
        .token_manage(async |api, s| {
            api.call_check_token_or_update_user(s, settings, &second, 60)
                .await
        })
        .await?
        .map(User::try_from)
        .transpose()?;
    recorder.check("check-token-or-update-user")?;
    allow_not_found(
        instances
            .token_manage(async |api, s| api.call_refresh_token(s, settings, &second, 600).await)
            .await,
    )?;
    recorder.check("refresh-token")?;
    instances
        .token_manage(async |api, s| api.call_list_user_token(s, settings, PROBE_USER).await)
        .await?;
    recorder.check("list-user-token")?;
    UserInfo::try_from(
        instances
            .token_manage(async |api, s| api.call_add_user(s, settings, PROBE_USER, 60).await)
            .await?,
    )?;
    recorder.check("add-user")?;
    instances
        .token_manage(async |api, s| api.call_refresh_user(s, settings, &ids, 60).await)
        .await?;
    recorder.check("refresh-user")?;
    instances
        .token_manage(async |api, s| api.call_delete_user(s, settings, PROBE_USER).await)
        .await?;
    recorder.check("delete-user")?;
    instances
        .token_manage(async |api, s| api.call_delete_token(s, settings, &second).await)
        .await?;
    recorder.check("delete-token")?;
    instances
        .token_manage(async |api, s| api.call_delete_user_token(s, settings, PROBE_USER).await)
        .await?;
    recorder.check("delete-user-token")?;
    Ok(())
}

fn allow_not_found<T>(outcome: crate::Result<T>) -> crate::Result<()> {
    match outcome {
        Ok(_) | Err(Error::NotFound) => Ok(()),
        Err(error) => Err(error),
    }
}

/// One atomic step or transaction and the keys it touched.
struct Step {
    step: &'static str,
    keys: Vec<String>,
}

/// A memory store that records the keys of each atomic step and
/// transaction since the last check.
#[derive(Clone, Default)]
struct Recorder {
    inner: Arc<MemoryStore>,
    steps: Arc<Mutex<Vec<Step>>>,
}

impl Recorder {
    fn record(&self, step: &'static str, keys: Vec<String>) -> usize {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.push(Step { step, keys });
        steps.len() - 1
    }

    /// The first step since the last check that spans slots.
    fn check(&self, operation: &'static str) -> Result<(), SlotLayoutError> {
        let steps = std::mem::take(&mut *self.steps.lock().unwrap_or_else(|p| p.into_inner()));
        for step in steps {
            let slots: BTreeMap<String, u16> = step
                .keys
                .into_iter()
                .map(|key| {
                    let slot = key_slot(&key);
                    (key, slot)
                })
                .collect();
            let first = slots.values().next();
            if slots.values().any(|slot| Some(slot) != first) {
                return Err(SlotLayoutError::CrossSlot(CrossSlot {
                    operation,
                    step: step.step,
                    keys: slots.into_iter().collect(),
                }));
            }
        }
        Ok(())
    }
}

fn keys(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .flat_map(Command::keys)
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl Store for Recorder {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.inner.batch(commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.record("an atomic step", keys(&commands));
        self.inner.atomic(commands).await
    }

    async fn watch(
        &self,
        watched: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        let mut touched = watched.clone();
        touched.extend(keys(&reads));
        let index = self.record("a transaction", touched);
        let (inner, replies) = self.inner.watch(watched, reads).await?;
        let transaction = RecordedTransaction {
            inner,
            recorder: self.clone(),
            index,
        };
        Ok((Box::new(transaction), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
}

struct RecordedTransaction {
    inner: Box<dyn Transaction>,
    recorder: Recorder,
    index: usize,
}

#[async_trait]
impl Transaction for RecordedTransaction {
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        if let Some(step) = self
            .recorder
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(self.index)
        {
            step.keys.extend(keys(&commands));
        }
        self.inner.commit(commands).await
    }
}
