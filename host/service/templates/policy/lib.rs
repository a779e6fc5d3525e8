//! {{name}}: a dsession session policy.
//!
//! A token is `{user id}_{32 hex digits}`. Each token has a key of its own
//! holding its user, with the token's lifetime; each user has an index, a
//! hash of their tokens' secrets, so that their tokens can be listed and
//! revoked at once. Every key of a user carries the hash tag `{user id}`,
//! so the policy runs on Redis Cluster too. Single-login mode is not kept:
//! the policy refuses it. With session events on (`settings.events`), a
//! login, a revoke and a revoke-all each append their event in their own
//! atomic step; a refresh records none, as one step cannot make its event
//! depend on whether `EXPIRE` found the token (the built-in policies watch
//! the token to record it).
//!
//! Change anything: `dsession policy test` tells you whether the contract
//! still holds.

use dsession_policy_sdk::event::{Event, Kind};
use dsession_policy_sdk::page::{self, Latest};
use dsession_policy_sdk::{
    Command, Error, IssuedToken, PageRequest, Policy, SelfCheckReport, SessionAttributes,
    Settings, TokenEntry, TokenPage, User, UserCache, UserDetail, attributes, cmd, random, store,
    time, token, ttl, user_id,
};

/// Hex digits in a token's secret (16 random bytes).
const SECRET_HEX: usize = 32;

/// How often revoke-all re-reads the index after a login raced it.
const ATTEMPTS: u32 = 16;

struct Starter {
    token_prefix: String,
    user_prefix: String,
    default_ttl: i64,
    index_ttl: i64,
    user_loader: bool,
    events: bool,
}

dsession_policy_sdk::export!(Starter);

impl Starter {
    fn token_key(&self, user_id: &str, secret: &str) -> String {
        format!("{}:{{{user_id}}}:token:{secret}", self.token_prefix)
    }

    fn index_key(&self, user_id: &str) -> String {
        format!("{}:{{{user_id}}}:tokens", self.token_prefix)
    }

    /// The user and secret of a token of this policy's form; None for any
    /// other token, which is "not valid".
    fn parse<'a>(&self, token: &'a str) -> Result<Option<(&'a str, &'a str)>, Error> {
        Ok(token::parse(token, SECRET_HEX)?.filter(|(user_id, _)| self.check_user_id(user_id).is_ok()))
    }

    /// `event`, for the atomic step that writes the user's index, when
    /// events are recorded.
    fn event(&self, user_id: &str, event: impl FnOnce() -> Event) -> Option<Command> {
        self.events.then(|| event().command(self.index_key(user_id)))
    }

    /// The index keeps living as long as the longest token in it.
    fn stretch_index(&self, user_id: &str, ttl: i64) -> [Command; 2] {
        let index = self.index_key(user_id);
        [
            cmd::expire(&index, ttl.max(self.index_ttl)).if_none().into(),
            cmd::expire(index, ttl.max(self.index_ttl)).if_later().into(),
        ]
    }
}

impl UserCache for Starter {
    fn user_key(&self, user_id: &str) -> String {
        format!("{}:{{{user_id}}}", self.user_prefix)
    }

    fn user_loader(&self) -> bool {
        self.user_loader
    }
}

impl Policy for Starter {
    fn new(settings: &Settings) -> Result<Self, Error> {
        ttl::check_setting("default expire", settings.default_expire_seconds)?;
        if settings.single_mode {
            return Err(Error::InvalidArgument(
                "the {{name}} policy does not keep single-login mode".into(),
            ));
        }
        Ok(Self {
            token_prefix: settings.token_key_prefix.clone(),
            user_prefix: settings.user_key_prefix.clone(),
            default_ttl: settings.default_expire_seconds,
            index_ttl: settings.index_expire_seconds.max(1),
            user_loader: settings.user_loader,
            events: settings.events,
        })
    }

