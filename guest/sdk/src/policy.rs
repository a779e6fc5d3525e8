//! The [`Policy`] trait and the exports built on it.
//!
//! The host calls `token-manage` with its settings and raw arguments; the
//! impls at the bottom of this file check them in the same order for every
//! policy (the settings, then the user ids, then the TTL), so that a policy
//! only ever sees a call it may act on.

use crate::bindings::description::exports::dsession::session::describe;
use crate::bindings::exports::dsession::session::token_manage;
use crate::{
    ConfigKey, Error, IssuedToken, PageRequest, SelfCheckReport, SessionAttributes, Settings,
    TokenPage, User, UserCache, UserDetail, UserInfo, user_id, users,
};

/// A session policy: one value of it is made per call, from the settings.
///
/// The ten operations are `token-manage`'s; see the WIT for each one's
/// contract. Their arguments arrive checked: user ids by
/// [`Policy::check_user_id`], TTLs resolved by [`Policy::ttl`] (0 is the
/// default). The user-info operations have defaults on the cache the
/// policy names in [`UserCache`].
pub trait Policy: UserCache + Sized {
    /// Checks the host's settings (and the policy's own, through
    /// [`crate::config`]) for one call. An error here is the call's answer.
    fn new(settings: &Settings) -> Result<Self, Error>;

    /// What the policy says of itself under the settings it was made
    /// with: a probe token of its form that nobody holds, and the session
    /// limits it keeps. The export then checks that probe token, so that
    /// `self-check` reaches the store; a live probe is an error.
    fn self_check(&self) -> Result<SelfCheckReport, Error>;

    /// A call's TTL argument in seconds; usually
    /// [`crate::ttl::resolve`] with the default expiry.
    fn ttl(&self, requested: i64) -> Result<i64, Error>;

    /// Rejects a user id before anything is read or written. Default:
    /// [`user_id::check`].
    fn check_user_id(&self, user_id: &str) -> Result<(), Error> {
        user_id::check(user_id)
    }

    /// Issues a token for `user_id`, valid for `ttl` seconds, keeping
    /// what it can of `attributes` (checked by the host) with it.
    fn set_token(
        &self,
        user_id: &str,
        ttl: i64,
        attributes: &SessionAttributes,
    ) -> Result<IssuedToken, Error>;

    /// Extends a live token to `ttl` seconds from now; returns its expiry.
    fn refresh_token(&self, token: &str, ttl: i64) -> Result<i64, Error>;

    /// Revokes a token; idempotent.
    fn delete_token(&self, token: &str) -> Result<(), Error>;

    /// Checks a token; with the user's detail when `detail` asks for it
    /// (see [`UserDetail`] for reading it in the check's one round trip).
    fn check_token(&self, token: &str, detail: UserDetail) -> Result<Option<User>, Error>;

    /// check-token with the user's detail, cached for `user_ttl` seconds
    /// when it comes from the loader.
    fn check_token_or_update_user(
        &self,
        token: &str,
        user_ttl: i64,
    ) -> Result<Option<User>, Error> {
        self.check_token(token, UserDetail::cached(user_ttl))
    }

    /// One page of the live tokens of a user, newest first, pruning dead
    /// entries; [`crate::page`] cuts the page.
    fn list_user_token(&self, user_id: &str, page: &PageRequest) -> Result<TokenPage, Error>;

    /// Revokes every token of a user.
    fn delete_user_token(&self, user_id: &str) -> Result<(), Error>;

    /// Reloads the cache entry of each user from the loader.
    fn refresh_user(&self, user_ids: &[String], user_ttl: i64) -> Result<(), Error> {
        users::add(self, user_ids, user_ttl).map(drop)
    }

    /// Removes a user's cache entry.
    fn delete_user(&self, user_id: &str) -> Result<(), Error> {
        users::delete(self, user_id)
    }

    /// Loads a user from the loader and caches it; returns what was cached.
    fn add_user(&self, user_id: &str, user_ttl: i64) -> Result<UserInfo, Error> {
        let mut added = users::add(self, &[user_id], user_ttl)?;
        added
            .pop()
            .ok_or_else(|| Error::Corrupt("no user was cached".into()))
    }
}

