//! What the cases run on: managers of the policy over the kit's store
//! behind a counting tap, or over a store that cannot be reached, with a
//! loader that answers or fails, and the run's own user ids.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::loader::{LoadFailure, LoaderError};
use crate::manager::SessionManager;
use crate::policy::Policy;
use crate::policy::limits::Limits;
use crate::store::{Command, Counts, Reply, Store, StoreError, Tap, Transaction};
use crate::types::Settings;

/// The detail the kit's loader gives every user.
pub(super) fn detail_of(user_id: &str) -> serde_json::Value {
    serde_json::json!({ "name": user_id, "source": "dsession policy test" })
}

/// A store that cannot be reached: every call fails, as on a Redis that
/// is down.
struct Unreachable;

impl Unreachable {
    fn error<T>() -> Result<T, StoreError> {
        Err(StoreError::new(
            "the conformance kit's store is unreachable",
        ))
    }
}

#[async_trait]
impl Store for Unreachable {
    async fn batch(&self, _: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        Self::error()
    }

    async fn atomic(&self, _: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        Self::error()
    }

    async fn watch(
        &self,
        _: Vec<String>,
        _: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        Self::error()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Self::error()
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
    policy_config: BTreeMap<String, String>,
    limits: Limits,
    run_id: String,
    users: Mutex<Vec<String>>,
}

impl Rig {
    pub(super) fn new(
        policy: &Policy,
        store: &Arc<dyn Store>,
        policy_config: &BTreeMap<String, String>,
        limits: Limits,
    ) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Self {
            policy: policy.clone(),
            tap: Tap::shared(Arc::clone(store)),
            policy_config: policy_config.clone(),
            limits,
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
        self.manager_on(Arc::new(self.tap.clone()), settings, loader)
    }

    /// A manager of the policy on a store that cannot be reached.
    pub(super) fn unreachable(&self) -> SessionManager {
        self.manager_on(
            Arc::new(Unreachable),
            Self::settings(false),
            Loader::Answers,
        )
    }

    fn manager_on(
        &self,
        store: Arc<dyn Store>,
        settings: Settings,
        loader: Loader,
    ) -> SessionManager {
        let builder = SessionManager::builder()
            .policy(self.policy.clone())
            .shared_store(store)
            .settings(settings)
            .limits(self.limits)
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

    /// Revokes every token and user-info entry of the run's users.
    pub(super) async fn clean_up(&self) {
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
