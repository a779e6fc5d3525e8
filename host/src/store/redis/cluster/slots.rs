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
    /// The masters that lost a slot to the answer are handed to `lost`.
    pub(super) async fn get(
        &self,
        slot: u16,
        slots: impl AsyncFnOnce() -> Result<Vec<SlotRange>, RedisError>,
        lost: impl FnOnce(Vec<Arc<str>>),
    ) -> Result<Arc<str>, RedisError> {
        if let Some(address) = self.known(slot) {
            return Ok(address);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(address) = self.known(slot) {
            return Ok(address);
        }
        lost(self.set(slots().await?));
        self.known(slot).ok_or_else(|| {
            RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no master serves the slot",
                slot.to_string(),
            ))
        })
    }

    /// Takes the master of every slot from `ranges`, forgetting the rest;
    /// the masters that were known for a slot and are not its master now,
    /// each once.
    pub(super) fn set(&self, ranges: Vec<SlotRange>) -> Vec<Arc<str>> {
        let mut fresh: Vec<Option<Arc<str>>> = vec![None; SLOTS];
        for range in ranges {
            let address: Arc<str> = range.master.into();
            for slot in range.start..=range.end {
                fresh[usize::from(slot)] = Some(Arc::clone(&address));
            }
        }
        let old = std::mem::replace(&mut *self.by_slot(), fresh.clone());
        let mut lost: Vec<Arc<str>> = Vec::new();
        for (old, fresh) in old.into_iter().zip(fresh) {
            if let Some(old) = old
                && fresh.as_ref() != Some(&old)
                && !lost.contains(&old)
            {
                lost.push(old);
            }
        }
        lost
    }

    /// Records that `address` serves `slot` (from a `MOVED`); the master
    /// known before, if it was another.
    pub(super) fn learn(&self, slot: u16, address: &str) -> Option<Arc<str>> {
        let old = self.by_slot()[usize::from(slot)].replace(address.into());
        old.filter(|old| &**old != address)
    }

    /// Whether `address` is known as the master of some slot.
    pub(super) fn names(&self, address: &str) -> bool {
        self.by_slot()
            .iter()
            .any(|master| master.as_deref() == Some(address))
    }

    /// Forgets the master of `slot`, so that the next call asks the cluster;
    /// the master known before, if any.
    pub(super) fn forget(&self, slot: u16) -> Option<Arc<str>> {
        self.by_slot()[usize::from(slot)].take()
    }
}

/// A set of slots.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SlotSet {
    bits: Box<[u64; SLOTS / 64]>,
}

impl SlotSet {
    /// No slot.
    pub(super) fn empty() -> Self {
        Self {
            bits: Box::new([0; SLOTS / 64]),
        }
    }

