//! The embedding API: one async method per gosession operation, and
//! validated policy swaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tracing::Instrument as _;

use crate::error::{Error, Result, SetupError};
use crate::loader::{self, CoalescingLoader, LoaderOptions, UserLoader};
use crate::observe::{Observer, Operation, Outcome, Unobserved};
use crate::policy::host::{PolicyStore, Returned};
use crate::policy::limits::Limits;
use crate::policy::pool::{InstanceStats, Instances};
use crate::policy::{Policy, Runtime, convert};
use crate::store::{EventRange, MemoryStore, Store};
use crate::types::{
    IssuedToken, PageRequest, SelfCheck, SessionAttributes, SessionEvent, Settings, TokenEntry,
    TokenPage, User, UserInfo,
};
use crate::wit::token_manage::Guest;
use crate::wit::{WitAttributes, WitPageRequest, WitSettings};

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
    events: bool,
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

    /// Whether the policy records session events in the store's event
    /// stream ([`crate::store::EventStream`]), each in the atomic step of
    /// the change it records; off by default.
    pub fn record_events(mut self, events: bool) -> Self {
        self.events = events;
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
        let settings = convert::settings(self.settings, self.loader.is_some(), self.events);
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
        let instances = policy.instances(
            self.limits,
            Arc::clone(&store),
            loader.clone(),
            &self.policy_config,
        );
        Ok(SessionManager(Arc::new(Shared {
            store,
            loader,
            coalescing,
            serving: RwLock::new(Arc::new(Serving { policy, instances })),
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
    /// The current policy and its instances; replaced whole by a swap.
    serving: RwLock<Arc<Serving>>,
    settings: WitSettings,
    /// The policy's `wasi:config` settings; each pool of instances reads
    /// them from its own copy.
    policy_config: BTreeMap<String, String>,
    limits: Limits,
    observer: Arc<dyn Observer>,
    /// Held by a checked swap, so that swaps happen one at a time.
    swapping: tokio::sync::Mutex<()>,
}

/// A policy and its instances for one manager.
struct Serving {
    policy: Policy,
    instances: Instances,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("limits", &self.0.limits)
            .finish_non_exhaustive()
    }
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
        self.current().policy.clone()
    }

    /// The current policy's idle instances and the memory they hold.
    pub fn policy_instances(&self) -> InstanceStats {
        self.current().instances.stats()
    }

    fn current(&self) -> Arc<Serving> {
        Arc::clone(&self.0.serving.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn serving(&self, policy: Policy) -> Serving {
        let instances = policy.instances(
            self.0.limits,
            Arc::clone(&self.0.store),
            self.0.loader.clone(),
            &self.0.policy_config,
        );
        Serving { policy, instances }
    }

    /// Replaces the policy without checking it, and without waiting for a
    /// reload in flight (which may then replace it in turn). Calls already
    /// running finish on the old one; its instances are then dropped, never
    /// reused. [`Self::reload_policy`] checks first and runs one at a time.
    pub fn swap_policy(&self, policy: Policy) {
        let serving = Arc::new(self.serving(policy));
        *self.0.serving.write().unwrap_or_else(|p| p.into_inner()) = serving;
    }

    /// The policy's `self-check` with this manager's settings, policy
    /// config and store: it validates them, checks its probe token in the
    /// store, and says which session limits it keeps. Not reported to the
    /// observer as an operation.
    pub async fn self_check(&self) -> Result<SelfCheck> {
        Self::self_check_on(&self.current().instances, &self.0.settings).await
    }

    async fn self_check_on(instances: &Instances, settings: &WitSettings) -> Result<SelfCheck> {
        instances
            .token_manage(async |api, store| api.call_self_check(store, settings).await)
            .await
            .map(SelfCheck::from)
    }

    /// `policy`'s self-check with this manager's settings, policy config
    /// and store, in an instance of its own, and on a sharded store (Redis
    /// Cluster) [`crate::check_slot_layout`]: the check every swap passes.
    async fn try_policy(&self, policy: &Policy) -> Result<(), SetupError> {
        let trial = self.serving(policy.clone());
        let outcome = Self::self_check_on(&trial.instances, &self.0.settings).await;
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
                let settings = Settings::from(&self.0.settings);
                crate::policy::slot_layout::check_slot_layout(
                    policy,
                    &settings,
                    &self.0.policy_config,
                )
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

    /// Runs one export of token-manage in an instance of the current
    /// policy, in a span whose `operation` field names it, and reports its
    /// outcome to the observer.
    async fn call<T>(
        &self,
        operation: Operation,
        export: impl AsyncFnOnce(&Guest, &mut PolicyStore) -> Returned<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let span = tracing::debug_span!("dsession", operation = operation.as_str());
        let outcome = self
            .current()
            .instances
            .token_manage(export)
            .instrument(span)
            .await;
        let elapsed = started.elapsed();
        self.0
            .observer
            .operation(operation, Outcome::of(&outcome), elapsed);
        outcome
    }

    /// Issues a token for `user_id`, valid `ttl_seconds` (0: the default).
    /// In single mode the user's other tokens are revoked at once.
    pub async fn set_token(&self, user_id: &str, ttl_seconds: i64) -> Result<IssuedToken> {
        self.set_token_with(user_id, ttl_seconds, &SessionAttributes::default())
            .await
    }

    /// [`Self::set_token`] for a login that says where it comes from: the
    /// policy keeps `attributes` with the session, and
    /// [`Self::list_user_token_page`] lists them. Attributes past their
    /// bounds are [`Error::InvalidArgument`], naming the field and never
    /// its value; a login past a limit the policy keeps by refusing is
    /// [`Error::Conflict`], naming the limit.
    pub async fn set_token_with(
        &self,
        user_id: &str,
        ttl_seconds: i64,
        attributes: &SessionAttributes,
    ) -> Result<IssuedToken> {
        let attributes = attributes.clone().check().map_err(Error::InvalidArgument)?;
        let attributes = WitAttributes::from(&attributes);
        self.call(Operation::SetToken, async |api, store| {
            api.call_set_token(store, &self.0.settings, user_id, ttl_seconds, &attributes)
                .await
        })
        .await
        .map(IssuedToken::from)
    }

    /// Extends a live token to `ttl_seconds` from now (0: the default) and
    /// returns its new expiry; [`Error::NotFound`] when it is not live.
    pub async fn refresh_token(&self, token: &str, ttl_seconds: i64) -> Result<i64> {
        self.call(Operation::RefreshToken, async |api, store| {
            api.call_refresh_token(store, &self.0.settings, token, ttl_seconds)
                .await
        })
        .await
    }

    /// Revokes a token; revoking a dead one is fine.
    pub async fn delete_token(&self, token: &str) -> Result<()> {
        let confirmed = self
            .call(Operation::DeleteToken, async |api, store| {
                let deleted = api
                    .call_delete_token(&mut *store, &self.0.settings, token)
                    .await;
                confirmed(deleted, store)
            })
            .await?;
        self.confirm_revocation(confirmed).await
    }

    /// With durable writes, that enough replicas have what a revocation
    /// left, even when it found nothing to delete (see
    /// [`crate::store::Store::confirm_writes`]); nothing to do when one of
    /// its own atomic writes, `confirmed`, already waited for them.
    async fn confirm_revocation(&self, confirmed: bool) -> Result<()> {
        if confirmed {
            return Ok(());
        }
        self.0
            .store
            .confirm_writes()
            .await
            .map_err(|error| Error::Store(error.to_string()))
    }

    /// The user of a live token, without detail; `None` when the token is
    /// dead or malformed.
    pub async fn check_token(&self, token: &str) -> Result<Option<User>> {
        self.check_token_from(token, None).await
    }

    /// [`Self::check_token`] of a request whose client is known: the
    /// policy may keep `client`'s IP and user agent as the session's
    /// latest when its check writes anyway (the hardened policy's throttled
    /// touch); `list_user_token` then shows them. A client past the bounds
    /// of [`SessionAttributes`] is left out, never an error of the check.
    pub async fn check_token_from(
        &self,
        token: &str,
        client: Option<&SessionAttributes>,
    ) -> Result<Option<User>> {
        let client = checked_client(client);
        self.call(Operation::CheckToken, async |api, store| {
            store.data_mut().set_client(client);
            api.call_check_token(store, &self.0.settings, token).await
        })
        .await
        .and_then(|user| user.map(User::try_from).transpose())
    }

    /// The user of a live token with detail from the user-info cache, or
    /// from the loader (then cached for `user_ttl_seconds`).
    pub async fn check_token_or_update_user(
        &self,
        token: &str,
        user_ttl_seconds: i64,
    ) -> Result<Option<User>> {
        self.check_token_or_update_user_from(token, user_ttl_seconds, None)
            .await
    }

    /// [`Self::check_token_or_update_user`] of a request whose client is
    /// known, as [`Self::check_token_from`].
    pub async fn check_token_or_update_user_from(
        &self,
        token: &str,
        user_ttl_seconds: i64,
        client: Option<&SessionAttributes>,
    ) -> Result<Option<User>> {
        let client = checked_client(client);
        self.call(Operation::CheckTokenOrUpdateUser, async |api, store| {
            store.data_mut().set_client(client);
            api.call_check_token_or_update_user(store, &self.0.settings, token, user_ttl_seconds)
                .await
        })
        .await
        .and_then(|user| user.map(User::try_from).transpose())
    }

    /// Every live token of a user, newest first (the default policy:
    /// latest expiry first).
    pub async fn list_user_token(&self, user_id: &str) -> Result<Vec<TokenEntry>> {
        let every = PageRequest::default();
        Ok(self.list_user_token_page(user_id, &every).await?.tokens)
    }

    /// One page of the live tokens of a user, newest first: up to
    /// `page.limit` tokens (0: all) after `page.cursor`, the `next_cursor`
    /// of the page before. A cursor the policy did not make is
    /// [`Error::InvalidArgument`].
    pub async fn list_user_token_page(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<TokenPage> {
        let page = WitPageRequest::from(page);
        self.call(Operation::ListUserToken, async |api, store| {
            api.call_list_user_token(store, &self.0.settings, user_id, &page)
                .await
        })
        .await
        .map(TokenPage::from)
    }

    /// Session events from the store's stream, oldest first: those after
    /// an id, or the latest. Store errors are [`Error::Store`].
    pub async fn read_events(&self, range: EventRange) -> Result<Vec<SessionEvent>> {
        if range.count() == 0 {
            return Ok(Vec::new());
        }
        let events = self
            .0
            .store
            .read_events(range)
            .await
            .map_err(|error| Error::Store(error.to_string()))?;
        Ok(events.into_iter().map(SessionEvent::from).collect())
    }

    /// Whether the policy records session events ([`SessionManagerBuilder::record_events`]).
    pub fn records_events(&self) -> bool {
        self.0.settings.events
    }

    /// Revokes every token of a user.
    pub async fn delete_user_token(&self, user_id: &str) -> Result<()> {
        let confirmed = self
            .call(Operation::DeleteUserToken, async |api, store| {
                let deleted = api
                    .call_delete_user_token(&mut *store, &self.0.settings, user_id)
                    .await;
                confirmed(deleted, store)
            })
            .await?;
        self.confirm_revocation(confirmed).await
    }

    /// Reloads the user-info cache of each user from the loader.
    pub async fn refresh_user(&self, user_ids: &[String], user_ttl_seconds: i64) -> Result<()> {
        loader::fresh(self.call(Operation::RefreshUser, async |api, store| {
            api.call_refresh_user(store, &self.0.settings, user_ids, user_ttl_seconds)
                .await
        }))
        .await
    }

    /// Removes a user's user-info cache entry.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        self.call(Operation::DeleteUser, async |api, store| {
            api.call_delete_user(store, &self.0.settings, user_id).await
        })
        .await
    }

    /// Loads a user from the loader into the user-info cache for
    /// `user_ttl_seconds` and returns what was cached.
    pub async fn add_user(&self, user_id: &str, user_ttl_seconds: i64) -> Result<UserInfo> {
        loader::fresh(self.call(Operation::AddUser, async |api, store| {
            api.call_add_user(store, &self.0.settings, user_id, user_ttl_seconds)
                .await
        }))
        .await
        .and_then(UserInfo::try_from)
    }
}

/// A revocation's outcome, and whether an atomic write of its own already
/// waited for the replicas (see [`SessionManager::confirm_revocation`]).
fn confirmed(deleted: Returned<()>, store: &PolicyStore) -> Returned<bool> {
    deleted.map(|deleted| deleted.map(|()| store.data().wrote_atomically()))
}

/// A request's client as a policy gets it (`client.current`): within the
/// bounds of [`SessionAttributes`], or left out.
fn checked_client(client: Option<&SessionAttributes>) -> Option<WitAttributes> {
    let client = client?.clone().check();
    match client {
        Ok(client) if !client.is_empty() => Some(WitAttributes::from(&client)),
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "the request's client is left out of the check");
            None
        }
    }
}
