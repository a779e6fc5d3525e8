//! The hardened dsession policy: what OWASP's session guidance and session
//! libraries ask for, where the default policy keeps gosession's layout.
//!
//! - The store holds only the SHA-256 of a token's secret: a dump,
//!   `MONITOR` or a replica snapshot yields no usable token.
//! - A token expires after `idle_timeout_seconds` unused (each check slides
//!   it in the check's one round trip, `GETEX`) and at its absolute
//!   deadline, the TTL it was issued with, whatever happens.
//! - At most `max_sessions` live tokens per user: a login beyond it revokes
//!   the oldest in the same optimistic transaction.
//! - Revoking every token of a user is one write: the user's epoch changes,
//!   and a token from an older epoch is dead.
//! - Every key of a user holds the hash tag `{user}`: one Redis Cluster slot.
//!
//! The layout is in [`layout`].

pub mod layout;

use std::cell::RefCell;
use std::rc::Rc;

wit_bindgen::generate!({
    world: "described-policy",
    path: "../../wit",
    generate_all,
});

use dsession::session::store::{
    self, Command, ExpireArgs, ExpireCondition, GetExpireArgs, HashDeleteArgs, HashGetArgs,
    HashSetArgs, Reply, SetArgs, SetCondition,
};
use dsession::session::types::{Error, IssuedToken, Settings, TokenEntry, User, UserInfo};
use dsession::session::user_loader;
use exports::dsession::session::describe::{self, ConfigKey};
use exports::dsession::session::token_manage::Guest;
use layout::{EPOCH_FIELD, Record};

/// How often a login re-reads the index after losing a race before it
/// gives up with `conflict`; each lost race means another call won.
const MAX_LOGIN_ATTEMPTS: u32 = 256;

struct Policy;

export!(Policy);

/// Everything one call needs: the policy's settings and the host's.
struct Config {
    layout: Rc<layout::Config>,
    user_loader: bool,
    index_ttl: i64,
}

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