/// What a policy says about the settings it reads, for
/// `dsession policy check`; exported with `export!(MyPolicy with describe)`.
pub trait Describe {
    /// The `[policy.config]` keys the policy reads, in the order it
    /// documents them.
    fn config_keys() -> Vec<ConfigKey>;
}

/// The policy for one call, with `user_id` checked by it.
fn for_user<P: Policy>(settings: &Settings, user_id: &str) -> Result<P, Error> {
    let policy = P::new(settings)?;
    policy.check_user_id(user_id)?;
    Ok(policy)
}

/// The policy for one call, with `user_id` checked and then `ttl_seconds`
/// resolved by it.
fn for_user_ttl<P: Policy>(
    settings: &Settings,
    user_id: &str,
    ttl_seconds: i64,
) -> Result<(P, i64), Error> {
    let policy = for_user::<P>(settings, user_id)?;
    let ttl = policy.ttl(ttl_seconds)?;
    Ok((policy, ttl))
}

impl<P: Policy> token_manage::Guest for P {
    fn self_check(settings: Settings) -> Result<SelfCheckReport, Error> {
        let policy = P::new(&settings)?;
        let report = policy.self_check()?;
        match policy.check_token(&report.probe_token, UserDetail::none())? {
            None => Ok(report),
            Some(_) => Err(Error::Corrupt(format!(
                "the probe token {:?} is live in the store",
                report.probe_token
            ))),
        }
    }

    fn set_token(
        settings: Settings,
        user_id: String,
        ttl_seconds: i64,
        attributes: SessionAttributes,
    ) -> Result<IssuedToken, Error> {
        let (policy, ttl) = for_user_ttl::<P>(&settings, &user_id, ttl_seconds)?;
        policy.set_token(&user_id, ttl, &attributes)
    }

    fn refresh_token(settings: Settings, token: String, ttl_seconds: i64) -> Result<i64, Error> {
        let policy = P::new(&settings)?;
        let ttl = policy.ttl(ttl_seconds)?;
        policy.refresh_token(&token, ttl)
    }

    fn delete_token(settings: Settings, token: String) -> Result<(), Error> {
        P::new(&settings)?.delete_token(&token)
    }

    fn check_token(settings: Settings, token: String) -> Result<Option<User>, Error> {
        P::new(&settings)?.check_token(&token, UserDetail::none())
    }

    fn check_token_or_update_user(
        settings: Settings,
        token: String,
        user_ttl_seconds: i64,
    ) -> Result<Option<User>, Error> {
        let policy = P::new(&settings)?;
        let user_ttl = policy.ttl(user_ttl_seconds)?;
        policy.check_token_or_update_user(&token, user_ttl)
    }

    fn list_user_token(
        settings: Settings,
        user_id: String,
        page: PageRequest,
    ) -> Result<TokenPage, Error> {
        for_user::<P>(&settings, &user_id)?.list_user_token(&user_id, &page)
    }

    fn delete_user_token(settings: Settings, user_id: String) -> Result<(), Error> {
        for_user::<P>(&settings, &user_id)?.delete_user_token(&user_id)
    }

    fn refresh_user(
        settings: Settings,
        user_ids: Vec<String>,
        user_ttl_seconds: i64,
    ) -> Result<(), Error> {
        let policy = P::new(&settings)?;
        user_ids
            .iter()
            .try_for_each(|user_id| policy.check_user_id(user_id))?;
        let user_ttl = policy.ttl(user_ttl_seconds)?;
        policy.refresh_user(&user_ids, user_ttl)
    }

    fn delete_user(settings: Settings, user_id: String) -> Result<(), Error> {
        for_user::<P>(&settings, &user_id)?.delete_user(&user_id)
    }

    fn add_user(
        settings: Settings,
        user_id: String,
        user_ttl_seconds: i64,
    ) -> Result<UserInfo, Error> {
        let (policy, user_ttl) = for_user_ttl::<P>(&settings, &user_id, user_ttl_seconds)?;
        policy.add_user(&user_id, user_ttl)
    }
}

impl<P: Describe> describe::Guest for P {
    fn config_keys() -> Vec<ConfigKey> {
        P::config_keys()
    }
}