    pub(super) fn contains(&self, slot: u16) -> bool {
        let slot = usize::from(slot);
        slot < SLOTS && self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn insert(&mut self, slot: u16) {
        let slot = usize::from(slot);
        if slot < SLOTS {
            self.bits[slot / 64] |= 1 << (slot % 64);
        }
    }

    pub(super) fn remove(&mut self, slot: u16) {
        let slot = usize::from(slot);
        if slot < SLOTS {
            self.bits[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// Whether every slot of `self` is in `other`.
    pub(super) fn is_subset(&self, other: &Self) -> bool {
        self.bits
            .iter()
            .zip(other.bits.iter())
            .all(|(mine, theirs)| mine & !theirs == 0)
    }

    /// The slots a node serves by its own word, from its `CLUSTER NODES`
    /// reply: those of its `myself` line, none if that line says it is no
    /// master, and none that it is migrating away (`[slot->-id]`), whose
    /// missing keys it sends on with `ASK`.
    pub(super) fn served_by_myself(nodes: &str) -> Result<Self, RedisError> {
        let unexpected = || {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected reply to CLUSTER NODES",
                nodes.lines().next().unwrap_or_default().to_owned(),
            ))
        };
        let myself = nodes
            .lines()
            .map(|line| line.split_ascii_whitespace().collect::<Vec<_>>())
            .find(|fields| {
                fields
                    .get(2)
                    .is_some_and(|flags| flags.split(',').any(|flag| flag == "myself"))
            })
            .ok_or_else(unexpected)?;
        let mut served = Self::empty();
        if !myself[2].split(',').any(|flag| flag == "master") {
            return Ok(served);
        }
        let mut migrating = Vec::new();
        for field in myself.iter().skip(8) {
            let number = |text: &str| text.parse::<u16>().map_err(|_| unexpected());
            if let Some(moving) = field.strip_prefix('[') {
                if let Some((slot, _)) = moving.split_once("->-") {
                    migrating.push(number(slot)?);
                }
                continue;
            }
            let (start, end) = field.split_once('-').unwrap_or((field, field));
            for slot in number(start)?..=number(end)? {
                served.insert(slot);
            }
        }
        for slot in migrating {
            served.remove(slot);
        }
        Ok(served)
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
        assert!(masters.names("10.0.0.1:7000") && !masters.names("10.0.0.2:7001"));
        assert_eq!(
            masters.learn(5, "10.0.0.2:7001").as_deref(),
            Some("10.0.0.1:7000")
        );
        assert_eq!(masters.known(5).as_deref(), Some("10.0.0.2:7001"));
        assert_eq!(masters.learn(5, "10.0.0.2:7001"), None, "nothing changed");
        assert_eq!(masters.forget(5).as_deref(), Some("10.0.0.2:7001"));
        assert_eq!(masters.known(5), None);
        let lost = masters.set(Vec::new());
        assert_eq!(masters.known(0), None);
        assert_eq!(lost, [Arc::from("10.0.0.1:7000")]);
    }

    #[test]
    fn a_new_slot_map_names_each_master_that_lost_a_slot_once() {
        let masters = Masters::new();
        let range = |start, end, master: &str| SlotRange {
            start,
            end,
            master: master.into(),
            replicas: 0,
        };
        let first = masters.set(vec![range(0, 99, "a:1"), range(100, 199, "b:1")]);
        assert!(first.is_empty(), "{first:?}");
        let same = masters.set(vec![range(0, 99, "a:1"), range(100, 199, "b:1")]);
        assert!(same.is_empty(), "{same:?}");
        let moved = masters.set(vec![range(0, 98, "a:1"), range(99, 199, "b:1")]);
        assert_eq!(moved, [Arc::from("a:1")]);
    }

    /// `CLUSTER NODES` of a master of slots 0-5460 and 10000 that is
    /// migrating slot 5 and importing 6000, and of a replica.
    const MASTER: &str = "\
07c37dfeb2352e0b 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb 0 1426238317239 4 connected
e7d1eecce10fd6bb 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 10000 \
[5->-292f8b365bb7edb5] [6000-<-292f8b365bb7edb5]
292f8b365bb7edb5 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-9999
";
    const REPLICA: &str = "\
e7d1eecce10fd6bb 127.0.0.1:30001@31001 master - 0 1426238317239 1 connected 0-5460
07c37dfeb2352e0b 127.0.0.1:30004@31004 myself,slave e7d1eecce10fd6bb 0 0 4 connected
";

    #[test]
    fn a_node_serves_its_own_slots_but_not_those_it_migrates_away_nor_as_a_replica() {
        let served = SlotSet::served_by_myself(MASTER).unwrap();
        for slot in [0, 4, 6, 5460, 10000] {
            assert!(served.contains(slot), "{slot}");
        }
        for slot in [5, 5461, 6000, 9999, 10001, 16383] {
            assert!(!served.contains(slot), "{slot}");
        }
        let none = SlotSet::served_by_myself(REPLICA).unwrap();
        assert!(none == SlotSet::empty());
        assert!(none.is_subset(&served) && !served.is_subset(&none));
        assert!(SlotSet::served_by_myself("garbage").is_err());
    }
}
