//! The default dsession policy: gosession's Redis layout, byte for byte,
//! with gosession's races fixed.
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `{token_prefix}_{token}` | `{user_prefix}_{user_id}` | the token's |
//! | `{token_prefix}_{user_id}` (hash) | token → expiry, unix seconds | ≥ index TTL, ≥ its longest token |
//! | `{user_prefix}_{user_id}` | `{"id":…,"detail":…}` | the user-info TTL |

pub mod layout;

wit_bindgen::generate!({
    world: "policy",
    path: "../wit",
    generate_all,
});

use dsession::session::store::{
    self, Command, ExpireArgs, ExpireCondition, HashDeleteArgs, HashExistsArgs, HashSetArgs, Reply,
    SetArgs, SetCondition,
};
use dsession::session::types::{Error, IssuedToken, Settings, TokenEntry, User, UserInfo};
use dsession::session::user_loader;
use exports::dsession::session::token_manage::Guest;
use layout::Layout;

/// How often single mode re-reads the index after losing a race before it
/// gives up with `conflict`; each lost race means another call won.
const MAX_SINGLE_MODE_ATTEMPTS: u32 = 256;

struct Policy;

export!(Policy);

/// Settings checked and turned into a layout, plus the flags the layout
/// does not need.
struct Config {
    layout: Layout,
    single_mode: bool,
    user_loader: bool,
}