impl Config {
    fn new(settings: &Settings) -> Result<Self, Error> {
        let key = (settings.default_expire_seconds, settings.single_mode);
        let cached = LAYOUT.with_borrow(|cached| {
            cached
                .as_ref()
                .filter(|checked| checked.settings == key)
                .map(|checked| Rc::clone(&checked.layout))
        });
        let layout = match cached {
            Some(layout) => layout,
            None => {
                let pairs = wasi::config::store::get_all().map_err(|e| {
                    Error::InvalidArgument(format!("cannot read the policy config: {e:?}"))
                })?;
                let layout = Rc::new(
                    layout::Config::new(&pairs, key.0, key.1).map_err(Error::InvalidArgument)?,
                );
                LAYOUT.set(Some(Checked {
                    settings: key,
                    layout: Rc::clone(&layout),
                }));
                layout
            }
        };
        Ok(Self {
            layout,
            user_loader: settings.user_loader,
            index_ttl: settings.index_expire_seconds.max(1),
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        self.layout.ttl(requested).map_err(Error::InvalidArgument)
    }
}

fn check_user_id(user_id: &str) -> Result<(), Error> {
    layout::check_user_id(user_id).map_err(Error::InvalidArgument)
}

/// `(user id, digest of the secret)` of a well-formed token.
fn split_token(token: &str) -> Result<Option<(&str, String)>, Error> {
    Ok(layout::split_token(token)
        .map_err(Error::InvalidArgument)?
        .map(|(user_id, secret)| (user_id, layout::digest(secret))))
}

fn now_ns() -> i64 {
    let now = wasi::clocks::wall_clock::now();
    i64::try_from(now.seconds)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(now.nanoseconds))
}

fn now() -> i64 {
    now_ns() / 1_000_000_000
}

fn corrupt(what: &str, reply: &Reply) -> Error {
    Error::Corrupt(format!("unexpected store reply for {what}: {reply:?}"))
}

fn reply_integer(what: &str, reply: &Reply) -> Result<i64, Error> {
    match reply {
        Reply::Integer(n) => Ok(*n),
        other => Err(corrupt(what, other)),
    }
}

fn reply_text(what: &str, reply: Reply) -> Result<Option<String>, Error> {
    match reply {
        Reply::Text(text) => Ok(Some(text)),
        Reply::Nil => Ok(None),
        other => Err(corrupt(what, &other)),
    }
}

fn reply_pairs(what: &str, reply: Reply) -> Result<Vec<(String, String)>, Error> {
    match reply {
        Reply::Pairs(pairs) => Ok(pairs),
        other => Err(corrupt(what, &other)),
    }
}

fn reply_at(replies: Vec<Reply>, index: usize) -> Result<Reply, Error> {
    replies
        .into_iter()
        .nth(index)
        .ok_or_else(|| Error::Corrupt(format!("store returned no reply #{index}")))
}

fn hash_delete(key: String, fields: Vec<String>) -> Command {
    Command::HashDelete(HashDeleteArgs { key, fields })
}

fn expire(key: String, seconds: i64, condition: ExpireCondition) -> Command {
    Command::Expire(ExpireArgs {
        key,
        seconds,
        condition,
    })
}

/// A fresh epoch or secret: `bytes` random bytes as hex.
fn random_hex(bytes: u64) -> String {
    layout::hex(&wasi::random::random::get_random_bytes(bytes))
}

/// One session in a user's index.
struct Session {
    digest: String,
    record: Record,
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
            let record = layout::parse_index_entry(&value)
                .ok_or_else(|| Error::Corrupt(format!("index entry {field:?} holds {value:?}")))?;
            sessions.push(Session {
                digest: field,
                record,
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

/// Deletes token keys and their index entries.
fn forget(config: &Config, user_id: &str, digests: Vec<String>) -> Vec<Command> {
    if digests.is_empty() {
        return Vec::new();
    }
    vec![
        Command::Del(
            digests
                .iter()
                .map(|digest| config.layout.token_key(user_id, digest))
                .collect(),
        ),
        hash_delete(config.layout.index_key(user_id), digests),
    ]
}

/// Which of `sessions` still have a token key; one round trip.
fn existing(config: &Config, user_id: &str, sessions: &[&Session]) -> Result<Vec<bool>, Error> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let exists: Vec<Command> = sessions
        .iter()
        .map(|session| Command::Exists(vec![config.layout.token_key(user_id, &session.digest)]))
        .collect();
    store::batch(&exists)?
        .iter()
        .map(|reply| Ok(reply_integer("EXISTS token", reply)? == 1))
        .collect()
}

fn set_token(config: &Config, user_id: &str, ttl: i64) -> Result<IssuedToken, Error> {
    let secret = random_hex(32);
    let digest = layout::digest(&secret);
    let token = format!("{user_id}_{secret}");
    let index = config.layout.index_key(user_id);
    // Without a limit a login needs only the epoch, so that it costs the
    // same however many sessions the user has; dead entries are then
    // pruned by list-user-token.
    let read_index = match config.layout.max_sessions {
        Some(_) => Command::HashGetAll(index.clone()),
        None => Command::HashGet(HashGetArgs {
            key: index.clone(),
            field: EPOCH_FIELD.to_owned(),
        }),
    };
    for _ in 0..MAX_LOGIN_ATTEMPTS {
        let (transaction, replies) = store::watch(
            std::slice::from_ref(&index),
            std::slice::from_ref(&read_index),
        )?;
        let read = match reply_at(replies, 0)? {
            Reply::Pairs(pairs) => Index::read(pairs)?,
            epoch => Index {
                epoch: reply_text("HGET epoch", epoch)?,
                sessions: Vec::new(),
            },
        };
        let created_ns = now_ns();
        let now = created_ns / 1_000_000_000;
        let deadline = now + ttl;
        let current = |session: &Session| read.current(session, now);
        let (epoch, new_epoch) = match &read.epoch {
            Some(epoch) => (epoch.clone(), false),
            None => (random_hex(16), true),
        };
        // Sessions past their deadline or revoked by an epoch change are
        // pruned here, so the index stays as small as the live sessions.
        let (mut live, dead): (Vec<&Session>, Vec<&Session>) =
            read.sessions.iter().partition(|session| current(session));
        let mut doomed: Vec<String> = dead.iter().map(|session| session.digest.clone()).collect();
        if let Some(max) = config.layout.max_sessions
            && live.len() >= max
        {
            // Sessions that expired idle only need pruning; evict among
            // the rest, so that exactly `max` stay live.
            let exists = existing(config, user_id, &live)?;
            let mut kept = Vec::with_capacity(live.len());
            for (session, exists) in live.into_iter().zip(exists) {
                if exists {
                    kept.push(session);
                } else {
                    doomed.push(session.digest.clone());
                }
            }
            live = kept;
            let evict = (live.len() + 1).saturating_sub(max);
            doomed.extend(live.drain(..evict).map(|session| session.digest.clone()));
        }
        let record = Record {
            epoch: epoch.clone(),
            created_ns,
            deadline,
        };
        let mut fields = vec![(digest.clone(), layout::index_entry(&record))];
        if new_epoch {
            fields.push((EPOCH_FIELD.to_owned(), epoch));
        }
        let index_ttl = config.index_ttl.max(ttl);
        let mut commands = forget(config, user_id, doomed);
        commands.extend([
            Command::Set(SetArgs {
                key: config.layout.token_key(user_id, &digest),
                value: record.encode(),
                ttl_seconds: config.layout.key_ttl(ttl),
                condition: SetCondition::Always,
            }),
            Command::HashSet(HashSetArgs {
                key: index.clone(),
                fields,
            }),
            // NX sets the expiry of a new index, GT only ever lengthens it:
            // the index, and its epoch, outlive every token listed in it.
            expire(index.clone(), index_ttl, ExpireCondition::IfNone),
            expire(index.clone(), index_ttl, ExpireCondition::IfLater),
        ]);
        if transaction.commit(&commands)?.is_some() {
            return Ok(IssuedToken {
                token,
                token_expire_time: deadline,
            });
        }
    }
    Err(Error::Conflict(format!(
        "login of user {user_id:?} lost {MAX_LOGIN_ATTEMPTS} races in a row"
    )))
}

/// A token's record when it is live: its key exists, its epoch is the
/// user's, its deadline is ahead.
fn live_record(
    value: Option<String>,
    epoch: Option<String>,
    now: i64,
) -> Result<Option<Record>, Error> {
    let Some(value) = value else {
        return Ok(None);
    };
    let record = Record::decode(&value)
        .ok_or_else(|| Error::Corrupt(format!("token key holds {value:?}")))?;
    let current = epoch.is_some_and(|epoch| epoch == record.epoch);
    Ok((current && record.deadline > now).then_some(record))
}

/// check-token, with the user's detail when `user_ttl` is given.
fn check_token(config: &Config, token: &str, user_ttl: Option<i64>) -> Result<Option<User>, Error> {
    let Some((user_id, digest)) = split_token(token)? else {
        return Ok(None);
    };
    let token_key = config.layout.token_key(user_id, &digest);
    let index = config.layout.index_key(user_id);
    // The read slides the idle expiry in the same round trip; a token
    // whose deadline is nearer than the idle timeout keeps its key a little
    // past it, but is refused by the deadline check below.
    let read = match config.layout.idle_timeout {
        Some(idle) => Command::GetExpire(GetExpireArgs {
            key: token_key.clone(),
            seconds: idle,
        }),
        None => Command::Get(token_key.clone()),
    };
    let mut reads = vec![
        read,
        Command::HashGet(HashGetArgs {
            key: index.clone(),
            field: EPOCH_FIELD.to_owned(),
        }),
    ];
    if user_ttl.is_some() {
        reads.push(Command::Get(config.layout.user_key(user_id)));
    }
    let mut replies = store::batch(&reads)?.into_iter();
    let (Some(value), Some(epoch)) = (replies.next(), replies.next()) else {
        return Err(Error::Corrupt("store returned too few replies".into()));
    };
    let value = reply_text("GETEX token", value)?;
    let had_key = value.is_some();
    let now = now();
    let Some(record) = live_record(value, reply_text("HGET epoch", epoch)?, now)? else {
        if had_key {
            // Revoked by an epoch change or past its deadline: forget it
            // now rather than let checks keep its key alive.
            store::atomic(&forget(config, user_id, vec![digest]))?;
        }
        return Ok(None);
    };
    let remaining = config.layout.key_ttl(record.deadline - now);

    let detail = match user_ttl {
        None => None,
        Some(user_ttl) => {
            let cached = replies.next().map(|reply| reply_text("GET user", reply));
            match cached.transpose()?.flatten() {
                Some(json) => layout::user_info_detail(&json).map_err(Error::Corrupt)?,
                None if config.user_loader => {
                    let detail = load_detail(config, user_id)?;
                    store::batch(&[cache_user(config, user_id, detail.as_ref(), user_ttl)])?;
                    detail.map(|detail| detail.to_string())
                }
                None => None,
            }
        }
    };
    Ok(Some(User {
        id: user_id.to_owned(),
        token: token.to_owned(),
        token_remain_live_time: remaining,
        token_expire_time: now + remaining,
        detail,
    }))
}

/// Extends a live token's key to `ttl` seconds from now, never past its
/// deadline.
fn refresh_token(config: &Config, token: &str, ttl: i64) -> Result<i64, Error> {
    let Some((user_id, digest)) = split_token(token)? else {
        return Err(Error::NotFound);
    };
    let token_key = config.layout.token_key(user_id, &digest);
    let replies = store::batch(&[
        Command::Get(token_key.clone()),
        Command::HashGet(HashGetArgs {
            key: config.layout.index_key(user_id),
            field: EPOCH_FIELD.to_owned(),
        }),
    ])?;
    let mut replies = replies.into_iter();
    let (Some(value), Some(epoch)) = (replies.next(), replies.next()) else {
        return Err(Error::Corrupt("store returned too few replies".into()));
    };
    let now = now();
    let Some(record) = live_record(
        reply_text("GET token", value)?,
        reply_text("HGET epoch", epoch)?,
        now,
    )?
    else {
        return Err(Error::NotFound);
    };
    let seconds = ttl.min(record.deadline - now).max(1);
    // EXPIRE never creates a key: a token revoked meanwhile stays dead.
    let extended = store::batch(&[expire(token_key, seconds, ExpireCondition::Always)])?;
    if reply_integer("EXPIRE token", &reply_at(extended, 0)?)? == 1 {
        Ok(now + seconds)
    } else {
        Err(Error::NotFound)
    }
}

fn delete_token(config: &Config, token: &str) -> Result<(), Error> {
    let Some((user_id, digest)) = split_token(token)? else {
        return Ok(());
    };
    store::atomic(&forget(config, user_id, vec![digest]))?;
    Ok(())
}

fn list_user_token(config: &Config, user_id: &str) -> Result<Vec<TokenEntry>, Error> {
    let index = config.layout.index_key(user_id);
    let read = Index::read(reply_pairs(
        "HGETALL index",
        reply_at(store::batch(&[Command::HashGetAll(index)])?, 0)?,
    )?)?;
    if read.sessions.is_empty() {
        return Ok(Vec::new());
    }
    let ttls: Vec<Command> = read
        .sessions
        .iter()
        .map(|session| Command::Ttl(config.layout.token_key(user_id, &session.digest)))
        .collect();
    let replies = store::batch(&ttls)?;
    let now = now();
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for (session, ttl) in read.sessions.iter().zip(&replies) {
        let ttl = reply_integer("TTL token", ttl)?;
        if ttl >= 0 && read.current(session, now) {
            let remaining = ttl.min(session.record.deadline - now);
            live.push(TokenEntry {
                // The store holds no token to list: this names the session
                // by the digest of its secret, which no check accepts.
                token: format!("sha256:{}", session.digest),
                token_remain_live_time: remaining,
                token_expire_time: now + remaining,
                created_at: Some(session.record.created_ns / 1_000_000_000),
            });
        } else {
            dead.push(session.digest.clone());
        }
    }
    if !dead.is_empty() {
        store::atomic(&forget(config, user_id, dead))?;
    }
    Ok(live)
}

/// Revokes every token of the user with one write: a new epoch. The index
/// exists while any token does (it outlives them all), so when this
/// creates it there was nothing to revoke and it only needs an expiry.
fn delete_user_token(config: &Config, user_id: &str) -> Result<(), Error> {
    let index = config.layout.index_key(user_id);
    let replies = store::batch(&[Command::HashSet(HashSetArgs {
        key: index.clone(),
        fields: vec![(EPOCH_FIELD.to_owned(), random_hex(16))],
    })])?;
    if reply_integer("HSET epoch", &reply_at(replies, 0)?)? == 1 {
        store::batch(&[expire(index, config.index_ttl, ExpireCondition::IfNone)])?;
    }
    Ok(())
}

fn require_loader(config: &Config) -> Result<(), Error> {
    if config.user_loader {
        return Ok(());
    }
    Err(Error::InvalidArgument(
        "no user loader is configured: add-user and refresh-user load the detail from it, \
         and without one they would overwrite the cached detail; nothing was written"
            .into(),
    ))
}

fn load_detail(config: &Config, user_id: &str) -> Result<Option<serde_json::Value>, Error> {
    if !config.user_loader {
        return Ok(None);
    }
    let Some(text) = user_loader::load(user_id).map_err(Error::Loader)? else {
        return Ok(None);
    };
    let detail: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Loader(format!("detail of user {user_id:?} is not JSON: {e}")))?;
    Ok(Some(detail).filter(|detail| !detail.is_null()))
}

fn cache_user(
    config: &Config,
    user_id: &str,
    detail: Option<&serde_json::Value>,
    ttl: i64,
) -> Command {
    Command::Set(SetArgs {
        key: config.layout.user_key(user_id),
        value: layout::user_info_json(user_id, detail),
        ttl_seconds: ttl,
        condition: SetCondition::Always,
    })
}

fn add_users(config: &Config, user_ids: &[String], ttl: i64) -> Result<Vec<UserInfo>, Error> {
    require_loader(config)?;
    let mut users = Vec::with_capacity(user_ids.len());
    let mut writes = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        let detail = load_detail(config, user_id)?;
        writes.push(cache_user(config, user_id, detail.as_ref(), ttl));
        users.push(UserInfo {
            id: user_id.clone(),
            detail: detail.map(|detail| detail.to_string()),
        });
    }
    if !writes.is_empty() {
        store::batch(&writes)?;
    }
    Ok(users)
}

impl describe::Guest for Policy {
    fn config_keys() -> Vec<ConfigKey> {
        layout::CONFIG_KEYS
            .iter()
            .map(|(name, default, description)| ConfigKey {
                name: (*name).to_owned(),
                default: Some((*default).to_owned()),
                description: (*description).to_owned(),
            })
            .collect()
    }
}

impl Guest for Policy {
    fn set_token(
        settings: Settings,
        user_id: String,
        ttl_seconds: i64,
    ) -> Result<IssuedToken, Error> {
        let config = Config::new(&settings)?;
        check_user_id(&user_id)?;
        let ttl = config.ttl(ttl_seconds)?;
        set_token(&config, &user_id, ttl)
    }

