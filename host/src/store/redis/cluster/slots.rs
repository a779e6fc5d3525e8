//! Slots: which slot a key is in, which keys a step may combine, and which
//! master serves each slot, as `CLUSTER SLOTS` and each `MOVED` tell.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::{ErrorKind, RedisError, Value};

use crate::store::redis::codec::{split_keys, text};
use crate::store::redis::net::address;
use crate::store::{Command, StoreError};

/// Slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The slot Redis Cluster keeps `key` in: CRC16 of the key, or of its hash
/// tag (the part between the first `{` and the next `}`, when not empty).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// The one slot of `keys`, or an error naming each key's slot.
pub(super) fn one_slot<'k, K>(what: &str, keys: K) -> Result<u16, StoreError>
where
    K: IntoIterator<Item = &'k str>,
    K::IntoIter: Clone,
{
    let keys = keys.into_iter();
    let Some(first) = keys.clone().next() else {
        return Err(StoreError::new(format!("{what} names no key")));
    };
    let slot = key_slot(first);
    if keys.clone().all(|key| key_slot(key) == slot) {
        return Ok(slot);
    }
    // Only a refusal needs each key's slot, to name them.
    let slots = keys.into_iter().map(|key| (key, key_slot(key))).collect();
    Err(cross_slot(what, &slots))
}

fn cross_slot(what: &str, slots: &BTreeMap<&str, u16>) -> StoreError {
    let named = slots
        .iter()
        .map(|(key, slot)| format!("{key:?} in slot {slot}"))
        .collect::<Vec<_>>()
        .join(", ");
    StoreError::new(format!(
        "a redis cluster cannot run {what} over keys in different slots ({named}); \
         nothing was sent. A policy for Redis Cluster puts one hash tag per user in \
         every key, as the built-in `hardened` policy does"
    ))
}

/// Splits a command into one per slot of its keys (only `DEL` and `EXISTS`
/// name several keys; their replies add up).
pub(super) fn per_slot(command: Command) -> Vec<(u16, Command)> {
    split_keys(command, key_slot)
}

/// One line of `CLUSTER SLOTS`: a range of slots and its master.
pub(super) struct SlotRange {
    pub(super) start: u16,
    pub(super) end: u16,
    /// `host:port`.
    pub(super) master: String,
    pub(super) replicas: usize,
}

impl SlotRange {
    /// The ranges of a `CLUSTER SLOTS` reply.
    pub(super) fn parse(value: Value) -> Result<Vec<Self>, RedisError> {
        Self::ranges(value).ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected reply to CLUSTER SLOTS",
            ))
        })
    }

    fn ranges(value: Value) -> Option<Vec<Self>> {
        let Value::Array(ranges) = value else {
            return None;
        };
        let number = |value: &Value| match value {
            Value::Int(n) => u16::try_from(*n).ok(),
            _ => None,
        };
        ranges
            .into_iter()
            .map(|range| {
                let Value::Array(fields) = range else {
                    return None;
                };
                let (start, end) = (number(fields.first()?)?, number(fields.get(1)?)?);
                let Value::Array(node) = fields.get(2)? else {
                    return None;
                };
                let host = text(node.first()?.clone()).ok()?;
                let port = number(node.get(1)?)?;
                Some(Self {
                    start,
                    end,
                    master: address(&host, port),
                    replicas: fields.len().saturating_sub(3),
                })
            })
            .collect()
    }
}

/// The master of each slot as last seen, `host:port`; None until known.
pub(super) struct Masters {
    by_slot: Mutex<Vec<Option<Arc<str>>>>,
    /// One `CLUSTER SLOTS` at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Masters {
    /// No master known yet.
    pub(super) fn new() -> Self {
        Self {
            by_slot: Mutex::new(vec![None; SLOTS]),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn by_slot(&self) -> MutexGuard<'_, Vec<Option<Arc<str>>>> {
        self.by_slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self, slot: u16) -> Option<Arc<str>> {
        self.by_slot()[usize::from(slot)].clone()
    }

    /// The master of `slot` as known, or after asking `slots` (the ranges
    /// of `CLUSTER SLOTS`) if unknown; one caller asks while the others wait.
    pub(super) async fn get(
        &self,
        slot: u16,
        slots: impl AsyncFnOnce() -> Result<Vec<SlotRange>, RedisError>,
    ) -> Result<Arc<str>, RedisError> {
        if let Some(address) = self.known(slot) {
            return Ok(address);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(address) = self.known(slot) {
            return Ok(address);
        }
        self.set(slots().await?);
        self.known(slot).ok_or_else(|| {
            RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no master serves the slot",
                slot.to_string(),
            ))
        })
    }

