//! The default dsession policy: gosession's Redis layout, byte for byte,
//! with gosession's races fixed.
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `{token_prefix}_{token}` | `{user_prefix}_{user_id}` | the token's |
//! | `{token_prefix}_{user_id}` (hash) | token → expiry, unix seconds | ≥ index TTL, ≥ its longest token |
//! | `{user_prefix}_{user_id}` | `{"id":…,"detail":…}` | the user-info TTL |
//! | `{token_prefix}_{token}_{32 zeros}` | `{created_at} {attributes as JSON}` | the token's |
//!
//! The last key is dsession's own, written only for a login that gives
//! attributes (a device, a user agent, an IP, labels), so that a plain
//! login writes gosession's keys and nothing else. gosession never reads
//! it; a token it revokes or refreshes leaves the key to expire on its own,
//! or to expire before the token, whose listing then shows no attributes.
//! The index records no issue time, so the list is ordered by expiry,
//! latest first: newest first for tokens issued with one TTL.
//!
//! A token is `{user_id}_{32 lowercase hex}`; its user is the part before
//! the last `_`. [`layout`] names the keys and checks user ids and tokens;
//! this file is the policy, one method per `token-manage` operation, on
//! `dsession-policy-sdk`. The SDK checks each call's arguments first and
//! supplies add-user, refresh-user, delete-user and the user detail of
//! check-token-or-update-user from the user-info cache named here.
//!
//! Every operation costs the round trips its method sends: a check is one
//! batch; a login one atomic step (single mode: a WATCH and a commit, again
//! after each lost race); the index entries of dead tokens are pruned as
//! they are met.
//!
//! Revocation works on a full Redis (`maxmemory` under `noeviction`),
//! which refuses every command queued in `MULTI` and every write that may
//! grow memory, but runs a plain `DEL` or `HDEL`: every revocation is an
//! atomic step of deletions alone, which the host then sends again as a
//! plain pipeline, the token key deleted before its index entry (a failure
//! in between leaves an entry without a token, which is never valid and is
//! pruned when met).

pub mod layout;

use dsession_policy_sdk::event::{Event, Kind};
use dsession_policy_sdk::page::{self, Latest};
use dsession_policy_sdk::{
    Command, Error, IssuedToken, PageRequest, Policy, SelfCheckReport, SessionAttributes, Settings,
    TokenEntry, TokenPage, User, UserCache, UserDetail, attributes, cmd, random, store, time, ttl,
};
use layout::Layout;

/// How often single mode re-reads the index after losing a race before it
/// gives up with `conflict`; each lost race means another call won.
const MAX_SINGLE_MODE_ATTEMPTS: u32 = 256;

/// How often a refresh reads again after a write to its token came between
/// its read and its commit.
const MAX_REFRESH_ATTEMPTS: u32 = 64;

/// One call's settings, checked and turned into a layout, plus the flags
/// the layout does not need.
struct Gosession {
    layout: Layout,
    single_mode: bool,
    user_loader: bool,
    /// Whether each change appends its event (`settings.events`).
    events: bool,
}

dsession_policy_sdk::export!(Gosession);

impl UserCache for Gosession {
    fn user_key(&self, user_id: &str) -> String {
        self.layout.user_key(user_id)
    }

    fn user_loader(&self) -> bool {
        self.user_loader
    }
}

impl Gosession {
    /// The index entry of a token valid until `expires`, and the index's
    /// lifetime stretched to cover a token of `ttl` seconds.
    fn index_writes(&self, user_id: &str, token: &str, expires: i64, ttl: i64) -> [Command; 3] {
        let index = self.layout.index_key(user_id);
        let seconds = self.layout.index_ttl_for(ttl);
        [
            cmd::hset(&index, vec![(token.to_owned(), expires.to_string())]),
            // NX sets the expiry of a new index, GT only ever lengthens it.
            cmd::expire(&index, seconds).if_none().into(),
            cmd::expire(index, seconds).if_later().into(),
        ]
    }

    /// Whether the user's index still lists `token`. A token whose entry is
    /// gone (gosession shortens the index TTL, or another writer removed
    /// it) is not valid: delete-user-token could no longer reach it.
    fn index_entry(&self, user_id: &str, token: &str) -> Command {
        cmd::hexists(self.layout.index_key(user_id), token)
    }

    /// Deletes `tokens`, then their index entries: deletions alone, which
    /// a full Redis still runs (see the module's docs).
    fn forget(&self, user_id: &str, tokens: Vec<String>) -> [Command; 2] {
        let keys = tokens
            .iter()
            .flat_map(|token| [self.layout.token_key(token), self.layout.meta_key(token)]);
        [
            cmd::del(keys),
            cmd::hdel(self.layout.index_key(user_id), tokens),
        ]
    }

