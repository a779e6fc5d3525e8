//! Whether a policy's key layout fits Redis Cluster, checked before the
//! policy serves: on a cluster each atomic step and transaction must keep
//! to the keys of one slot, or the store refuses it request by request.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Policy;
use super::convert;
use super::host::{PolicyStore, Returned};
use super::limits::Limits;
use super::pool::Instances;
use crate::error::Error;
use crate::loader::UserLoader;
use crate::store::{Call, Command, MemoryStore, Tap, key_slot};
use crate::types::{Settings, User, UserInfo};
use crate::wit::token_manage::Guest;
use crate::wit::{WitAttributes, WitPageRequest};

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

/// Runs the self-check and every operation of `policy`, with these
/// settings, for one user on
/// an in-memory store, and checks that each atomic step and transaction it
/// runs keeps to the keys of one Redis Cluster slot. The service runs this
/// at start and before a reload when its store is a cluster; an embedder
/// on a [`crate::store::ClusterStore`] can run it before serving.
pub async fn check_slot_layout(
    policy: &Policy,
    settings: &Settings,
    policy_config: &BTreeMap<String, String>,
) -> Result<(), SlotLayoutError> {
    let tap = Tap::recording(MemoryStore::new());
    let loader: Arc<dyn UserLoader> =
        Arc::new(|_: String| async { Ok(Some(serde_json::json!({}))) });
    let instances = policy.instances(
        Limits::default(),
        Arc::new(tap.clone()),
        Some(loader),
        policy_config,
    );
    let probe = Probe { instances, tap };
    let settings = &convert::settings(settings.clone(), true, true);
    let ids = [PROBE_USER.to_owned()];
    probe
        .run("self-check", async |api, s| {
            api.call_self_check(s, settings).await
        })
        .await??;
    // Every attribute, so that the keys a policy keeps them in are probed.
    let attributes = WitAttributes {
        device: Some("probe".into()),
        user_agent: Some("dsession slot-layout probe".into()),
        ip: Some("127.0.0.1".into()),
        labels: vec![("probe".into(), "1".into())],
    };
    let set_token = async |api: &Guest, s: &mut PolicyStore| {
        api.call_set_token(s, settings, PROBE_USER, 600, &attributes)
            .await
    };
    let first = probe.run("set-token", set_token).await??.token;
    let second = probe.run("set-token", set_token).await??.token;
    probe
        .run("check-token", async |api, s| {
            api.call_check_token(s, settings, &first).await
        })
        .await??
        .map(User::try_from)
        .transpose()?;
    probe
        .run("check-token-or-update-user", async |api, s| {
            api.call_check_token_or_update_user(s, settings, &second, 60)
                .await
        })
        .await??
        .map(User::try_from)
        .transpose()?;
    allow_not_found(
        probe
            .run("refresh-token", async |api, s| {
                api.call_refresh_token(s, settings, &second, 600).await
            })
            .await?,
    )?;
    probe
        .run("list-user-token", async |api, s| {
            let every = WitPageRequest {
                cursor: None,
                limit: 0,
            };
            api.call_list_user_token(s, settings, PROBE_USER, &every)
                .await
        })
        .await??;
    UserInfo::try_from(
        probe
            .run("add-user", async |api, s| {
                api.call_add_user(s, settings, PROBE_USER, 60).await
            })
            .await??,
    )?;
    probe
        .run("refresh-user", async |api, s| {
            api.call_refresh_user(s, settings, &ids, 60).await
        })
        .await??;
    probe
        .run("delete-user", async |api, s| {
            api.call_delete_user(s, settings, PROBE_USER).await
        })
        .await??;
    probe
        .run("delete-token", async |api, s| {
            api.call_delete_token(s, settings, &second).await
        })
        .await??;
    probe
        .run("delete-user-token", async |api, s| {
            api.call_delete_user_token(s, settings, PROBE_USER).await
        })
        .await??;
    Ok(())
}

/// A policy's instances on a recording store.
struct Probe {
    instances: Instances,
    tap: Tap,
}

impl Probe {
    /// Runs `operation` and checks the steps it took; the operation's own
    /// outcome comes back once the steps passed.
    async fn run<T>(
        &self,
        operation: &'static str,
        export: impl AsyncFnOnce(&Guest, &mut PolicyStore) -> Returned<T>,
    ) -> Result<crate::Result<T>, SlotLayoutError> {
        let outcome = self.instances.token_manage(export).await;
        check(&self.tap, operation)?;
        Ok(outcome)
    }
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
    transaction: Option<u64>,
    keys: Vec<String>,
}

/// The first atomic step or transaction `tap` saw since the last check
/// that spans slots.
fn check(tap: &Tap, operation: &'static str) -> Result<(), SlotLayoutError> {
    let mut steps: Vec<Step> = Vec::new();
    for call in tap.take_calls() {
        match call {
            Call::Batch(_) => {}
            Call::Atomic(commands) => steps.push(Step {
                step: "an atomic step",
                transaction: None,
                keys: keys(&commands),
            }),
            Call::Watch {
                transaction,
                keys: mut watched,
                reads,
            } => {
                watched.extend(keys(&reads));
                steps.push(Step {
                    step: "a transaction",
                    transaction: Some(transaction),
                    keys: watched,
                });
            }
            Call::Commit {
                transaction,
                commands,
            } => {
                if let Some(step) = steps
                    .iter_mut()
                    .find(|step| step.transaction == Some(transaction))
                {
                    step.keys.extend(keys(&commands));
                }
            }
        }
    }
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

fn keys(commands: &[Command]) -> Vec<String> {
    commands
        .iter()
        .flat_map(Command::keys)
        .map(str::to_owned)
        .collect()
}