impl Config {
    fn new(settings: &Settings) -> Result<Self, Error> {
        let layout = Layout::new(
            &settings.token_key_prefix,
            &settings.user_key_prefix,
            settings.default_expire_seconds,
            settings.index_expire_seconds,
        )
        .map_err(Error::InvalidArgument)?;
        Ok(Self {
            layout,
            single_mode: settings.single_mode,
            user_loader: settings.user_loader,
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        self.layout.ttl(requested).map_err(Error::InvalidArgument)
    }

    /// Writes that extend the index of `user_id` to cover a token of `ttl`.
    fn index_expiry(&self, user_id: &str, ttl: i64) -> [Command; 2] {
        let index = self.layout.index_key(user_id);
        let seconds = self.layout.index_ttl_for(ttl);
        // NX sets the expiry of a new index, GT only ever lengthens it.
        [ExpireCondition::IfNone, ExpireCondition::IfLater].map(|condition| {
            Command::Expire(ExpireArgs {
                key: index.clone(),
                seconds,
                condition,
            })
        })
    }
}

fn check_user_id(user_id: &str) -> Result<(), Error> {
    layout::check_user_id(user_id).map_err(Error::InvalidArgument)
}

/// The user of a token; None when it is malformed. An empty or oversized
/// token is an invalid argument rather than a token that is merely not valid.
fn token_user(token: &str) -> Result<Option<&str>, Error> {
    layout::token_user(token).map_err(Error::InvalidArgument)
}

/// Whether the user's index still lists `token`. A token whose entry is
/// gone (gosession shortens the index TTL, or another writer removed it) is
/// not valid: delete-user-token could no longer reach it.
fn index_entry(config: &Config, user_id: &str, token: &str) -> Command {
    Command::HashExists(HashExistsArgs {
        key: config.layout.index_key(user_id),
        field: token.to_owned(),
    })
}

/// Refuses to write the user-info cache when there is nothing to fill it
/// from: gosession's AddUser errors without a loader too, and writing `null`
/// would wipe detail that other services cached.
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

fn now() -> i64 {
    let seconds = wasi::clocks::wall_clock::now().seconds;
    i64::try_from(seconds).unwrap_or(i64::MAX)
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

/// The reply to the command at `index` of a call.
fn reply_at(replies: Vec<Reply>, index: usize) -> Result<Reply, Error> {
    replies
        .into_iter()
        .nth(index)
        .ok_or_else(|| Error::Corrupt(format!("store returned no reply #{index}")))
}

/// `(remaining seconds, expiry as unix seconds)` from a `TTL` reply; None
/// when the key is gone.
fn lifetime(ttl: i64, now: i64) -> Option<(i64, i64)> {
    match ttl {
        -1 => Some((-1, -1)),
        ttl if ttl >= 0 => Some((ttl, now + ttl)),
        _ => None,
    }
}

fn hash_delete(key: String, fields: Vec<String>) -> Command {
    Command::HashDelete(HashDeleteArgs { key, fields })
}

/// Removes index entries whose token key is gone. A dead token never comes
/// back, so removing its entry cannot hide a live token from
/// `delete-user-token`.
fn prune_index(config: &Config, user_id: &str, candidates: Vec<String>) -> Result<(), Error> {
    if candidates.is_empty() {
        return Ok(());
    }
    let exists: Vec<Command> = candidates
        .iter()
        .map(|token| Command::Exists(vec![config.layout.token_key(token)]))
        .collect();
    let replies = store::batch(&exists)?;
    let mut dead = Vec::new();
    for (token, reply) in candidates.into_iter().zip(&replies) {
        if reply_integer("EXISTS token", reply)? == 0 {
            dead.push(token);
        }
    }
    if !dead.is_empty() {
        store::batch(&[hash_delete(config.layout.index_key(user_id), dead)])?;
    }
    Ok(())
}

/// Loads a user's detail: none without a loader, else the loader's JSON.
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

/// The command that caches a user's info for `ttl` seconds.
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

fn set_token(config: &Config, user_id: &str, ttl: i64) -> Result<IssuedToken, Error> {
    let mut random = [0u8; 16];
    random.copy_from_slice(&wasi::random::random::get_random_bytes(16));
    let token = layout::new_token(user_id, &random);
    let expires = now() + ttl;
    let index = config.layout.index_key(user_id);
    let [expire_new, expire_later] = config.index_expiry(user_id, ttl);
    let writes = vec![
        Command::Set(SetArgs {
            key: config.layout.token_key(&token),
            value: config.layout.user_key(user_id),
            ttl_seconds: ttl,
            condition: SetCondition::Always,
        }),
        Command::HashSet(HashSetArgs {
            key: index.clone(),
            fields: vec![(token.clone(), expires.to_string())],
        }),
        expire_new,
        expire_later,
    ];
    let issued = IssuedToken {
        token,
        token_expire_time: expires,
    };

    if !config.single_mode {
        let mut commands = writes;
        let read_index = commands.len();
        commands.push(Command::HashGetAll(index));
        let replies = store::atomic(&commands)?;
        let entries = reply_pairs("HGETALL index", reply_at(replies, read_index)?)?;
        // Entries past their recorded expiry are probably dead: confirm and
        // prune them, so that the index stays as small as the live tokens.
        let now = now();
        let stale = entries
            .into_iter()
            .filter(|(_, expiry)| expiry.parse::<i64>().is_ok_and(|expiry| expiry <= now))
            .map(|(token, _)| token)
            .collect();
        prune_index(config, user_id, stale)?;
        return Ok(issued);
    }

    // Single mode: replace every indexed token atomically, or lose the race
    // to a concurrent writer of the index and try again.
    for _ in 0..MAX_SINGLE_MODE_ATTEMPTS {
        let (transaction, replies) = store::watch(
            std::slice::from_ref(&index),
            &[Command::HashGetAll(index.clone())],
        )?;
        let old: Vec<String> = reply_pairs("HGETALL index", reply_at(replies, 0)?)?
            .into_iter()
            .map(|(token, _)| token)
            .collect();
        let mut commands = Vec::with_capacity(writes.len() + 2);
        if !old.is_empty() {
            commands.push(Command::Del(
                old.iter()
                    .map(|token| config.layout.token_key(token))
                    .collect(),
            ));
            commands.push(hash_delete(index.clone(), old));
        }
        commands.extend(writes.iter().cloned());
        if transaction.commit(&commands)?.is_some() {
            return Ok(issued);
        }
    }
    Err(Error::Conflict(format!(
        "single-mode login of user {user_id:?} lost {MAX_SINGLE_MODE_ATTEMPTS} races in a row"
    )))
}

fn refresh_token(config: &Config, token: &str, ttl: i64) -> Result<i64, Error> {
    let Some(user_id) = token_user(token)? else {
        return Err(Error::NotFound);
    };
    // A second round trip, as MULTI cannot make EXPIRE depend on HEXISTS;
    // an entry removed in between by delete-user-token takes the token key
    // with it, so EXPIRE then finds nothing to extend.
    let listed = store::batch(&[index_entry(config, user_id, token)])?;
    if reply_integer("HEXISTS index", &reply_at(listed, 0)?)? == 0 {
        return Err(Error::NotFound);
    }
    let expires = now() + ttl;
    let index = config.layout.index_key(user_id);
    let [expire_new, expire_later] = config.index_expiry(user_id, ttl);
    // EXPIRE never creates a key: a dead token stays dead, whatever races it.
    let replies = store::atomic(&[
        Command::Expire(ExpireArgs {
            key: config.layout.token_key(token),
            seconds: ttl,
            condition: ExpireCondition::Always,
        }),
        Command::HashSet(HashSetArgs {
            key: index.clone(),
            fields: vec![(token.to_owned(), expires.to_string())],
        }),
        expire_new,
        expire_later,
    ])?;
    if reply_integer("EXPIRE token", &reply_at(replies, 0)?)? == 1 {
        return Ok(expires);
    }
    store::batch(&[hash_delete(index, vec![token.to_owned()])])?;
    Err(Error::NotFound)
}

fn delete_token(config: &Config, token: &str) -> Result<(), Error> {
    let Some(user_id) = token_user(token)? else {
        return Ok(());
    };
    store::atomic(&[
        Command::Del(vec![config.layout.token_key(token)]),
        hash_delete(config.layout.index_key(user_id), vec![token.to_owned()]),
    ])?;
    Ok(())
}

/// check-token, with the user's detail when `user_ttl` is given.
fn check_token(config: &Config, token: &str, user_ttl: Option<i64>) -> Result<Option<User>, Error> {
    let Some(user_id) = token_user(token)? else {
        return Ok(None);
    };
    let token_key = config.layout.token_key(token);
    let user_key = config.layout.user_key(user_id);
    let mut reads = vec![
        Command::Get(token_key.clone()),
        Command::Ttl(token_key),
        index_entry(config, user_id, token),
    ];
    if user_ttl.is_some() {
        reads.push(Command::Get(user_key.clone()));
    }
    let mut replies = store::batch(&reads)?.into_iter();
    let (Some(value), Some(ttl), Some(listed)) = (replies.next(), replies.next(), replies.next())
    else {
        return Err(Error::Corrupt("store returned too few replies".into()));
    };
    let now = now();
    let value = reply_text("GET token", value)?;
    let alive = lifetime(reply_integer("TTL token", &ttl)?, now);
    let (Some(value), Some((remaining, expires))) = (value, alive) else {
        store::batch(&[hash_delete(
            config.layout.index_key(user_id),
            vec![token.to_owned()],
        )])?;
        return Ok(None);
    };
    if value != user_key {
        return Err(Error::Corrupt(format!(
            "token key names user key {value:?}, expected {user_key:?}"
        )));
    }
    if reply_integer("HEXISTS index", &listed)? == 0 {
        return Ok(None);
    }

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
        token_expire_time: expires,
        detail,
    }))
}

