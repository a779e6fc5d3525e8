//! The user-info cache, as gosession keeps it: one key per user holding
//! `{"id":…,"detail":…}`, filled from the host's user loader.
//!
//! [`Policy`](crate::Policy)'s add-user, refresh-user, delete-user and
//! check-token-or-update-user are built from these, for any policy that
//! says where its cache keys are ([`UserCache`]).

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::bindings::dsession::session::user_loader;
use crate::{Command, Error, Reply, UserInfo, cmd, store};

/// Where a policy caches user info, and whether the host has a loader to
/// fill it from (`settings.user-loader`).
pub trait UserCache {
    /// The key of the cache entry of `user_id`.
    fn user_key(&self, user_id: &str) -> String;

    /// Whether the host has a user loader.
    fn user_loader(&self) -> bool;
}

/// gosession's user-info JSON, `{"id":…,"detail":…}`.
pub fn encode(user_id: &str, detail: Option<&serde_json::Value>) -> String {
    let detail = detail.map_or_else(|| "null".to_owned(), serde_json::Value::to_string);
    format!(
        r#"{{"id":{},"detail":{detail}}}"#,
        serde_json::Value::from(user_id)
    )
}

/// The detail in a user-info cache entry, as the JSON text it holds; None
/// when it is null or absent. The detail is only sliced out, not parsed
/// into values: the host parses it, once, on the hot path of a cached user.
pub fn decode_detail(json: &str) -> Result<Option<String>, Error> {
    let fields: HashMap<String, &RawValue> = serde_json::from_str(json)
        .map_err(|e| Error::Corrupt(format!("user info is not a JSON object: {e}")))?;
    Ok(fields
        .get("detail")
        .map(|detail| detail.get())
        .filter(|detail| *detail != "null")
        .map(str::to_owned))
}

/// Loads a user's detail: none without a loader, else the loader's JSON
/// (none for JSON `null`). A loader failure, or text that is not JSON, is a
/// `loader` error.
pub fn load(cache: &impl UserCache, user_id: &str) -> Result<Option<serde_json::Value>, Error> {
    if !cache.user_loader() {
        return Ok(None);
    }
    let Some(text) = user_loader::load(user_id).map_err(Error::Loader)? else {
        return Ok(None);
    };
    let detail: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Loader(format!("detail of user {user_id:?} is not JSON: {e}")))?;
    Ok(Some(detail).filter(|detail| !detail.is_null()))
}

/// The command that caches a user's info for `ttl` seconds.
pub fn write(
    cache: &impl UserCache,
    user_id: &str,
    detail: Option<&serde_json::Value>,
    ttl: i64,
) -> Command {
    cmd::set(cache.user_key(user_id), encode(user_id, detail))
        .ttl(ttl)
        .into()
}

/// Refuses to write the cache when there is nothing to fill it from:
/// gosession's AddUser errors without a loader too, and writing `null`
/// would wipe detail that other services cached.
pub fn require_loader(cache: &impl UserCache) -> Result<(), Error> {
    if cache.user_loader() {
        return Ok(());
    }
    Err(Error::InvalidArgument(
        "no user loader is configured: add-user and refresh-user load the detail from it, \
         and without one they would overwrite the cached detail; nothing was written"
            .into(),
    ))
}

/// Loads each user from the loader and caches them for `ttl` seconds, in
/// one round trip after the loads; returns what was cached. Stops at the
/// first failure, before writing anything.
pub fn add(
    cache: &impl UserCache,
    user_ids: &[impl AsRef<str>],
    ttl: i64,
) -> Result<Vec<UserInfo>, Error> {
    require_loader(cache)?;
    let mut users = Vec::with_capacity(user_ids.len());
    let mut writes = Vec::with_capacity(user_ids.len());
    for user_id in user_ids.iter().map(AsRef::as_ref) {
        let detail = load(cache, user_id)?;
        writes.push(write(cache, user_id, detail.as_ref(), ttl));
        users.push(UserInfo {
            id: user_id.to_owned(),
            detail: detail.map(|detail| detail.to_string()),
        });
    }
    if !writes.is_empty() {
        store::batch(&writes)?;
    }
    Ok(users)
}

