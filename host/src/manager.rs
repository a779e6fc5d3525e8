//! The embedding API: one async method per gosession operation, and
//! validated policy swaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::Instrument as _;

use crate::error::{Error, Result, SetupError};
use crate::loader::{CoalescingLoader, LoaderOptions, UserLoader};
use crate::observe::{Observer, Operation, Outcome, Unobserved};
use crate::policy::{
    Call, Instances, Limits, Policy, WitIssuedToken, WitSettings, WitTokenEntry, WitUser,
    WitUserInfo,
};
use crate::policy_config;
use crate::runtime::Runtime;
use crate::store::{MemoryStore, Store};
use crate::types::{IssuedToken, Settings, TokenEntry, User, UserInfo};

/// Builds a [`SessionManager`].
#[derive(Default)]
pub struct SessionManagerBuilder {
    store: Option<Arc<dyn Store>>,
    loader: Option<Arc<dyn UserLoader>>,
    loader_options: LoaderOptions,
    policy: Option<Policy>,
    settings: Settings,
    limits: Limits,
    policy_config: BTreeMap<String, String>,
    runtime: Option<Runtime>,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("settings", &self.settings)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SessionManagerBuilder {
    /// Where tokens live; the embedded [`MemoryStore`] when not set.
    pub fn store(self, store: impl Store) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Like [`Self::store`], for a store that is shared already.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where user detail comes from when the user-info cache has none; no
    /// loader means no detail beyond the cache.
    pub fn loader(self, loader: impl UserLoader) -> Self {
        self.shared_loader(Arc::new(loader))
    }

    /// Like [`Self::loader`], for a loader that is shared already.
    pub fn shared_loader(mut self, loader: Arc<dyn UserLoader>) -> Self {
        self.loader = Some(loader);
        self
    }

    /// Timeout and "no detail" memory of the loader; see [`LoaderOptions`].
    pub fn loader_options(mut self, options: LoaderOptions) -> Self {
        self.loader_options = options;
        self
    }

    /// The wasm runtime the built-in policy is compiled on when no policy
    /// is given; [`Runtime::shared`] when not set. A policy given with
    /// [`Self::policy`] runs on the runtime it was compiled on, which must
    /// be this one when both are set.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Receives every operation's outcome and duration, every loader call
    /// and every policy reload, e.g. to export metrics. None by default.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The policy; the built-in one when not set.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Prefixes, default expiry and single mode.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Time and memory limits per call.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The policy's own settings, which it reads through
    /// `wasi:config/store`; added to those given before, a key given again
    /// replaces its value. None by default. A policy that does not read
    /// them ignores them.
    pub fn policy_config<K, V>(mut self, config: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.policy_config
            .extend(config.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Builds the manager, compiling the built-in policy if none was given.
    /// Nothing is called yet: [`Self::build_checked`] also shows that the
    /// policy takes the settings.
    pub fn build(self) -> Result<SessionManager, SetupError> {
        let policy = match (self.policy, &self.runtime) {
            (Some(policy), Some(runtime)) if policy.runtime() != runtime => {
                return Err(SetupError::Runtime(
                    "the policy was compiled on another runtime than the one given to the builder"
                        .into(),
                ));
            }
            (Some(policy), _) => policy,
            (None, Some(runtime)) => runtime.builtin_policy("default")?,
            (None, None) => Policy::builtin()?,
        };
        let settings = WitSettings {
            token_key_prefix: self.settings.token_key_prefix,
            user_key_prefix: self.settings.user_key_prefix,
            default_expire_seconds: self.settings.default_expire_seconds,
            index_expire_seconds: self.settings.index_expire_seconds,
            single_mode: self.settings.single_mode,
            user_loader: self.loader.is_some(),
        };
        let observer = self.observer.unwrap_or_else(|| Arc::new(Unobserved));
        // Every loader, the embedder's closure too, is called through the
        // coalescing front.
        let coalescing = self.loader.map(|loader| {
            CoalescingLoader::observed(loader, self.loader_options, Arc::clone(&observer))
        });
        let loader = coalescing
            .clone()
            .map(|loader| Arc::new(loader) as Arc<dyn UserLoader>);
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let instances = Instances::new(
            policy,
            self.limits,
            Arc::clone(&store),
            loader.clone(),
            policy_config::variables(&self.policy_config),
        );
        Ok(SessionManager(Arc::new(Shared {
            store,
            loader,
            coalescing,
            instances: RwLock::new(Arc::new(instances)),
            settings,
            limits: self.limits,
            policy_config: self.policy_config,
            observer,
            swapping: tokio::sync::Mutex::new(()),
        })))
    }

    /// Builds the manager and makes one call that shows the policy takes
    /// the settings and the policy config on this store, so that a bad
    /// setting fails here rather than on every request.
    pub async fn build_checked(self) -> Result<SessionManager, SetupError> {
        let sessions = self.build()?;
        sessions.try_policy(&sessions.policy()).await?;
        Ok(sessions)
    }
}

/// Issues, checks, refreshes, lists and revokes session tokens through a
/// policy component and a store. Cloning is cheap and shares everything;
/// each method runs in a policy instance of this manager's own (see
/// [`Limits::reuse`]) inside a `tracing` span `dsession` whose `operation`
/// field names it.
#[derive(Clone)]
pub struct SessionManager(Arc<Shared>);

struct Shared {
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    /// The same loader as `loader`, for its counts and readiness.
    coalescing: Option<CoalescingLoader>,
    /// The current policy's instances; replaced whole by a swap.
    instances: RwLock<Arc<Instances>>,
    settings: WitSettings,
    /// The policy's `wasi:config` settings; each pool of instances reads
    /// them from its own copy.
    policy_config: BTreeMap<String, String>,
    limits: Limits,
    observer: Arc<dyn Observer>,
    /// Held by a checked swap, so that swaps happen one at a time.
    swapping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("limits", &self.0.limits)
            .finish_non_exhaustive()
    }
}

/// Runs one export of the policy in an instance of its pool, in a span
/// whose `operation` field names it, and reports its outcome to the observer.
macro_rules! call {
    ($manager:ident, $operation:ident, $export:ident ( $($arg:expr),* )) => {{
        let started = Instant::now();
        let span = tracing::debug_span!("dsession", operation = Operation::$operation.as_str());
        let outcome = async {
            let mut call = $manager.start().await?;
            let (api, store) = call.parts();
            let outcome = api.$export(store, &$manager.0.settings $(, $arg)*).await;
            call.finish(outcome)
        }
        .instrument(span)
        .await;
        $manager.0.observer.operation(Operation::$operation, Outcome::of(&outcome), started.elapsed());
        outcome
    }};
}

impl SessionManager {
    /// A builder with the memory store, the built-in policy and gosession's
    /// default settings.
    pub fn builder() -> SessionManagerBuilder {
        SessionManagerBuilder::default()
    }

    /// The store this manager uses.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The loader, as every call reaches it; None without one.
    pub fn loader(&self) -> Option<&CoalescingLoader> {
        self.0.coalescing.as_ref()
    }

    /// The observer given to the builder, e.g. to report events of one's
    /// own beside the manager's.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.0.observer
    }

    /// The policy serving now.
    pub fn policy(&self) -> Policy {
        self.current().policy().clone()
    }

    fn current(&self) -> Arc<Instances> {
        Arc::clone(&self.0.instances.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn instances(&self, policy: Policy) -> Instances {
        Instances::new(
            policy,
            self.0.limits,
            Arc::clone(&self.0.store),
            self.0.loader.clone(),
            policy_config::variables(&self.0.policy_config),
        )
    }

    /// The settings as the builder was given them.
    #[cfg(feature = "redis")]
    fn given_settings(&self) -> Settings {
        let settings = &self.0.settings;
        Settings {
            token_key_prefix: settings.token_key_prefix.clone(),
            user_key_prefix: settings.user_key_prefix.clone(),
            default_expire_seconds: settings.default_expire_seconds,
            index_expire_seconds: settings.index_expire_seconds,
            single_mode: settings.single_mode,
        }
    }

    /// Replaces the policy without checking it, and without waiting for a
    /// reload in flight (which may then replace it in turn). Calls already
    /// running finish on the old one; its instances are then dropped, never
    /// reused. [`Self::reload_policy`] checks first and runs one at a time.
    pub fn swap_policy(&self, policy: Policy) {
        let instances = self.instances(policy);
        *self.0.instances.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(instances);
    }

    /// One call of `policy` with this manager's settings, policy config and
    /// store, in an instance of its own, and on a sharded store (Redis
    /// Cluster) [`crate::check_slot_layout`]: the check every swap passes.
    async fn try_policy(&self, policy: &Policy) -> Result<(), SetupError> {
        let trial = Arc::new(self.instances(policy.clone()));
        // A well-formed token nobody holds.
        let probe = "dsession-startup-check_00000000000000000000000000000000";
        let outcome = async {
            let mut call = Call::start(trial).await?;
            let (api, store) = call.parts();
            let outcome = api.call_check_token(store, &self.0.settings, probe).await;
            call.finish(outcome)
        }
        .await;
        match outcome {
            Err(Error::InvalidArgument(reason)) => Err(SetupError::Settings(format!(
                "the policy rejects the settings: {reason}"
            ))),
            Err(error) if error.is_unavailable() => Err(SetupError::Store(format!(
                "the first call to the policy could not reach the store or loader: {error}"
            ))),
            Err(error) => Err(SetupError::Settings(format!(
                "the first call to the policy failed: {error}"
            ))),
            #[cfg(feature = "redis")]
            Ok(_) if self.0.store.is_sharded() => {
                crate::check_slot_layout(policy, &self.given_settings(), &self.0.policy_config)
                    .await
                    .map_err(|error| SetupError::Policy(error.to_string()))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Swaps `policy` in once one call shows it takes this manager's
    /// settings and policy config; on failure the old policy serves on.
    /// Swaps run one at a time. The observer sees each attempt.
    pub async fn reload_policy(&self, policy: Policy) -> Result<(), SetupError> {
        let _one_at_a_time = self.0.swapping.lock().await;
        self.reload_locked(policy).await
    }

    /// Checks and swaps in `policy`; the caller holds `swapping`.
    async fn reload_locked(&self, policy: Policy) -> Result<(), SetupError> {
        let outcome = if policy.runtime() != self.policy().runtime() {
            Err(SetupError::Runtime(
                "the new policy was compiled on another runtime than the manager's".into(),
            ))
        } else {
            self.try_policy(&policy).await
        };
        self.0.observer.policy_reload(outcome.is_ok());
        if outcome.is_ok() {
            self.swap_policy(policy);
        }
        outcome
    }

    /// Compiles `path` (a `.wasm` file, or a built-in policy's name) on the
    /// manager's runtime, off the async threads, then swaps it in as
    /// [`Self::reload_policy`] does. Returns the new policy.
    pub async fn reload_policy_from(&self, path: impl AsRef<Path>) -> Result<Policy, SetupError> {
        // Held from the compile on, so that overlapping reloads of a file
        // take effect in the order they started.
        let _one_at_a_time = self.0.swapping.lock().await;
        let runtime = self.policy().runtime().clone();
        let path: PathBuf = path.as_ref().to_owned();
        let compiled = tokio::task::spawn_blocking(move || runtime.load_policy(&path))
            .await
            .map_err(|e| SetupError::Policy(format!("the policy compiler failed: {e}")));
        let policy = match compiled {
            Ok(Ok(policy)) => policy,
            Ok(Err(error)) | Err(error) => {
                self.0.observer.policy_reload(false);
                return Err(error);
            }
        };
        self.reload_locked(policy.clone()).await?;
        Ok(policy)
    }

    async fn start(&self) -> Result<Call> {
        Call::start(self.current()).await
    }

    /// Issues a token for `user_id`, valid `ttl_seconds` (0: the default).
    /// In single mode the user's other tokens are revoked at once.
    pub async fn set_token(&self, user_id: &str, ttl_seconds: i64) -> Result<IssuedToken> {
        call!(self, SetToken, call_set_token(user_id, ttl_seconds)).map(IssuedToken::from)
    }

    /// Extends a live token to `ttl_seconds` from now (0: the default) and
    /// returns its new expiry; [`Error::NotFound`] when it is not live.
    pub async fn refresh_token(&self, token: &str, ttl_seconds: i64) -> Result<i64> {
        call!(self, RefreshToken, call_refresh_token(token, ttl_seconds))
    }

    /// Revokes a token; revoking a dead one is fine.
    pub async fn delete_token(&self, token: &str) -> Result<()> {
        call!(self, DeleteToken, call_delete_token(token))
    }

    /// The user of a live token, without detail; `None` when the token is
    /// dead or malformed.
    pub async fn check_token(&self, token: &str) -> Result<Option<User>> {
        call!(self, CheckToken, call_check_token(token))
            .and_then(|user| user.map(User::try_from).transpose())
    }

    /// The user of a live token with detail from the user-info cache, or
    /// from the loader (then cached for `user_ttl_seconds`).
    pub async fn check_token_or_update_user(
        &self,
        token: &str,
        user_ttl_seconds: i64,
    ) -> Result<Option<User>> {
        call!(
            self,
            CheckTokenOrUpdateUser,
            call_check_token_or_update_user(token, user_ttl_seconds)
        )
        .and_then(|user| user.map(User::try_from).transpose())
    }

    /// The live tokens of a user, sorted by token.
    pub async fn list_user_token(&self, user_id: &str) -> Result<Vec<TokenEntry>> {
        call!(self, ListUserToken, call_list_user_token(user_id))
            .map(|entries| entries.into_iter().map(TokenEntry::from).collect())
    }

    /// Revokes every token of a user.
    pub async fn delete_user_token(&self, user_id: &str) -> Result<()> {
        call!(self, DeleteUserToken, call_delete_user_token(user_id))
    }

    /// Reloads the user-info cache of each user from the loader.
    pub async fn refresh_user(&self, user_ids: &[String], user_ttl_seconds: i64) -> Result<()> {
        call!(
            self,
            RefreshUser,
            call_refresh_user(user_ids, user_ttl_seconds)
        )
    }

    /// Removes a user's user-info cache entry.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        call!(self, DeleteUser, call_delete_user(user_id))
    }

    /// Loads a user from the loader into the user-info cache for
    /// `user_ttl_seconds` and returns what was cached.
    pub async fn add_user(&self, user_id: &str, user_ttl_seconds: i64) -> Result<UserInfo> {
        call!(self, AddUser, call_add_user(user_id, user_ttl_seconds)).and_then(UserInfo::try_from)
    }
}

fn detail(json: Option<String>) -> Result<Option<serde_json::Value>> {
    json.map(|json| {
        serde_json::from_str(&json)
            .map_err(|e| Error::Policy(format!("the policy returned detail that is not JSON: {e}")))
    })
    .transpose()
}

impl From<WitIssuedToken> for IssuedToken {
    fn from(token: WitIssuedToken) -> Self {
        Self {
            token: token.token,
            token_expire_time: token.token_expire_time,
        }
    }
}

impl From<WitTokenEntry> for TokenEntry {
    fn from(entry: WitTokenEntry) -> Self {
        Self {
            token: entry.token,
            token_remain_live_time: entry.token_remain_live_time,
            token_expire_time: entry.token_expire_time,
            created_at: entry.created_at,
        }
    }
}

impl TryFrom<WitUser> for User {
    type Error = Error;

    fn try_from(user: WitUser) -> Result<Self> {
        Ok(Self {
            id: user.id,
            token: user.token,
            token_remain_live_time: user.token_remain_live_time,
            token_expire_time: user.token_expire_time,
            detail: detail(user.detail)?,
        })
    }
}

impl TryFrom<WitUserInfo> for UserInfo {
    type Error = Error;

    fn try_from(user: WitUserInfo) -> Result<Self> {
        Ok(Self {
            id: user.id,
            detail: detail(user.detail)?,
        })
    }
}