fn list_user_token(config: &Config, user_id: &str) -> Result<Vec<TokenEntry>, Error> {
    let index = config.layout.index_key(user_id);
    let entries = reply_pairs(
        "HGETALL index",
        reply_at(store::batch(&[Command::HashGetAll(index.clone())])?, 0)?,
    )?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let ttls: Vec<Command> = entries
        .iter()
        .map(|(token, _)| Command::Ttl(config.layout.token_key(token)))
        .collect();
    let replies = store::batch(&ttls)?;
    let now = now();
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for ((token, _), reply) in entries.into_iter().zip(&replies) {
        match lifetime(reply_integer("TTL token", reply)?, now) {
            Some((remaining, expires)) => live.push(TokenEntry {
                token,
                token_remain_live_time: remaining,
                token_expire_time: expires,
                created_at: None,
            }),
            None => dead.push(token),
        }
    }
    if !dead.is_empty() {
        store::batch(&[hash_delete(index, dead)])?;
    }
    live.sort_by(|a, b| a.token.cmp(&b.token));
    Ok(live)
}

fn delete_user_token(config: &Config, user_id: &str) -> Result<(), Error> {
    let index = config.layout.index_key(user_id);
    let tokens: Vec<String> = reply_pairs(
        "HGETALL index",
        reply_at(store::batch(&[Command::HashGetAll(index.clone())])?, 0)?,
    )?
    .into_iter()
    .map(|(token, _)| token)
    .collect();
    if tokens.is_empty() {
        return Ok(());
    }
    // Only the entries read are removed: a token issued meanwhile keeps its
    // entry, so a later delete-user-token still finds it.
    store::atomic(&[
        Command::Del(
            tokens
                .iter()
                .map(|token| config.layout.token_key(token))
                .collect(),
        ),
        hash_delete(index, tokens),
    ])?;
    Ok(())
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
