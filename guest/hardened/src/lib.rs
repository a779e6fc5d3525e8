//! The hardened dsession policy: what OWASP's session guidance and session
//! libraries ask for, where the default policy keeps gosession's layout.
//!
//! - The store holds only the SHA-256 of a token's secret: a dump,
//!   `MONITOR` or a replica snapshot yields no usable token.
//! - A token expires after `idle_timeout_seconds` unused and at its
//!   absolute deadline, the TTL it was issued with, whatever happens. A
//!   check reads alone (`GET` and `TTL` of the token key, `HGET` of the
//!   epoch), so that it is cacheable; it slides the idle expiry, and
//!   records when it last saw the token, with a `SET XX` in a second round
//!   trip only when that adds `touch_interval_seconds` (by default a tenth
//!   of the idle timeout), so about once per interval per token. A token
//!   unused since a check then expires between the idle timeout minus the
//!   interval and the idle timeout after it (see [`layout`]).
//! - At most `max_sessions` live tokens per user, and per device label
//!   `max_sessions_per_device` (or `device_limits`): a login beyond one
//!   revokes the oldest it counts in the same optimistic transaction, or
//!   under `on_limit = reject_new` is refused with a conflict naming it.
//! - A login's attributes (device, user agent, IP, labels) ride in its
//!   token key's value, and its device in its index entry too.
//! - Revoking every token of a user is one write: the user's index goes,
//!   the epoch in it with it, and a token from another epoch is dead.
//! - Revocation works on a full Redis (`maxmemory` under `noeviction`),
//!   which refuses everything queued in `MULTI` and every write that may
//!   grow memory, but runs a plain `DEL` or `HDEL`: every revocation is an
//!   atomic step of deletions alone, which the host then sends again as a
//!   plain pipeline, the token key deleted before its index entry.
//! - Every key of a user holds the hash tag `{user}`: one Redis Cluster slot.
//!
//! The layout, the settings (`[policy.config]`, read through `wasi:config`)
//! and the token format are in [`layout`]. This file is the policy on
//! `dsession-policy-sdk`: a user's index read whole ([`Index`]), then one
//! method per `token-manage` operation. The SDK checks each call's
//! arguments first, and supplies the user-info operations and the detail
//! of check-token-or-update-user from the cache key named here.

pub mod layout;

use std::cell::RefCell;
use std::rc::Rc;

use dsession_policy_sdk::event::{Event, Kind};
use dsession_policy_sdk::page::{self, Latest};
use dsession_policy_sdk::{
    Command, ConfigKey, Describe, Error, IssuedToken, PageRequest, Policy, Reply, SelfCheckReport,
    SessionAttributes, Settings, TokenEntry, TokenPage, User, UserCache, UserDetail, attributes,
    client, cmd, config, random, store, time, token, ttl,
};
use layout::{EPOCH_FIELD, OnLimit, Record, Stored};

/// How often a login re-reads the index after losing a race before it
/// gives up with `conflict`; each lost race means another call won.
const MAX_LOGIN_ATTEMPTS: u32 = 256;

/// How often a refresh reads again after a write to its token (a check's
/// touch) came between its read and its commit.
const MAX_REFRESH_ATTEMPTS: u32 = 64;

/// Everything one call needs: the policy's settings and the host's.
struct Hardened {
    layout: Rc<layout::Config>,
    user_loader: bool,
    index_ttl: i64,
    /// Whether each change appends its event (`settings.events`).
    events: bool,
}

dsession_policy_sdk::export!(Hardened with describe);

/// A layout read and checked, with the host settings (default expiry,
/// single mode) it was checked against.
struct Checked {
    settings: (i64, bool),
    layout: Rc<layout::Config>,
}

thread_local! {
    /// The layout the first call of this instance read and checked. An
    /// instance's `wasi:config` values never change (a new config means
    /// new instances), so later calls skip the host call and the parsing.
    static LAYOUT: RefCell<Option<Checked>> = const { RefCell::new(None) };
}

/// The layout for these host settings: the one this instance checked, or
/// `[policy.config]` read and checked now.
fn layout_for(settings: (i64, bool)) -> Result<Rc<layout::Config>, Error> {
    let cached = LAYOUT.with_borrow(|cached| {
        cached
            .as_ref()
            .filter(|checked| checked.settings == settings)
            .map(|checked| Rc::clone(&checked.layout))
    });
    if let Some(layout) = cached {
        return Ok(layout);
    }
    let layout = Rc::new(layout::Config::new(
        &config::get_all()?,
        settings.0,
        settings.1,
    )?);
    LAYOUT.set(Some(Checked {
        settings,
        layout: Rc::clone(&layout),
    }));
    Ok(layout)
}