    /// `event`'s command for the step that writes the user's index, when
    /// events are recorded.
    fn event(&self, user_id: &str, event: impl FnOnce() -> Event) -> Option<Command> {
        self.events
            .then(|| event().command(self.layout.index_key(user_id)))
    }

    /// The `evict` events of the tokens a single-mode login revokes.
    fn evictions<'a>(
        &'a self,
        user_id: &'a str,
        tokens: &'a [String],
    ) -> impl Iterator<Item = Command> + 'a {
        tokens.iter().filter_map(move |token| {
            self.event(user_id, || {
                Event::new(Kind::Evict, user_id)
                    .session(token)
                    .detail("single mode")
            })
        })
    }

    /// Removes `tokens` from the index; one round trip.
    fn unlist(&self, user_id: &str, tokens: Vec<String>) -> Result<(), Error> {
        store::batch(&[cmd::hdel(self.layout.index_key(user_id), tokens)]).map(drop)
    }

    /// A login outside single mode: the token and its entry in one atomic
    /// step that also reads the index back; entries past their recorded
    /// expiry are probably dead, so they are confirmed and pruned, and the
    /// index stays as small as the live tokens. A dead token never comes
    /// back, so removing its entry cannot hide a live token from
    /// delete-user-token.
    fn add_token(&self, user_id: &str, mut commands: Vec<Command>) -> Result<(), Error> {
        let read_index = commands.len();
        commands.push(cmd::hgetall(self.layout.index_key(user_id)));
        let entries = store::atomic(&commands)?
            .at(read_index)?
            .pairs("HGETALL index")?;
        let now = time::now();
        let stale: Vec<String> = entries
            .into_iter()
            .filter(|(_, expiry)| expiry.parse::<i64>().is_ok_and(|expiry| expiry <= now))
            .map(|(token, _)| token)
            .collect();
        let exists = store::existing(stale.iter().map(|token| self.layout.token_key(token)))?;
        let dead: Vec<String> = stale
            .into_iter()
            .zip(exists)
            .filter_map(|(token, exists)| (!exists).then_some(token))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        self.unlist(user_id, dead)
    }

    /// A login in single mode: replace every indexed token atomically, or
    /// lose the race to a concurrent writer of the index and try again.
    ///
    /// A full Redis refuses the whole commit, the revocation of the old
    /// tokens with it; they are then revoked on their own, deletions alone
    /// that it runs, before the refusal is returned: a login refused for
    /// memory still logs the user out everywhere else, and never leaves
    /// more than one token valid. This costs round trips only when the
    /// store failed; revoking before every commit would cost one on every
    /// login (and the commit's own `HDEL` would then break its `WATCH`).
    fn replace_tokens(&self, user_id: &str, writes: &[Command]) -> Result<(), Error> {
        let index = self.layout.index_key(user_id);
        let read = [cmd::hgetall(&index)];
        let mut old: Vec<String> = Vec::new();
        let won = store::optimistic(
            std::slice::from_ref(&index),
            &read,
            MAX_SINGLE_MODE_ATTEMPTS,
            |replies| {
                old = replies
                    .at(0)?
                    .pairs("HGETALL index")?
                    .into_iter()
                    .map(|(token, _)| token)
                    .collect();
                let mut commands = Vec::with_capacity(writes.len() + 2 + old.len());
                if !old.is_empty() {
                    commands.extend(self.forget(user_id, old.clone()));
                }
                commands.extend_from_slice(writes);
                commands.extend(self.evictions(user_id, &old));
                Ok((commands, ()))
            },
        );
        let won = match won {
            Err(refused @ Error::Store(_)) if !old.is_empty() => {
                let mut evict = self.forget(user_id, old.clone()).to_vec();
                evict.extend(self.evictions(user_id, &old));
                store::atomic(&evict)?;
                return Err(refused);
            }
            won => won?,
        };
        won.ok_or_else(|| {
            Error::Conflict(format!(
                "single-mode login of user {user_id:?} lost {MAX_SINGLE_MODE_ATTEMPTS} races in a row"
            ))
        })
    }

    /// The tokens the user's index lists.
    fn listed(&self, user_id: &str) -> Result<Vec<(String, String)>, Error> {
        store::one(cmd::hgetall(self.layout.index_key(user_id)))?.pairs("HGETALL index")
    }
}

impl Policy for Gosession {
    fn new(settings: &Settings) -> Result<Self, Error> {
        let layout = Layout::new(
            &settings.token_key_prefix,
            &settings.user_key_prefix,
            settings.default_expire_seconds,
            settings.index_expire_seconds,
        )?;
        Ok(Self {
            layout,
            single_mode: settings.single_mode,
            user_loader: settings.user_loader,
            events: settings.events,
        })
    }