    fn self_check(&self) -> Result<SelfCheckReport, Error> {
        Ok(SelfCheckReport {
            probe_token: format!("dsession-probe_{}", "0".repeat(SECRET_HEX)),
            single_mode: false,
            max_sessions: None,
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        ttl::resolve(requested, self.default_ttl)
    }

    fn check_user_id(&self, user_id: &str) -> Result<(), Error> {
        user_id::check(user_id)?;
        user_id::reject_token_suffix(user_id, SECRET_HEX)
    }

    /// This policy keeps no attributes: `list-user-token` lists none. To
    /// keep them, store [`attributes::encode`] beside the session.
    fn set_token(
        &self,
        user_id: &str,
        ttl: i64,
        _: &SessionAttributes,
    ) -> Result<IssuedToken, Error> {
        let secret = random::hex(16);
        let token = format!("{user_id}_{secret}");
        let mut writes = vec![
            cmd::set(self.token_key(user_id, &secret), user_id)
                .ttl(ttl)
                .into(),
            cmd::hset(self.index_key(user_id), vec![(secret.clone(), time::now().to_string())]),
        ];
        writes.extend(self.stretch_index(user_id, ttl));
        writes.extend(self.event(user_id, || Event::new(Kind::Login, user_id).session(&token)));
        store::atomic(&writes)?;
        Ok(IssuedToken {
            token,
            token_expire_time: time::now() + ttl,
        })
    }

    fn refresh_token(&self, token: &str, ttl: i64) -> Result<i64, Error> {
        let Some((user_id, secret)) = self.parse(token)? else {
            return Err(Error::NotFound);
        };
        // EXPIRE never creates a key: a revoked token stays revoked.
        let mut writes = vec![cmd::expire(self.token_key(user_id, secret), ttl).into()];
        writes.push(cmd::hexists(self.index_key(user_id), secret));
        writes.extend(self.stretch_index(user_id, ttl));
        let mut replies = store::atomic(&writes)?;
        let [extended, listed] = replies.next_n()?;
        if extended.integer("EXPIRE token")? == 1 && listed.integer("HEXISTS index")? == 1 {
            Ok(time::now() + ttl)
        } else {
            Err(Error::NotFound)
        }
    }

    fn delete_token(&self, token: &str) -> Result<(), Error> {
        let Some((user_id, secret)) = self.parse(token)? else {
            return Ok(());
        };
        let mut revoke = vec![
            cmd::del([self.token_key(user_id, secret)]),
            cmd::hdel(self.index_key(user_id), vec![secret.to_owned()]),
        ];
        revoke.extend(self.event(user_id, || Event::new(Kind::Revoke, user_id).session(token)));
        store::atomic(&revoke).map(drop)
    }

    fn check_token(&self, token: &str, detail: UserDetail) -> Result<Option<User>, Error> {
        let Some((user_id, secret)) = self.parse(token)? else {
            return Ok(None);
        };
        let key = self.token_key(user_id, secret);
        let mut reads = vec![
            cmd::get(&key),
            cmd::ttl(key),
            cmd::hexists(self.index_key(user_id), secret),
        ];
        reads.extend(detail.read(self, user_id));
        let mut replies = store::batch(&reads)?;
        let [value, left, listed] = replies.next_n()?;
        let now = time::now();
        let live = value.text("GET token")?.is_some() && listed.integer("HEXISTS index")? == 1;
        let Some((left, expires)) = time::lifetime(left.integer("TTL token")?, now).filter(|_| live)
        else {
            return Ok(None);
        };
        let detail = detail.resolve(self, user_id, replies.next())?;
        Ok(Some(User {
            id: user_id.to_owned(),
            token: token.to_owned(),
            token_remain_live_time: left,
            token_expire_time: expires,
            detail,
        }))
    }

    /// A page of the user's tokens, newest first: the index records when
    /// each was issued. A cursor names a place by issue time and a hash of
    /// the secret ([`page::hash`]): a cursor travels in URLs, a secret must not.
    fn list_user_token(&self, user_id: &str, page: &PageRequest) -> Result<TokenPage, Error> {
        let index = self.index_key(user_id);
        let mut listed: Vec<(Latest, String)> = store::one(cmd::hgetall(&index))?
            .pairs("HGETALL index")?
            .into_iter()
            .map(|(secret, issued)| {
                let at = Latest::new(issued.parse().unwrap_or(0), page::hash(&secret));
                (at, secret)
            })
            .collect();
        listed.sort();
        let (listed, more) = page::cut(listed, |(at, _)| at.clone(), page)?;
        let now = time::now();
        let left = store::ttls(listed.iter().map(|(_, secret)| self.token_key(user_id, secret)))?;
        let mut tokens = Vec::new();
        let mut dead = Vec::new();
        for ((at, secret), left) in listed.iter().zip(left) {
            match time::lifetime(left, now) {
                Some((left, expires)) => tokens.push(TokenEntry {
                    token: format!("{user_id}_{secret}"),
                    token_remain_live_time: left,
                    token_expire_time: expires,
                    created_at: Some(at.time()),
                    last_seen: None,
                    attributes: attributes::none(),
                }),
                None => dead.push(secret.clone()),
            }
        }
        if !dead.is_empty() {
            store::one(cmd::hdel(index, dead))?;
        }
        let next_cursor = page::next(listed.last().map(|(at, _)| at.clone()), more);
        Ok(TokenPage {
            tokens,
            next_cursor,
        })
    }

    fn delete_user_token(&self, user_id: &str) -> Result<(), Error> {
        let index = self.index_key(user_id);
        // Watching the index, a login that races the revoke makes it read
        // again, so that no token issued before it stays valid.
        let revoked = store::optimistic(
            std::slice::from_ref(&index),
            &[cmd::hgetall(&index)],
            ATTEMPTS,
            |mut replies| {
                let [listed] = replies.next_n()?;
                let mut keys: Vec<String> = listed
                    .pairs("HGETALL index")?
                    .into_iter()
                    .map(|(secret, _)| self.token_key(user_id, &secret))
                    .collect();
                keys.push(index.clone());
                let mut revoke = vec![cmd::del(keys)];
                revoke.extend(self.event(user_id, || Event::new(Kind::RevokeAll, user_id)));
                Ok((revoke, ()))
            },
        )?;
        revoked.ok_or_else(|| Error::Conflict("logins kept racing the revoke".into()))
    }
}