/// Removes a user's cache entry; one round trip.
pub fn delete(cache: &impl UserCache, user_id: &str) -> Result<(), Error> {
    store::batch(&[cmd::del([cache.user_key(user_id)])])?;
    Ok(())
}

/// Whether a token check also answers the user's detail, and for how long
/// it caches what it loads.
///
/// check-token passes [`UserDetail::none`], check-token-or-update-user
/// [`UserDetail::cached`]. A check adds [`UserDetail::read`] to its one
/// batch of reads and hands the reply to [`UserDetail::resolve`]: a cached
/// user then costs no second round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserDetail {
    ttl: Option<i64>,
}

impl UserDetail {
    /// No detail (check-token).
    pub fn none() -> Self {
        Self { ttl: None }
    }

    /// The detail, from the cache or else the loader, which then caches it
    /// for `ttl` seconds (check-token-or-update-user).
    pub fn cached(ttl: i64) -> Self {
        Self { ttl: Some(ttl) }
    }

    /// The read to add to the check's batch: the user's cache entry.
    pub fn read(&self, cache: &impl UserCache, user_id: &str) -> Option<Command> {
        self.ttl.map(|_| cmd::get(cache.user_key(user_id)))
    }

    /// The detail, from `reply` (the reply to [`UserDetail::read`]), else
    /// from the loader, then cached; none without a loader or when no
    /// detail is wanted.
    pub fn resolve(
        self,
        cache: &impl UserCache,
        user_id: &str,
        reply: Option<Reply>,
    ) -> Result<Option<String>, Error> {
        let Some(ttl) = self.ttl else {
            return Ok(None);
        };
        match reply
            .map(|reply| reply.text("GET user"))
            .transpose()?
            .flatten()
        {
            Some(json) => decode_detail(&json),
            None if cache.user_loader() => {
                let detail = load(cache, user_id)?;
                store::batch(&[write(cache, user_id, detail.as_ref(), ttl)])?;
                Ok(detail.map(|detail| detail.to_string()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_detail_is_sliced_out_as_it_was_written() {
        let detail = serde_json::json!({"name": "Ann", "age": 3, "roles": ["a", "b"]});
        let json = encode("a", Some(&detail));
        assert_eq!(
            json,
            r#"{"id":"a","detail":{"age":3,"name":"Ann","roles":["a","b"]}}"#
        );
        assert_eq!(decode_detail(&json), Ok(Some(detail.to_string())));
        assert_eq!(encode("a\"b", None), r#"{"id":"a\"b","detail":null}"#);
        assert_eq!(decode_detail(r#"{"id":"a","detail":null}"#), Ok(None));
        assert_eq!(decode_detail(r#"{"id":"a"}"#), Ok(None));
        assert!(decode_detail("[1]").is_err());
    }

    #[test]
    fn only_a_check_that_wants_detail_reads_the_cache() {
        struct Keys;
        impl UserCache for Keys {
            fn user_key(&self, user_id: &str) -> String {
                format!("u:{user_id}")
            }
            fn user_loader(&self) -> bool {
                false
            }
        }
        assert_eq!(UserDetail::none().read(&Keys, "a"), None);
        assert_eq!(
            UserDetail::cached(5).read(&Keys, "a"),
            Some(cmd::get("u:a"))
        );
        assert_eq!(UserDetail::none().resolve(&Keys, "a", None), Ok(None));
        let cached = Some(Reply::Text(encode("a", Some(&serde_json::json!(1)))));
        assert_eq!(
            UserDetail::cached(5).resolve(&Keys, "a", cached),
            Ok(Some("1".into()))
        );
        assert_eq!(UserDetail::cached(5).resolve(&Keys, "a", None), Ok(None));
    }
}