    /// Takes the master of every slot from `ranges`, forgetting the rest.
    pub(super) fn set(&self, ranges: Vec<SlotRange>) {
        let mut masters = self.by_slot();
        masters.iter_mut().for_each(|master| *master = None);
        for range in ranges {
            let address: Arc<str> = range.master.into();
            for slot in range.start..=range.end {
                masters[usize::from(slot)] = Some(Arc::clone(&address));
            }
        }
    }

    /// Records that `address` serves `slot` (from a `MOVED`).
    pub(super) fn learn(&self, slot: u16, address: &str) {
        self.by_slot()[usize::from(slot)] = Some(address.into());
    }

    /// Forgets the master of `slot`, so that the next call asks the cluster.
    pub(super) fn forget(&self, slot: u16) {
        self.by_slot()[usize::from(slot)] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // Examples from the Redis Cluster specification and redis-cli.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }

    #[test]
    fn a_step_over_two_slots_names_each_keys_slot() {
        let error = one_slot("an atomic step", ["a", "b"]).unwrap_err();
        let message = error.message();
        assert!(message.contains("\"a\" in slot 15495"), "{message}");
        assert!(message.contains("\"b\" in slot 3300"), "{message}");
        assert!(message.contains("hardened"), "{message}");
        assert_eq!(one_slot("x", ["{u}a", "{u}b"]).unwrap(), key_slot("u"));
    }

    #[test]
    fn a_step_without_keys_has_no_slot() {
        let error = one_slot("a transaction", []).unwrap_err();
        assert_eq!(error.message(), "a transaction names no key");
    }

    #[test]
    fn del_over_two_slots_becomes_one_del_per_slot() {
        let keys = vec!["a".to_owned(), "{u}x".to_owned(), "{u}y".to_owned()];
        let parts = per_slot(Command::Del(keys));
        assert_eq!(
            parts,
            [
                (
                    key_slot("u"),
                    Command::Del(vec!["{u}x".into(), "{u}y".into()])
                ),
                (key_slot("a"), Command::Del(vec!["a".into()])),
            ]
        );
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"node-id".to_vec()),
        ])
    }

    #[test]
    fn cluster_slots_give_each_range_its_master_and_replica_count() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node("::1", 7001)]),
        ]);
        let ranges = SlotRange::parse(reply).unwrap();
        let summary: Vec<_> = ranges
            .iter()
            .map(|range| {
                (
                    range.start,
                    range.end,
                    range.master.as_str(),
                    range.replicas,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, 8191, "10.0.0.1:7000", 1),
                (8192, 16383, "[::1]:7001", 0)
            ]
        );
        assert!(SlotRange::parse(Value::Array(vec![Value::Int(0)])).is_err());
        assert!(SlotRange::parse(Value::Nil).is_err());
    }

    #[test]
    fn the_master_map_follows_cluster_slots_and_moved() {
        let masters = Masters::new();
        let ranges = vec![SlotRange {
            start: 0,
            end: 99,
            master: "10.0.0.1:7000".into(),
            replicas: 0,
        }];
        masters.set(ranges);
        assert_eq!(masters.known(99).as_deref(), Some("10.0.0.1:7000"));
        assert_eq!(masters.known(100), None);
        masters.learn(5, "10.0.0.2:7001");
        assert_eq!(masters.known(5).as_deref(), Some("10.0.0.2:7001"));
        masters.forget(5);
        assert_eq!(masters.known(5), None);
        masters.set(Vec::new());
        assert_eq!(masters.known(0), None);
    }
}