/// `(user id, digest of the secret)` of a well-formed token.
fn split_token(token: &str) -> Result<Option<(&str, String)>, Error> {
    Ok(layout::split_token(token)?.map(|(user_id, secret)| (user_id, layout::digest(secret))))
}

/// The name `list-user-token` gives the session of `digest` of user
/// `user_id`, `sha256:{digest}:{user id}`: the store holds no token to
/// list, and no check accepts this; delete-token takes it, so that an
/// operator revokes what a listing shows.
fn listed_name(user_id: &str, digest: &str) -> String {
    format!("sha256:{digest}:{user_id}")
}

/// `(user id, digest)` of a name [`listed_name`] gave; None for any other
/// text.
fn split_listed_name(name: &str) -> Option<(&str, String)> {
    let rest = name.strip_prefix("sha256:")?;
    let (digest, user_id) = rest.split_at_checked(layout::SECRET_HEX)?;
    let user_id = user_id.strip_prefix(':')?;
    (token::is_hex(digest) && dsession_policy_sdk::user_id::check(user_id).is_ok())
        .then(|| (user_id, digest.to_owned()))
}

/// One session in a user's index.
struct Session {
    digest: String,
    record: Record,
    device: Option<String>,
}

impl Session {
    /// Its place in the list: newest first, then by digest.
    fn position(&self) -> Latest {
        Latest::new(self.record.created_ns, self.digest.clone())
    }
}

/// A user's index read whole: the epoch and the sessions, oldest first.
struct Index {
    epoch: Option<String>,
    sessions: Vec<Session>,
}

impl Index {
    fn read(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        let mut epoch = None;
        let mut sessions = Vec::with_capacity(pairs.len());
        for (field, value) in pairs {
            if field == EPOCH_FIELD {
                epoch = Some(value);
                continue;
            }
            let (record, device) = layout::parse_index_entry(&value)
                .ok_or_else(|| Error::Corrupt(format!("index entry {field:?} holds {value:?}")))?;
            sessions.push(Session {
                digest: field,
                record,
                device,
            });
        }
        sessions.sort_by(|a, b| {
            (a.record.created_ns, &a.digest).cmp(&(b.record.created_ns, &b.digest))
        });
        Ok(Self { epoch, sessions })
    }

    /// Whether a listed session may be live: issued in the current epoch
    /// and before its deadline. Its key may still have expired idle.
    fn current(&self, session: &Session, now: i64) -> bool {
        self.epoch.as_deref() == Some(session.record.epoch.as_str())
            && session.record.deadline > now
    }
}

/// A token key's value, read; corrupt when it is not of the layout's form.
fn read_stored(value: String) -> Result<Stored, Error> {
    Stored::decode(value).map_err(|value| Error::Corrupt(format!("token key holds {value:?}")))
}

/// A token key's value when it is live: its key exists, its epoch is the
/// user's, its deadline is ahead.
fn live_record(
    value: Option<String>,
    epoch: Option<String>,
    now: i64,
) -> Result<Option<Stored>, Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    let stored = read_stored(value)?;
    let current = epoch.is_some_and(|epoch| epoch == stored.record.epoch);
    Ok((current && stored.record.deadline > now).then_some(stored))
}

impl Hardened {
    /// Deletes token keys, then their index entries: deletions alone,
    /// which a full Redis still runs (see the module's docs).
    fn forget(&self, user_id: &str, digests: Vec<String>) -> Vec<Command> {
        if digests.is_empty() {
            return Vec::new();
        }
        vec![
            cmd::del(
                digests
                    .iter()
                    .map(|digest| self.layout.token_key(user_id, digest)),
            ),
            cmd::hdel(self.layout.index_key(user_id), digests),
        ]
    }

    /// `event`'s command for the step that writes the user's index, when
    /// events are recorded.
    fn event(&self, user_id: &str, event: impl FnOnce() -> Event) -> Option<Command> {
        self.events
            .then(|| event().command(self.layout.index_key(user_id)))
    }

