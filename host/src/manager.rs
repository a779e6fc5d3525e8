//! The embedding API: one async method per gosession operation.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use wasmtime_wasi_config::WasiConfigVariables;

use crate::error::{Error, Result};
use crate::loader::{CoalescingLoader, LoaderOptions, UserLoader};
use crate::policy::{
    Call, Instances, Limits, Policy, WitIssuedToken, WitSettings, WitTokenEntry, WitUser,
    WitUserInfo,
};
use crate::policy_config;
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
    pub fn build(self) -> anyhow::Result<SessionManager> {
        let policy = match self.policy {
            Some(policy) => policy,
            None => Policy::builtin()?,
        };
        let settings = WitSettings {
            token_key_prefix: self.settings.token_key_prefix,
            user_key_prefix: self.settings.user_key_prefix,
            default_expire_seconds: self.settings.default_expire_seconds,
            index_expire_seconds: self.settings.index_expire_seconds,
            single_mode: self.settings.single_mode,
            user_loader: self.loader.is_some(),
        };
        // Every loader, the embedder's closure too, is called through the
        // coalescing front.
        let coalescing = self
            .loader
            .map(|loader| CoalescingLoader::new(loader, self.loader_options));
        let loader = coalescing
            .clone()
            .map(|loader| Arc::new(loader) as Arc<dyn UserLoader>);
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let policy_config = policy_config::variables(&self.policy_config);
        let instances = Instances::new(
            policy,
            self.limits,
            Arc::clone(&store),
            loader.clone(),
            Arc::clone(&policy_config),
        );
        Ok(SessionManager {
            store,
            loader,
            coalescing,
            instances: RwLock::new(Arc::new(instances)),
            settings,
            limits: self.limits,
            policy_config,
        })
    }
}

/// Issues, checks, refreshes, lists and revokes session tokens through a
/// policy component and a store. Share it behind an `Arc`; each method runs
/// in a policy instance of this manager's own (see [`Limits::reuse`]).
pub struct SessionManager {
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    /// The same loader as `loader`, for its metrics and readiness.
    coalescing: Option<CoalescingLoader>,
    /// The current policy's instances; replaced whole by a swap.
    instances: RwLock<Arc<Instances>>,
    settings: WitSettings,
    limits: Limits,
    policy_config: Arc<WasiConfigVariables>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Runs one export of the policy in an instance of its pool.
macro_rules! call {
    ($manager:ident . $export:ident ( $($arg:expr),* )) => {{
        let mut call = $manager.start().await?;
        let (api, store) = call.parts();
        let outcome = api.$export(store, &$manager.settings $(, $arg)*).await;
        call.finish(outcome)
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
        &self.store
    }

    /// The loader, as every call reaches it; None without one.
    pub fn loader(&self) -> Option<&CoalescingLoader> {
        self.coalescing.as_ref()
    }

    /// Replaces the policy. Calls already running finish on the old one;
    /// its instances are then dropped, never reused.
    pub fn swap_policy(&self, policy: Policy) {
        let instances = Instances::new(
            policy,
            self.limits,
            Arc::clone(&self.store),
            self.loader.clone(),
            Arc::clone(&self.policy_config),
        );
        *self.instances.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(instances);
    }

    async fn start(&self) -> Result<Call> {
        let instances = Arc::clone(&self.instances.read().unwrap_or_else(|p| p.into_inner()));
        Call::start(instances).await
    }

    /// Issues a token for `user_id`, valid `ttl_seconds` (0: the default).
    /// In single mode the user's other tokens are revoked at once.
    pub async fn set_token(&self, user_id: &str, ttl_seconds: i64) -> Result<IssuedToken> {
        call!(self.call_set_token(user_id, ttl_seconds)).map(IssuedToken::from)
    }

    /// Extends a live token to `ttl_seconds` from now (0: the default) and
    /// returns its new expiry; [`Error::NotFound`] when it is not live.
    pub async fn refresh_token(&self, token: &str, ttl_seconds: i64) -> Result<i64> {
        call!(self.call_refresh_token(token, ttl_seconds))
    }

    /// Revokes a token; revoking a dead one is fine.
    pub async fn delete_token(&self, token: &str) -> Result<()> {
        call!(self.call_delete_token(token))
    }

    /// The user of a live token, without detail; `None` when the token is
    /// dead or malformed.
    pub async fn check_token(&self, token: &str) -> Result<Option<User>> {
        call!(self.call_check_token(token)).and_then(|user| user.map(User::try_from).transpose())
    }

    /// The user of a live token with detail from the user-info cache, or
    /// from the loader (then cached for `user_ttl_seconds`).
    pub async fn check_token_or_update_user(
        &self,
        token: &str,
        user_ttl_seconds: i64,
    ) -> Result<Option<User>> {
        call!(self.call_check_token_or_update_user(token, user_ttl_seconds))
            .and_then(|user| user.map(User::try_from).transpose())
    }

    /// The live tokens of a user, sorted by token.
    pub async fn list_user_token(&self, user_id: &str) -> Result<Vec<TokenEntry>> {
        call!(self.call_list_user_token(user_id))
            .map(|entries| entries.into_iter().map(TokenEntry::from).collect())
    }

    /// Revokes every token of a user.
    pub async fn delete_user_token(&self, user_id: &str) -> Result<()> {
        call!(self.call_delete_user_token(user_id))
    }

    /// Reloads the user-info cache of each user from the loader.
    pub async fn refresh_user(&self, user_ids: &[String], user_ttl_seconds: i64) -> Result<()> {
        call!(self.call_refresh_user(user_ids, user_ttl_seconds))
    }

    /// Removes a user's user-info cache entry.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        call!(self.call_delete_user(user_id))
    }

    /// Loads a user from the loader into the user-info cache for
    /// `user_ttl_seconds` and returns what was cached.
    pub async fn add_user(&self, user_id: &str, user_ttl_seconds: i64) -> Result<UserInfo> {
        call!(self.call_add_user(user_id, user_ttl_seconds)).and_then(UserInfo::try_from)
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
