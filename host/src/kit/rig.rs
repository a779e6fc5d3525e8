//! What the cases run on: managers of the policy over the kit's store,
//! behind a counting tap and a switch that takes the store down, with a
//! loader that answers or fails, and the run's own user ids.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::loader::{LoadFailure, LoaderError};
use crate::manager::SessionManager;
use crate::policy::Policy;
use crate::store::{Command, Counts, Reply, Store, StoreError, Tap, Transaction};
use crate::types::Settings;

/// The detail the kit's loader gives every user.
pub(super) fn detail_of(user_id: &str) -> serde_json::Value {
    serde_json::json!({ "name": user_id, "source": "dsession policy test" })
}

/// A store that fails every call while it is down, as an unreachable
/// Redis would.
struct Switch {
    inner: Arc<dyn Store>,
    down: Arc<AtomicBool>,
}

impl Switch {
    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new("the conformance kit took the store down"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for Switch {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.up()?;
        self.inner.batch(commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.up()?;
        self.inner.atomic(commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.up()?;
        self.inner.watch(keys, reads).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.up()?;
        self.inner.ready().await
    }

    fn is_sharded(&self) -> bool {
        self.inner.is_sharded()
    }
}

/// Whether a manager's loader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loader {
    /// Every user has [`detail_of`] them.
    Answers,
    /// Every load fails, as an unreachable database would.
    Fails,
}

/// The policy, the store and the run's bookkeeping.
pub(super) struct Rig {
    policy: Policy,
    tap: Tap,
    down: Arc<AtomicBool>,
    policy_config: BTreeMap<String, String>,
    run_id: String,
    users: Mutex<Vec<String>>,
}

impl Rig {
    pub(super) fn new(
        policy: &Policy,
        store: &Arc<dyn Store>,
        policy_config: &BTreeMap<String, String>,
    ) -> Self {
        let down = Arc::new(AtomicBool::new(false));
        let switch = Switch {
            inner: Arc::clone(store),
            down: Arc::clone(&down),
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Self {
            policy: policy.clone(),
            tap: Tap::new(switch),
            down,
            policy_config: policy_config.clone(),
            run_id: format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id()),
            users: Mutex::new(Vec::new()),
        }
    }

    /// The settings the kit runs with: their own key prefixes, so that a
    /// run on a shared Redis keeps apart from real sessions.
    pub(super) fn settings(single_mode: bool) -> Settings {
        Settings {
            token_key_prefix: "dsession-kit-token".into(),
            user_key_prefix: "dsession-kit-user".into(),
            default_expire_seconds: 3600,
            index_expire_seconds: 3600,
            single_mode,
        }
    }

    /// A manager of the policy on the kit's store.
    pub(super) fn manager(&self, settings: Settings, loader: Loader) -> SessionManager {
        let builder = SessionManager::builder()
            .policy(self.policy.clone())
            .shared_store(Arc::new(self.tap.clone()))
            .settings(settings)
            .policy_config(self.policy_config.clone());
        let builder = match loader {
            Loader::Answers => builder.loader(|user_id: String| async move {
                Ok::<_, LoaderError>(Some(detail_of(&user_id)))
            }),
            Loader::Fails => builder.loader(|_: String| async {
                Err::<Option<serde_json::Value>, LoaderError>(Box::new(LoadFailure::Unavailable(
                    "the conformance kit's loader is down".into(),
                )))
            }),
        };
        builder
            .build()
            .expect("a manager of a compiled policy builds")
    }

    /// A user id of this run's own, named after `what`; revoked at the end.
    pub(super) fn user(&self, what: &str) -> String {
        let user = format!("kit-{}-{what}", self.run_id);
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(user.clone());
        user
    }

    /// What reached the store since the last call.
    pub(super) fn counts(&self) -> Counts {
        self.tap.counters().take()
    }

    /// Takes the store down, or brings it back.
    pub(super) fn store_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Revokes every token and user-info entry of the run's users.
    pub(super) async fn clean_up(&self) {
        self.store_down(false);
        let manager = self.manager(Self::settings(false), Loader::Answers);
        let users = std::mem::take(&mut *self.users.lock().unwrap_or_else(|p| p.into_inner()));
        for user in users {
            if let Err(error) = manager.delete_user_token(&user).await {
                tracing::warn!(%user, %error, "the conformance kit could not revoke its user's tokens");
            }
            if let Err(error) = manager.delete_user(&user).await {
                tracing::warn!(%user, %error, "the conformance kit could not remove its user");
            }
        }
    }
}