    /// A login past a limit under `on_limit = reject_new`: a conflict that
    /// names the limit (`why` says what the user holds).
    fn reject(&self, user_id: &str, why: impl FnOnce() -> String) -> Result<(), Error> {
        match self.layout.on_limit {
            OnLimit::EvictOldest => Ok(()),
            OnLimit::RejectNew => Err(Error::Conflict(format!(
                "login refused: user {user_id:?} holds {}; on_limit = reject_new",
                why()
            ))),
        }
    }

    /// The read of the user's epoch.
    fn epoch(&self, user_id: &str) -> Command {
        cmd::hget(self.layout.index_key(user_id), EPOCH_FIELD)
    }

    /// One login attempt against the index as `read`: the commands that
    /// prune what is dead and evict beyond the device's limit and
    /// `max_sessions` (or the refusal), the writes of the session, and its
    /// deadline.
    fn login(
        &self,
        user_id: &str,
        digest: &str,
        ttl: i64,
        attributes: &SessionAttributes,
        read: &Index,
    ) -> Result<Login, Error> {
        let created_ns = time::now_ns();
        let now = created_ns / 1_000_000_000;
        let deadline = now + ttl;
        let (epoch, new_epoch) = match &read.epoch {
            Some(epoch) => (epoch.clone(), false),
            None => (random::hex(16), true),
        };
        // Sessions past their deadline or revoked by an epoch change are
        // pruned here, so the index stays as small as the live sessions.
        let (mut live, dead): (Vec<&Session>, Vec<&Session>) = read
            .sessions
            .iter()
            .partition(|session| read.current(session, now));
        let mut doomed: Vec<String> = dead.iter().map(|session| session.digest.clone()).collect();
        // The sessions it revokes to keep a bound, and which bound.
        let mut evicted: Vec<(&Session, &str)> = Vec::new();
        let device = attributes.device.as_deref();
        let device_max = device.and_then(|device| self.layout.device_limit(device));
        let on_device = |session: &Session| device.is_some() && session.device.as_deref() == device;
        let full = |live: &[&Session]| {
            self.layout
                .max_sessions
                .is_some_and(|max| live.len() >= max)
                || device_max.is_some_and(|max| {
                    live.iter().filter(|session| on_device(session)).count() >= max
                })
        };
        if full(&live) {
            // Sessions that expired idle only need pruning; count the rest
            // against the limits, so that exactly the limit stays live.
            let keys = live
                .iter()
                .map(|session| self.layout.token_key(user_id, &session.digest));
            let exists = store::existing(keys)?;
            let (kept, idle): (Vec<_>, Vec<_>) = live
                .into_iter()
                .zip(exists)
                .partition(|(_, exists)| *exists);
            doomed.extend(idle.into_iter().map(|(session, _)| session.digest.clone()));
            live = kept.into_iter().map(|(session, _)| session).collect();
        }
        if let (Some(max), Some(device)) = (device_max, device) {
            let counted: Vec<usize> = (0..live.len()).filter(|&i| on_device(live[i])).collect();
            let over = (counted.len() + 1).saturating_sub(max);
            if over > 0 {
                self.reject(user_id, || {
                    format!(
                        "{} live sessions on device {device:?}, the most max_sessions_per_device \
                         (or device_limits) allows",
                        counted.len()
                    )
                })?;
                // Oldest first: `live` keeps the index's order.
                for &i in counted[..over].iter().rev() {
                    evicted.push((live.remove(i), "max_sessions_per_device"));
                }
            }
        }
        if let Some(max) = self.layout.max_sessions {
            let over = (live.len() + 1).saturating_sub(max);
            if over > 0 {
                self.reject(user_id, || {
                    format!("{} live sessions, the most max_sessions allows", live.len())
                })?;
                evicted.extend(live.drain(..over).map(|session| (session, "max_sessions")));
            }
        }
        let record = Record {
            epoch: epoch.clone(),
            created_ns,
            deadline,
        };
        let mut fields = vec![(
            digest.to_owned(),
            layout::index_entry(&record, attributes.device.as_deref()),
        )];
        if new_epoch {
            fields.push((EPOCH_FIELD.to_owned(), epoch));
        }
        let index = self.layout.index_key(user_id);
        let index_ttl = self.index_ttl.max(ttl);
        let stored = Stored {
            record,
            last_seen: now,
            attributes: (!attributes::is_empty(attributes)).then(|| attributes::encode(attributes)),
        };
        let mut writes = vec![
            cmd::set(self.layout.token_key(user_id, digest), stored.encode())
                .ttl(self.layout.key_ttl(ttl))
                .into(),
            cmd::hset(&index, fields),
            // NX sets the expiry of a new index, GT only ever lengthens it:
            // the index, and its epoch, outlive every token listed in it.
            cmd::expire(&index, index_ttl).if_none().into(),
            cmd::expire(index, index_ttl).if_later().into(),
        ];
        writes.extend(self.event(user_id, || {
            Event::new(Kind::Login, user_id)
                .session(&listed_name(user_id, digest))
                .device(device)
        }));
        doomed.extend(evicted.iter().map(|(session, _)| session.digest.clone()));
        // The evictions' events ride with their deletions, which a login
        // refused by the store still runs on their own.
        let mut forget = self.forget(user_id, doomed);
        for (session, bound) in &evicted {
            forget.extend(self.event(user_id, || {
                Event::new(Kind::Evict, user_id)
                    .session(&listed_name(user_id, &session.digest))
                    .device(session.device.as_deref())
                    .detail(*bound)
            }));
        }
        Ok(Login {
            forget,
            writes,
            deadline,
        })
    }
}

