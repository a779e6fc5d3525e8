//! The host's store, one network round trip per function, with the
//! replies as [`Replies`].

use crate::bindings::dsession::session::store as raw;
use crate::{Command, Error, Replies, Reply, Transaction, cmd};

/// Runs `commands` in order as one pipeline. Not atomic.
pub fn batch(commands: &[Command]) -> Result<Replies, Error> {
    raw::batch(commands).map(Replies::from)
}

/// Runs `commands` atomically (`MULTI`/`EXEC`).
pub fn atomic(commands: &[Command]) -> Result<Replies, Error> {
    raw::atomic(commands).map(Replies::from)
}

/// Runs one command and returns its reply.
pub fn one(command: Command) -> Result<Reply, Error> {
    batch(&[command])?.at(0)
}

/// Watches `keys` (`WATCH`) and runs `reads`: the transaction to commit,
/// and the replies to `reads`. Most policies want [`optimistic`] instead.
pub fn watch(keys: &[String], reads: &[Command]) -> Result<(Transaction, Replies), Error> {
    raw::watch(keys, reads).map(|(transaction, replies)| (transaction, replies.into()))
}

/// A read-modify-write that retries while it loses races: watches `keys`,
/// runs `reads`, and lets `write` turn their replies into the commands to
/// commit atomically and the value to return once they are. When a watched
/// key changed before the commit, it reads again, at most `attempts` times
/// in all; Ok(None) when every attempt lost (each lost race means another
/// writer won, so the caller answers `conflict`). Each attempt costs two
/// round trips, plus whatever `write` sends itself.
pub fn optimistic<T>(
    keys: &[String],
    reads: &[Command],
    attempts: u32,
    mut write: impl FnMut(Replies) -> Result<(Vec<Command>, T), Error>,
) -> Result<Option<T>, Error> {
    for _ in 0..attempts {
        let (transaction, replies) = watch(keys, reads)?;
        let (commands, value) = write(replies)?;
        if transaction.commit(&commands)?.is_some() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Whether each of `keys` exists: one `EXISTS` a key, in one round trip,
/// or none when there are no keys.
pub fn existing(keys: impl IntoIterator<Item = String>) -> Result<Vec<bool>, Error> {
    let exists: Vec<Command> = keys.into_iter().map(|key| cmd::exists([key])).collect();
    if exists.is_empty() {
        return Ok(Vec::new());
    }
    batch(&exists)?
        .map(|reply| Ok(reply.integer("EXISTS token")? == 1))
        .collect()
}

/// The `TTL` of each of `keys` (seconds left, -1 without expiry, -2 when
/// missing; see [`crate::time::lifetime`]), in one round trip, or none
/// when there are no keys.
pub fn ttls(keys: impl IntoIterator<Item = String>) -> Result<Vec<i64>, Error> {
    let ttls: Vec<Command> = keys.into_iter().map(cmd::ttl).collect();
    if ttls.is_empty() {
        return Ok(Vec::new());
    }
    batch(&ttls)?
        .map(|reply| reply.integer("TTL token"))
        .collect()
}