    fn self_check(&self) -> Result<SelfCheckReport, Error> {
        Ok(SelfCheckReport {
            probe_token: layout::new_token("dsession-probe", &[0; 16]),
            single_mode: self.single_mode,
            max_sessions: None,
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        ttl::resolve(requested, self.layout.default_ttl)
    }

    fn check_user_id(&self, user_id: &str) -> Result<(), Error> {
        layout::check_user_id(user_id)
    }

    fn set_token(
        &self,
        user_id: &str,
        ttl: i64,
        attributes: &SessionAttributes,
    ) -> Result<IssuedToken, Error> {
        let token = layout::new_token(user_id, &random::bytes());
        let now = time::now();
        let expires = now + ttl;
        let mut writes = vec![
            cmd::set(self.layout.token_key(&token), self.layout.user_key(user_id))
                .ttl(ttl)
                .into(),
        ];
        if !attributes::is_empty(attributes) {
            let meta = format!("{now} {}", attributes::encode(attributes));
            writes.push(cmd::set(self.layout.meta_key(&token), meta).ttl(ttl).into());
        }
        writes.extend(self.index_writes(user_id, &token, expires, ttl));
        writes.extend(self.event(user_id, || {
            Event::new(Kind::Login, user_id)
                .session(&token)
                .device(attributes.device.as_deref())
        }));
        if self.single_mode {
            self.replace_tokens(user_id, &writes)?;
        } else {
            self.add_token(user_id, writes)?;
        }
        Ok(IssuedToken {
            token,
            token_expire_time: expires,
        })
    }

    /// Reads whether the token is listed and live with its key watched,
    /// then extends it in a commit that a write to the key since (a
    /// revocation, its expiry) aborts: the extension and its event happen
    /// together or not at all. EXPIRE never creates a key, so a dead token
    /// stays dead whatever races it.
    fn refresh_token(&self, token: &str, ttl: i64) -> Result<i64, Error> {
        let Some(user_id) = layout::token_user(token)? else {
            return Err(Error::NotFound);
        };
        let token_key = self.layout.token_key(token);
        let reads = [
            self.index_entry(user_id, token),
            cmd::exists([token_key.clone()]),
        ];
        let mut prune = false;
        let refreshed = store::optimistic(
            std::slice::from_ref(&token_key),
            &reads,
            MAX_REFRESH_ATTEMPTS,
            |mut replies| {
                let [listed, exists] = replies.next_n()?;
                let listed = listed.integer("HEXISTS index")? == 1;
                if !listed || exists.integer("EXISTS token")? == 0 {
                    prune = listed;
                    return Ok((Vec::new(), None));
                }
                let expires = time::now() + ttl;
                let mut commands = vec![
                    cmd::expire(&token_key, ttl).into(),
                    cmd::expire(self.layout.meta_key(token), ttl).into(),
                ];
                commands.extend(self.index_writes(user_id, token, expires, ttl));
                commands.extend(self.event(user_id, || {
                    Event::new(Kind::Refresh, user_id).session(token)
                }));
                Ok((commands, Some(expires)))
            },
        )?;
        match refreshed {
            Some(Some(expires)) => Ok(expires),
            Some(None) if prune => {
                self.unlist(user_id, vec![token.to_owned()])?;
                Err(Error::NotFound)
            }
            Some(None) => Err(Error::NotFound),
            None => Err(Error::Conflict(format!(
                "refresh of a token of user {user_id:?} lost {MAX_REFRESH_ATTEMPTS} races in a row"
            ))),
        }
    }

    fn delete_token(&self, token: &str) -> Result<(), Error> {
        let Some(user_id) = layout::token_user(token)? else {
            return Ok(());
        };
        let mut commands = self.forget(user_id, vec![token.to_owned()]).to_vec();
        commands.extend(self.event(user_id, || Event::new(Kind::Revoke, user_id).session(token)));
        store::atomic(&commands)?;
        Ok(())
    }

    fn check_token(&self, token: &str, detail: UserDetail) -> Result<Option<User>, Error> {
        let Some(user_id) = layout::token_user(token)? else {
            return Ok(None);
        };
        let token_key = self.layout.token_key(token);
        let user_key = self.layout.user_key(user_id);
        let mut reads = vec![
            cmd::get(&token_key),
            cmd::ttl(token_key),
            self.index_entry(user_id, token),
        ];
        reads.extend(detail.read(self, user_id));
        let mut replies = store::batch(&reads)?;
        let [value, ttl, listed] = replies.next_n()?;
        let now = time::now();
        let value = value.text("GET token")?;
        let alive = time::lifetime(ttl.integer("TTL token")?, now);
        let (Some(value), Some((remaining, expires))) = (value, alive) else {
            self.unlist(user_id, vec![token.to_owned()])?;
            return Ok(None);
        };
        if value != user_key {
            return Err(Error::Corrupt(format!(
                "token key names user key {value:?}, expected {user_key:?}"
            )));
        }
        if listed.integer("HEXISTS index")? == 0 {
            return Ok(None);
        }
        Ok(Some(User {
            id: user_id.to_owned(),
            token: token.to_owned(),
            token_remain_live_time: remaining,
            token_expire_time: expires,
            detail: detail.resolve(self, user_id, replies.next())?,
        }))
    }

    fn list_user_token(&self, user_id: &str, page: &PageRequest) -> Result<TokenPage, Error> {
        let mut listed: Vec<Listed> = self
            .listed(user_id)?
            .into_iter()
            .map(|(token, expiry)| Listed::new(token, &expiry))
            .collect();
        listed.sort_by(|a, b| a.at.cmp(&b.at));
        let (listed, more) = page::cut(listed, |entry| entry.at.clone(), page)?;
        let reads: Vec<Command> = listed
            .iter()
            .flat_map(|entry| {
                [
                    cmd::ttl(self.layout.token_key(&entry.token)),
                    cmd::get(self.layout.meta_key(&entry.token)),
                ]
            })
            .collect();
        let mut replies = store::batch(&reads)?;
        let now = time::now();
        let mut tokens = Vec::with_capacity(listed.len());
        let mut dead = Vec::new();
        for entry in &listed {
            let [ttl, meta] = replies.next_n()?;
            let Some((remaining, expires)) = time::lifetime(ttl.integer("TTL token")?, now) else {
                dead.push(entry.token.clone());
                continue;
            };
            let (created_at, attributes) = match meta.text("GET meta")? {
                Some(meta) => read_meta(&meta)?,
                None => (None, attributes::none()),
            };
            tokens.push(TokenEntry {
                token: entry.token.clone(),
                token_remain_live_time: remaining,
                token_expire_time: expires,
                created_at,
                last_seen: None,
                attributes,
            });
        }
        if !dead.is_empty() {
            self.unlist(user_id, dead)?;
        }
        Ok(TokenPage {
            tokens,
            next_cursor: page::next(listed.last().map(|entry| entry.at.clone()), more),
        })
    }

    fn delete_user_token(&self, user_id: &str) -> Result<(), Error> {
        let tokens: Vec<String> = self
            .listed(user_id)?
            .into_iter()
            .map(|(token, _)| token)
            .collect();
        let revoke_all = self.event(user_id, || Event::new(Kind::RevokeAll, user_id));
        if tokens.is_empty() && revoke_all.is_none() {
            return Ok(());
        }
        // Only the entries read are removed: a token issued meanwhile keeps its
        // entry, so a later delete-user-token still finds it.
        let mut commands = match tokens.is_empty() {
            true => Vec::new(),
            false => self.forget(user_id, tokens).to_vec(),
        };
        commands.extend(revoke_all);
        store::atomic(&commands)?;
        Ok(())
    }
}

/// A token in its user's list: latest expiry first, then by a hash of the
/// token, so that a cursor, which travels in URLs, never holds a token.
struct Listed {
    token: String,
    at: Latest,
}

impl Listed {
    fn new(token: String, expiry: &str) -> Self {
        // An entry gosession or an older writer left unreadable sorts last;
        // its token's TTL decides whether it lives.
        let expiry = expiry.parse().unwrap_or(i64::MIN);
        Self {
            at: Latest::new(expiry, page::hash(&token)),
            token,
        }
    }
}

/// `{created_at} {json}`, as `set-token` writes the metadata key.
fn read_meta(meta: &str) -> Result<(Option<i64>, SessionAttributes), Error> {
    let corrupt = || Error::Corrupt(format!("session metadata key holds {meta:?}"));
    let (created_at, json) = meta.split_once(' ').ok_or_else(corrupt)?;
    let created_at = created_at.parse().map_err(|_| corrupt())?;
    Ok((Some(created_at), attributes::decode(json)?))
}

#[cfg(test)]
mod tests {
    use dsession_policy_sdk::page::Position;

    use super::*;

    #[test]
    fn tokens_are_listed_by_expiry_then_a_hash_that_is_no_token() {
        let token = format!("alice_{}", "0".repeat(32));
        let listed = Listed::new(token.clone(), "1700000000");
        assert_eq!(listed.at.encode(), "1700000000 3b638201f997dc88");
        assert!(Listed::new(token.clone(), "1700000001").at < listed.at);
        assert!(Listed::new(token, "never").at > listed.at);
    }
}