/// One login attempt, as [`Hardened::login`] plans it.
struct Login {
    /// Deletes the sessions it prunes and evicts, with the evictions'
    /// events.
    forget: Vec<Command>,
    /// Writes the new session.
    writes: Vec<Command>,
    deadline: i64,
}

impl UserCache for Hardened {
    fn user_key(&self, user_id: &str) -> String {
        self.layout.user_key(user_id)
    }

    fn user_loader(&self) -> bool {
        self.user_loader
    }
}

impl Policy for Hardened {
    fn new(settings: &Settings) -> Result<Self, Error> {
        Ok(Self {
            layout: layout_for((settings.default_expire_seconds, settings.single_mode))?,
            user_loader: settings.user_loader,
            index_ttl: settings.index_expire_seconds.max(1),
            events: settings.events,
        })
    }

    fn self_check(&self) -> Result<SelfCheckReport, Error> {
        Ok(SelfCheckReport {
            probe_token: format!("dsession-probe_{}", "0".repeat(layout::SECRET_HEX)),
            single_mode: self.layout.max_sessions == Some(1),
            max_sessions: self
                .layout
                .max_sessions
                .map(|max| u32::try_from(max).unwrap_or(u32::MAX)),
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        ttl::resolve(requested, self.layout.default_ttl)
    }

    fn set_token(
        &self,
        user_id: &str,
        ttl: i64,
        attributes: &SessionAttributes,
    ) -> Result<IssuedToken, Error> {
        let secret = random::hex(32);
        let digest = layout::digest(&secret);
        let index = self.layout.index_key(user_id);
        // Without a limit a login needs only the epoch, so that it costs the
        // same however many sessions the user has; dead entries are then
        // pruned by list-user-token.
        let counts_device = attributes.device.is_some() && self.layout.limits_devices();
        let read_index = match self.layout.max_sessions.is_some() || counts_device {
            true => cmd::hgetall(&index),
            false => self.epoch(user_id),
        };
        // The sessions the last attempt pruned and evicted. A full Redis
        // refuses the whole commit, their deletion with it; they are then
        // deleted on their own, deletions alone that it runs, before the
        // refusal is returned, so that a login refused for memory never
        // leaves more than `max_sessions` valid. This costs round trips only
        // when the store failed; deleting them before every commit would
        // cost one on every login beyond the limit.
        let mut forget = Vec::new();
        let deadline = store::optimistic(
            std::slice::from_ref(&index),
            std::slice::from_ref(&read_index),
            MAX_LOGIN_ATTEMPTS,
            |replies| {
                let read = match replies.at(0)? {
                    Reply::Pairs(pairs) => Index::read(pairs)?,
                    epoch => Index {
                        epoch: epoch.text("HGET epoch")?,
                        sessions: Vec::new(),
                    },
                };
                let login = self.login(user_id, &digest, ttl, attributes, &read)?;
                let mut commands = login.forget.clone();
                commands.extend(login.writes);
                forget = login.forget;
                Ok((commands, login.deadline))
            },
        );
        let deadline = match deadline {
            Err(refused @ Error::Store(_)) if !forget.is_empty() => {
                store::atomic(&forget)?;
                return Err(refused);
            }
            // Only a limit refuses a login with a conflict here: a lost race
            // reads again.
            Err(Error::Conflict(why)) => {
                let rejected = self.event(user_id, || {
                    Event::new(Kind::Reject, user_id)
                        .device(attributes.device.as_deref())
                        .detail(why.as_str())
                });
                // The refusal stands whether or not its record could be
                // written: a failing store loses the event, not the answer.
                if let Some(rejected) = rejected {
                    let _ = store::atomic(&[rejected]);
                }
                return Err(Error::Conflict(why));
            }
            deadline => deadline?,
        };
        let Some(deadline) = deadline else {
            return Err(Error::Conflict(format!(
                "login of user {user_id:?} lost {MAX_LOGIN_ATTEMPTS} races in a row"
            )));
        };
        Ok(IssuedToken {
            token: format!("{user_id}_{secret}"),
            token_expire_time: deadline,
        })
    }

    /// Extends a live token's key to `ttl` seconds from now, never past its
    /// deadline: read with the key and the index watched, then extended in
    /// a commit that a write to either since (a revocation, an expiry, a
    /// touch, a login) aborts, so that the extension and its event happen
    /// together, and only to a live token.
    fn refresh_token(&self, token: &str, ttl: i64) -> Result<i64, Error> {
        let Some((user_id, digest)) = split_token(token)? else {
            return Err(Error::NotFound);
        };
        let token_key = self.layout.token_key(user_id, &digest);
        let reads = [cmd::get(&token_key), self.epoch(user_id)];
        let refreshed = store::optimistic(
            &[token_key.clone(), self.layout.index_key(user_id)],
            &reads,
            MAX_REFRESH_ATTEMPTS,
            |mut replies| {
                let [value, epoch] = replies.next_n()?;
                let now = time::now();
                let live = live_record(value.text("GET token")?, epoch.text("HGET epoch")?, now)?;
                let Some(stored) = live else {
                    return Ok((Vec::new(), None));
                };
                let seconds = ttl.min(stored.record.deadline - now).max(1);
                let mut commands = vec![cmd::expire(&token_key, seconds).into()];
                commands.extend(self.event(user_id, || {
                    Event::new(Kind::Refresh, user_id).session(&listed_name(user_id, &digest))
                }));
                Ok((commands, Some(now + seconds)))
            },
        )?;
        match refreshed {
            Some(Some(expires)) => Ok(expires),
            Some(None) => Err(Error::NotFound),
            None => Err(Error::Conflict(format!(
                "refresh of a token of user {user_id:?} lost {MAX_REFRESH_ATTEMPTS} races in a row"
            ))),
        }
    }

    /// Revokes a token, or the session a listing names.
    fn delete_token(&self, token: &str) -> Result<(), Error> {
        let Some((user_id, digest)) = split_token(token)?.or_else(|| split_listed_name(token))
        else {
            return Ok(());
        };
        let revoke = self.event(user_id, || {
            Event::new(Kind::Revoke, user_id).session(&listed_name(user_id, &digest))
        });
        let mut commands = self.forget(user_id, vec![digest]);
        commands.extend(revoke);
        store::atomic(&commands)?;
        Ok(())
    }

    fn check_token(&self, token: &str, detail: UserDetail) -> Result<Option<User>, Error> {
        let Some((user_id, digest)) = split_token(token)? else {
            return Ok(None);
        };
        let token_key = self.layout.token_key(user_id, &digest);
        // Reads alone, so that a check is cacheable: the slide of the idle
        // expiry, when one is due, is a second round trip.
        let mut reads = vec![
            cmd::get(&token_key),
            cmd::ttl(&token_key),
            self.epoch(user_id),
        ];
        reads.extend(detail.read(self, user_id));
        let mut replies = store::batch(&reads)?;
        let [value, key_ttl, epoch] = replies.next_n()?;
        let value = value.text("GET token")?;
        let key_ttl = key_ttl.integer("TTL token")?;
        let had_key = value.is_some();
        let now = time::now();
        let Some(mut stored) = live_record(value, epoch.text("HGET epoch")?, now)? else {
            if had_key {
                // Revoked by an epoch change or past its deadline: forget it
                // now rather than let checks keep its key alive.
                store::atomic(&self.forget(user_id, vec![digest]))?;
            }
            return Ok(None);
        };
        // Gone between the GET and the TTL: it expired meanwhile.
        if time::lifetime(key_ttl, now).is_none() {
            return Ok(None);
        }
        let left = stored.record.deadline - now;
        let remaining = match self.layout.touch(key_ttl, left) {
            Some(slid) => {
                // The slide records when the token was last seen, and from
                // where when the host knows the client (a gateway's check).
                // SET XX never creates a key: a token revoked or expired
                // since the read stays dead, and is answered as the read
                // would answer it now.
                stored.last_seen = now;
                if let Some(client) = client::current() {
                    stored.seen_from(&client)?;
                }
                let touched = cmd::set(token_key, stored.encode()).ttl(slid).if_present();
                if !store::one(touched.into())?.written("SET token")? {
                    return Ok(None);
                }
                slid
            }
            None => layout::remaining(key_ttl, left),
        };
        Ok(Some(User {
            id: user_id.to_owned(),
            token: token.to_owned(),
            token_remain_live_time: remaining,
            token_expire_time: now + remaining,
            detail: detail.resolve(self, user_id, replies.next())?,
        }))
    }

    fn list_user_token(&self, user_id: &str, page: &PageRequest) -> Result<TokenPage, Error> {
        let index = store::one(cmd::hgetall(self.layout.index_key(user_id)))?;
        let read = Index::read(index.pairs("HGETALL index")?)?;
        let now = time::now();
        // Sessions of another epoch or past their deadline are dead
        // without a read; the page's others are dead when their key is.
        let (mut current, mut dead): (Vec<&Session>, Vec<String>) = (Vec::new(), Vec::new());
        for session in &read.sessions {
            match read.current(session, now) {
                true => current.push(session),
                false => dead.push(session.digest.clone()),
            }
        }
        current.sort_by_key(|session| session.position());
        let (listed, more) = page::cut(current, |session| session.position(), page)?;
        let reads: Vec<Command> = listed
            .iter()
            .flat_map(|session| {
                let key = self.layout.token_key(user_id, &session.digest);
                [cmd::ttl(&key), cmd::get(key)]
            })
            .collect();
        let mut replies = store::batch(&reads)?;
        let mut tokens = Vec::with_capacity(listed.len());
        for session in &listed {
            let [ttl, value] = replies.next_n()?;
            let ttl = ttl.integer("TTL token")?;
            let stored = value.text("GET token")?.map(read_stored).transpose()?;
            let Some(stored) = stored.filter(|stored| ttl >= 0 && stored.record == session.record)
            else {
                dead.push(session.digest.clone());
                continue;
            };
            let mut attributes = match &stored.attributes {
                Some(json) => attributes::decode(json)?,
                None => attributes::none(),
            };
            attributes.device = attributes.device.or_else(|| session.device.clone());
            let remaining = ttl.min(session.record.deadline - now);
            tokens.push(TokenEntry {
                // The store holds no token to list: this names the session
                // by the digest of its secret, which no check accepts.
                token: listed_name(user_id, &session.digest),
                token_remain_live_time: remaining,
                token_expire_time: now + remaining,
                created_at: Some(session.record.created_ns / 1_000_000_000),
                // Without an idle timeout no check slides, and none records
                // when it saw the token.
                last_seen: self.layout.idle_timeout.map(|_| stored.last_seen),
                attributes,
            });
        }
        let forget = self.forget(user_id, dead);
        if !forget.is_empty() {
            store::atomic(&forget)?;
        }
        Ok(TokenPage {
            tokens,
            next_cursor: page::next(listed.last().map(|session| session.position()), more),
        })
    }

    /// Revokes every token of the user with one write, a deletion that a
    /// full Redis still runs: `DEL` of the index, and of the epoch in it. A token is
    /// live only while its epoch is the index's, so every token issued
    /// before is dead, and stays dead: the next login starts a new random
    /// epoch. A login racing this one watches the index, so it either
    /// committed before (its token is revoked too) or reads the index again
    /// after. The dead tokens' keys expire on their own (each has a TTL),
    /// or go when a check meets them. An atomic step of one command, so
    /// that durable writes wait for the replicas to have it.
    fn delete_user_token(&self, user_id: &str) -> Result<(), Error> {
        let mut commands = vec![cmd::del([self.layout.index_key(user_id)])];
        commands.extend(self.event(user_id, || Event::new(Kind::RevokeAll, user_id)));
        store::atomic(&commands)?;
        Ok(())
    }
}

impl Describe for Hardened {
    fn config_keys() -> Vec<ConfigKey> {
        layout::CONFIG_KEYS
            .iter()
            .map(|(name, default, description)| ConfigKey {
                name: (*name).to_owned(),
                default: default.map(str::to_owned),
                description: (*description).to_owned(),
            })
            .collect()
    }
}