    fn refresh_token(settings: Settings, token: String, ttl_seconds: i64) -> Result<i64, Error> {
        let config = Config::new(&settings)?;
        let ttl = config.ttl(ttl_seconds)?;
        refresh_token(&config, &token, ttl)
    }

    fn delete_token(settings: Settings, token: String) -> Result<(), Error> {
        delete_token(&Config::new(&settings)?, &token)
    }

    fn check_token(settings: Settings, token: String) -> Result<Option<User>, Error> {
        check_token(&Config::new(&settings)?, &token, None)
    }

    fn check_token_or_update_user(
        settings: Settings,
        token: String,
        user_ttl_seconds: i64,
    ) -> Result<Option<User>, Error> {
        let config = Config::new(&settings)?;
        let user_ttl = config.ttl(user_ttl_seconds)?;
        check_token(&config, &token, Some(user_ttl))
    }

    fn list_user_token(settings: Settings, user_id: String) -> Result<Vec<TokenEntry>, Error> {
        let config = Config::new(&settings)?;
        check_user_id(&user_id)?;
        list_user_token(&config, &user_id)
    }

    fn delete_user_token(settings: Settings, user_id: String) -> Result<(), Error> {
        let config = Config::new(&settings)?;
        check_user_id(&user_id)?;
        delete_user_token(&config, &user_id)
    }

    fn refresh_user(
        settings: Settings,
        user_ids: Vec<String>,
        user_ttl_seconds: i64,
    ) -> Result<(), Error> {
        let config = Config::new(&settings)?;
        user_ids
            .iter()
            .try_for_each(|user_id| check_user_id(user_id))?;
        let ttl = config.ttl(user_ttl_seconds)?;
        add_users(&config, &user_ids, ttl).map(drop)
    }

    fn delete_user(settings: Settings, user_id: String) -> Result<(), Error> {
        let config = Config::new(&settings)?;
        check_user_id(&user_id)?;
        store::batch(&[Command::Del(vec![config.layout.user_key(&user_id)])])?;
        Ok(())
    }

    fn add_user(
        settings: Settings,
        user_id: String,
        user_ttl_seconds: i64,
    ) -> Result<UserInfo, Error> {
        let config = Config::new(&settings)?;
        check_user_id(&user_id)?;
        let ttl = config.ttl(user_ttl_seconds)?;
        let mut users = add_users(&config, std::slice::from_ref(&user_id), ttl)?;
        users
            .pop()
            .ok_or_else(|| Error::Corrupt("no user was cached".into()))
    }
}
