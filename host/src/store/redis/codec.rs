//! The store's commands as Redis commands, and Redis replies as the store's
//! replies. The only place that spells out each [`Command`] for Redis.

use std::borrow::Cow;
use std::collections::BTreeMap;

use redis::{Cmd, Pipeline, Value};

use crate::store::{
    Command, EventArgs, EventId, EventRange, EventStream, ExpireCondition, GetExpireArgs,
    HashDeleteArgs, HashExistsArgs, HashGetArgs, HashSetArgs, Reply, SetCondition, StoreError,
    StoredEvent, key_slot,
};

/// Where a store's `append-event` commands go: its event stream, or on a
/// cluster the stream of the slot of the key each is written beside.
#[derive(Debug, Clone)]
pub(super) struct Events {
    stream: EventStream,
    sharded: bool,
}

impl Events {
    /// The events of a store on one server (or a sentinel's master).
    pub(super) fn single(stream: EventStream) -> Self {
        Self {
            stream,
            sharded: false,
        }
    }

    /// The events of a cluster: one stream per slot.
    pub(super) fn per_slot(stream: EventStream) -> Self {
        Self {
            stream,
            sharded: true,
        }
    }

    /// The stream.
    pub(super) fn stream(&self) -> &EventStream {
        &self.stream
    }

    /// The key of the stream an event beside `key` goes to.
    fn key(&self, beside: &str) -> Cow<'_, str> {
        match self.sharded {
            true => Cow::Owned(self.stream.slot_key(key_slot(beside))),
            false => Cow::Borrowed(&self.stream.key),
        }
    }
}

/// No stream, for a pipeline of reads alone, which appends no event.
pub(super) static NO_EVENTS: Events = Events {
    stream: EventStream {
        key: String::new(),
        max_len: 0,
    },
    sharded: false,
};

/// The Redis command for `command`.
fn encode(command: &Command, events: &Events) -> Cmd {
    let mut cmd = Cmd::new();
    match command {
        Command::Get(key) => {
            cmd.arg("GET").arg(key);
        }
        Command::Set(set) => {
            cmd.arg("SET").arg(&set.key).arg(&set.value);
            if set.ttl_seconds > 0 {
                cmd.arg("EX").arg(set.ttl_seconds);
            }
            cmd.arg(set_flag(set.condition));
        }
        Command::Del(keys) => {
            cmd.arg("DEL").arg(keys);
        }
        Command::Exists(keys) => {
            cmd.arg("EXISTS").arg(keys);
        }
        Command::Ttl(key) => {
            cmd.arg("TTL").arg(key);
        }
        Command::Expire(expire) => {
            cmd.arg("EXPIRE").arg(&expire.key).arg(expire.seconds);
            cmd.arg(expire_flag(expire.condition));
        }
        Command::HashSet(HashSetArgs { key, fields }) => {
            cmd.arg("HSET").arg(key);
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
        }
        Command::HashDelete(HashDeleteArgs { key, fields }) => {
            cmd.arg("HDEL").arg(key).arg(fields);
        }
        Command::HashGetAll(key) => {
            cmd.arg("HGETALL").arg(key);
        }
        Command::HashExists(HashExistsArgs { key, field }) => {
            cmd.arg("HEXISTS").arg(key).arg(field);
        }
        Command::GetExpire(GetExpireArgs { key, seconds }) => {
            cmd.arg("GETEX").arg(key).arg("EX").arg(*seconds);
        }
        Command::HashGet(HashGetArgs { key, field }) => {
            cmd.arg("HGET").arg(key).arg(field);
        }
        Command::AppendEvent(EventArgs { beside, fields }) => {
            debug_assert!(
                !events.stream.key.is_empty(),
                "an event queued on a pipeline that names no stream"
            );
            cmd.arg("XADD")
                .arg(events.key(beside).as_ref())
                .arg("MAXLEN")
                .arg("~")
                .arg(events.stream.max_len)
                .arg("*");
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
        }
    }
    cmd
}

/// `XRANGE` or `XREVRANGE` of the stream at `key` for `range`.
pub(super) fn read_stream(key: &str, range: EventRange) -> Cmd {
    // Redis reads COUNT as a signed 64-bit number.
    let count = i64::try_from(range.count()).unwrap_or(i64::MAX);
    let mut cmd = Cmd::new();
    match range {
        EventRange::After(after, _) => {
            cmd.arg("XRANGE")
                .arg(key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(count);
        }
        EventRange::Last(_) => {
            cmd.arg("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(count);
        }
    }
    cmd
}

/// The events of an `XRANGE` or `XREVRANGE` reply, oldest first.
pub(super) fn stream_events(value: Value) -> Result<Vec<StoredEvent>, StoreError> {
    let unexpected = |value: &Value| StoreError::new(format!("unexpected stream reply {value:?}"));
    let entries = match value {
        Value::Array(entries) => entries,
        // `COUNT 0` answers nil.
        Value::Nil => Vec::new(),
        other => return Err(unexpected(&other)),
    };
    let mut events = entries
        .into_iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return Err(unexpected(&entry));
            };
            let [id, fields]: [Value; 2] = parts
                .try_into()
                .map_err(|parts| unexpected(&Value::Array(parts)))?;
            let id = text(id).map_err(|value| unexpected(&value))?;
            let fields = pairs(fields).map_err(|value| unexpected(&value))?;
            Ok(StoredEvent {
                id: EventId::parse(&id)?,
                fields,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    events.sort_by_key(|event| event.id);
    Ok(events)
}

/// The flag that makes `SET` conditional; none when it always sets.
fn set_flag(condition: SetCondition) -> Option<&'static str> {
    match condition {
        SetCondition::Always => None,
        SetCondition::IfAbsent => Some("NX"),
        SetCondition::IfPresent => Some("XX"),
    }
}

/// The flag that makes `EXPIRE` conditional; none when it always sets.
fn expire_flag(condition: ExpireCondition) -> Option<&'static str> {
    match condition {
        ExpireCondition::Always => None,
        ExpireCondition::IfNone => Some("NX"),
        ExpireCondition::IfLater => Some("GT"),
    }
}

/// Validates `commands` and adds them to `pipe`; with `ignore_replies`
/// their replies are dropped (inside `MULTI` they only answer `QUEUED`).
pub(super) fn queue(
    pipe: &mut Pipeline,
    commands: &[Command],
    ignore_replies: bool,
    events: &Events,
) -> Result<(), StoreError> {
    for command in commands {
        command.validate()?;
        pipe.add_command(encode(command, events));
        if ignore_replies {
            pipe.ignore();
        }
    }
    Ok(())
}

/// Whether a command issues or revokes (`SET`, `HSET`, `DEL`), so that a
/// batch of it must wait for replicas when writes are durable. `EXPIRE`
/// and `GETEX` only slide an expiry, and an `HDEL` without a `DEL` only
/// prunes index entries of dead tokens: a batch of those does not wait.
pub(super) fn issues_or_revokes(commands: &[Command]) -> bool {
    commands.iter().any(|command| {
        matches!(
            command,
            Command::Set(_) | Command::Del(_) | Command::HashSet(_)
        )
    })
}

/// Whether every command only reads, so that sending them twice is as good
/// as sending them once.
pub(super) fn only_reads(commands: &[Command]) -> bool {
    commands.iter().all(Command::is_read)
}

/// The keys that `commands` may write: every key of a command that is not
/// a read.
pub(super) fn written_keys(commands: &[Command]) -> impl Iterator<Item = &str> {
    commands
        .iter()
        .filter(|command| !command.is_read())
        .flat_map(Command::keys)
}

/// The deletions of a step of deletions (`DEL`, `HDEL`) and events alone,
/// which may run outside `MULTI` when a full Redis refuses everything
/// queued there: they free memory, and a revocation needs nothing else,
/// while its events would take memory a full Redis refuses. None when the
/// step holds any other command.
pub(super) fn only_deletions(commands: &[Command]) -> Option<Vec<Command>> {
    let mut deletions = Vec::with_capacity(commands.len());
    for command in commands {
        match command {
            Command::Del(_) | Command::HashDelete(_) => deletions.push(command.clone()),
            Command::AppendEvent(_) => {}
            _ => return None,
        }
    }
    Some(deletions)
}

/// The replies to `commands` when only their deletions ran, from the
/// deletions' `replies`: nil for each event, which was not written.
pub(super) fn events_unwritten(commands: &[Command], replies: Vec<Reply>) -> Vec<Reply> {
    let mut replies = replies.into_iter();
    let mut lost = 0;
    let replies: Vec<Reply> = commands
        .iter()
        .map(|command| match command {
            Command::AppendEvent(_) => {
                lost += 1;
                Reply::Nil
            }
            _ => replies.next().unwrap_or(Reply::Nil),
        })
        .collect();
    if lost > 0 {
        tracing::warn!(
            lost,
            "redis is full: a step of deletions ran without its session events, which redis refused"
        );
    }
    replies
}

/// Whether sending every command again after a redirection leaves the
/// keys as sending them once would: reads, deletions (`DEL`, `HDEL`) and
/// `GETEX` (which slides an expiry to the same point). A full Redis refuses
/// every command queued in `MULTI`, but runs these in a plain pipeline.
pub(super) fn may_run_twice(commands: &[Command]) -> bool {
    commands.iter().all(|command| {
        command.is_read()
            || matches!(
                command,
                Command::Del(_) | Command::HashDelete(_) | Command::GetExpire(_)
            )
    })
}

/// `command` split into one command per group of its keys, `group` naming
/// each key's: only `DEL` and `EXISTS` name several keys, and the counts
/// they answer add up. Any other command is one group, its key's.
pub(super) fn split_keys<G: Ord>(command: Command, group: impl Fn(&str) -> G) -> Vec<(G, Command)> {
    let (keys, part): (_, fn(Vec<String>) -> Command) = match command {
        Command::Del(keys) => (keys, Command::Del),
        Command::Exists(keys) => (keys, Command::Exists),
        whole => {
            let key = whole
                .keys()
                .next()
                .expect("every other command names one key");
            return vec![(group(key), whole)];
        }
    };
    let mut groups: BTreeMap<G, Vec<String>> = BTreeMap::new();
    for key in keys {
        groups.entry(group(&key)).or_default().push(key);
    }
    groups
        .into_iter()
        .map(|(group, keys)| (group, part(keys)))
        .collect()
}

/// A bulk or simple string as text; anything else back as it came.
pub(super) fn text(value: Value) -> Result<String, Value> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|e| Value::BulkString(e.into_bytes()))
        }
        Value::SimpleString(text) => Ok(text),
        other => Err(other),
    }
}

/// Field and value pairs, as `HGETALL` and a stream entry answer them: a
/// RESP3 map, or a RESP2 array of fields and values by turns; anything
/// else, or a field or value that is not text, back as it came.
fn pairs(value: Value) -> Result<Vec<(String, String)>, Value> {
    match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(field, value)| Ok((text(field)?, text(value)?)))
            .collect(),
        Value::Array(items) => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                pairs.push((text(field)?, text(value)?));
            }
            Ok(pairs)
        }
        other => Err(other),
    }
}

/// `command`'s reply from Redis's `value`, RESP2 or RESP3.
pub(super) fn reply(command: &Command, value: Value) -> Result<Reply, StoreError> {
    let unexpected =
        |value: &Value| StoreError::new(format!("unexpected redis reply {value:?} to {command:?}"));
    Ok(match (command, value) {
        (
            Command::Get(_) | Command::Set(_) | Command::GetExpire(_) | Command::HashGet(_),
            Value::Nil,
        ) => Reply::Nil,
        (Command::Set(_), Value::Okay) => Reply::Ok,
        (
            Command::Get(_) | Command::GetExpire(_) | Command::HashGet(_) | Command::AppendEvent(_),
            value,
        ) => Reply::Text(text(value).map_err(|value| unexpected(&value))?),
        (
            Command::Del(_)
            | Command::Exists(_)
            | Command::Ttl(_)
            | Command::Expire(_)
            | Command::HashSet(_)
            | Command::HashDelete(_)
            | Command::HashExists(_),
            Value::Int(n),
        ) => Reply::Integer(n),
        (Command::HashGetAll(_), value @ (Value::Map(_) | Value::Array(_))) => {
            Reply::Pairs(pairs(value).map_err(|value| unexpected(&value))?)
        }
        (_, value) => return Err(unexpected(&value)),
    })
}

/// The replies to `commands`, one value each.
pub(super) fn replies(commands: &[Command], values: Vec<Value>) -> Result<Vec<Reply>, StoreError> {
    if values.len() != commands.len() {
        return Err(StoreError::new(format!(
            "redis answered {} replies to {} commands",
            values.len(),
            commands.len()
        )));
    }
    commands
        .iter()
        .zip(values)
        .map(|(command, value)| reply(command, value))
        .collect()
}

#[cfg(test)]
mod tests {
    use redis::Arg;

    use super::*;
    use crate::store::{ExpireArgs, SetArgs};

    #[test]
    fn reads_deletions_and_getex_may_run_twice_and_other_writes_may_not() {
        let revoke = [
            Command::Del(vec!["t".into()]),
            Command::HashDelete(HashDeleteArgs {
                key: "i".into(),
                fields: vec!["t".into()],
            }),
        ];
        assert!(may_run_twice(&revoke));
        let check = [
            Command::GetExpire(GetExpireArgs {
                key: "t".into(),
                seconds: 60,
            }),
            Command::HashGet(HashGetArgs {
                key: "i".into(),
                field: "epoch".into(),
            }),
        ];
        assert!(may_run_twice(&check));
        let login = [Command::Set(SetArgs {
            key: "t".into(),
            value: "v".into(),
            ttl_seconds: 60,
            condition: SetCondition::IfAbsent,
        })];
        assert!(!may_run_twice(&login));
        let extend = [Command::Expire(ExpireArgs {
            key: "t".into(),
            seconds: 60,
            condition: ExpireCondition::IfNone,
        })];
        assert!(!may_run_twice(&extend), "its reply changes the second time");
    }

    fn events() -> Events {
        Events::single(EventStream::default())
    }

    fn args(command: &Command) -> Vec<String> {
        encode(command, &events())
            .args_iter()
            .map(|arg| match arg {
                Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                _ => panic!("no store command takes a cursor"),
            })
            .collect()
    }

    fn strings(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    fn set(ttl_seconds: i64, condition: SetCondition) -> Command {
        Command::Set(SetArgs {
            key: "k".into(),
            value: "v".into(),
            ttl_seconds,
            condition,
        })
    }

    fn expire(condition: ExpireCondition) -> Command {
        Command::Expire(ExpireArgs {
            key: "k".into(),
            seconds: 60,
            condition,
        })
    }

    #[test]
    fn each_command_is_sent_as_its_redis_command() {
        let cases: [(Command, &[&str]); 18] = [
            (Command::Get("k".into()), &["GET", "k"]),
            (set(0, SetCondition::Always), &["SET", "k", "v"]),
            (
                set(60, SetCondition::Always),
                &["SET", "k", "v", "EX", "60"],
            ),
            (
                set(60, SetCondition::IfAbsent),
                &["SET", "k", "v", "EX", "60", "NX"],
            ),
            (set(0, SetCondition::IfPresent), &["SET", "k", "v", "XX"]),
            (Command::Del(strings(&["a", "b"])), &["DEL", "a", "b"]),
            (Command::Exists(strings(&["a", "b"])), &["EXISTS", "a", "b"]),
            (Command::Ttl("k".into()), &["TTL", "k"]),
            (expire(ExpireCondition::Always), &["EXPIRE", "k", "60"]),
            (
                expire(ExpireCondition::IfNone),
                &["EXPIRE", "k", "60", "NX"],
            ),
            (
                expire(ExpireCondition::IfLater),
                &["EXPIRE", "k", "60", "GT"],
            ),
            (
                Command::HashSet(HashSetArgs {
                    key: "h".into(),
                    fields: vec![("f".into(), "1".into()), ("g".into(), "2".into())],
                }),
                &["HSET", "h", "f", "1", "g", "2"],
            ),
            (
                Command::HashDelete(HashDeleteArgs {
                    key: "h".into(),
                    fields: strings(&["f", "g"]),
                }),
                &["HDEL", "h", "f", "g"],
            ),
            (Command::HashGetAll("h".into()), &["HGETALL", "h"]),
            (
                Command::HashExists(HashExistsArgs {
                    key: "h".into(),
                    field: "f".into(),
                }),
                &["HEXISTS", "h", "f"],
            ),
            (
                Command::GetExpire(GetExpireArgs {
                    key: "k".into(),
                    seconds: 60,
                }),
                &["GETEX", "k", "EX", "60"],
            ),
            (
                Command::HashGet(HashGetArgs {
                    key: "h".into(),
                    field: "f".into(),
                }),
                &["HGET", "h", "f"],
            ),
            (
                Command::AppendEvent(EventArgs {
                    beside: "{alice}index".into(),
                    fields: vec![("event".into(), "login".into())],
                }),
                &[
                    "XADD",
                    "dsession-events",
                    "MAXLEN",
                    "~",
                    "100000",
                    "*",
                    "event",
                    "login",
                ],
            ),
        ];
        for (command, expected) in cases {
            assert_eq!(args(&command), expected, "{command:?}");
        }
        let event = Command::AppendEvent(EventArgs {
            beside: "{alice}index".into(),
            fields: vec![("event".into(), "login".into())],
        });
        let per_slot = Events::per_slot(EventStream::default());
        let key = per_slot.key("{alice}index").into_owned();
        assert_eq!(
            crate::store::key_slot(&key),
            crate::store::key_slot("alice")
        );
        assert_eq!(
            encode(&event, &per_slot)
                .args_iter()
                .nth(1)
                .map(|arg| match arg {
                    Arg::Simple(bytes) => bytes.to_vec(),
                    _ => Vec::new(),
                }),
            Some(key.into_bytes())
        );
    }

    #[test]
    fn a_full_redis_runs_the_deletions_of_a_revocation_without_its_events() {
        let event = Command::AppendEvent(EventArgs {
            beside: "i".into(),
            fields: vec![("event".into(), "revoke".into())],
        });
        let del = Command::Del(vec!["t".into()]);
        let step = [del.clone(), event.clone()];
        assert_eq!(only_deletions(&step), Some(vec![del]));
        assert_eq!(
            events_unwritten(&step, vec![Reply::Integer(1)]),
            [Reply::Integer(1), Reply::Nil]
        );
        assert_eq!(only_deletions(&[event, Command::Get("k".into())]), None);
    }

    #[test]
    fn a_queue_holds_the_commands_in_order_and_refuses_an_invalid_one() {
        let commands = [Command::Get("a".into()), Command::Ttl("b".into())];
        let mut pipe = redis::pipe();
        queue(&mut pipe, &commands, false, &events()).unwrap();
        let expected: Vec<u8> = commands
            .iter()
            .flat_map(|command| encode(command, &events()).get_packed_command())
            .collect();
        assert_eq!(pipe.get_packed_pipeline(), expected);

        let error = queue(
            &mut redis::pipe(),
            &[expire(ExpireCondition::Always), Command::Del(vec![])],
            false,
            &events(),
        )
        .unwrap_err();
        assert!(
            error.message().starts_with("invalid command: no keys"),
            "{error}"
        );
    }

    #[test]
    fn each_reply_shape_becomes_its_reply() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let get = Command::Get("k".into());
        let hash_get = Command::HashGet(HashGetArgs {
            key: "h".into(),
            field: "f".into(),
        });
        let get_expire = Command::GetExpire(GetExpireArgs {
            key: "k".into(),
            seconds: 60,
        });
        let all = Command::HashGetAll("h".into());
        let pairs = Reply::Pairs(vec![("f".into(), "1".into()), ("g".into(), "2".into())]);
        let cases = [
            (get.clone(), Value::Nil, Reply::Nil),
            (get.clone(), bulk("v"), Reply::Text("v".into())),
            (
                get,
                Value::SimpleString("v".into()),
                Reply::Text("v".into()),
            ),
            (hash_get.clone(), Value::Nil, Reply::Nil),
            (hash_get, bulk("1"), Reply::Text("1".into())),
            (get_expire.clone(), Value::Nil, Reply::Nil),
            (get_expire, bulk("v"), Reply::Text("v".into())),
            (set(0, SetCondition::Always), Value::Okay, Reply::Ok),
            (set(0, SetCondition::IfAbsent), Value::Nil, Reply::Nil),
            (
                Command::Del(strings(&["a"])),
                Value::Int(1),
                Reply::Integer(1),
            ),
            (
                Command::Exists(strings(&["a"])),
                Value::Int(0),
                Reply::Integer(0),
            ),
            (Command::Ttl("k".into()), Value::Int(-2), Reply::Integer(-2)),
            (
                expire(ExpireCondition::IfLater),
                Value::Int(1),
                Reply::Integer(1),
            ),
            (
                Command::HashExists(HashExistsArgs {
                    key: "h".into(),
                    field: "f".into(),
                }),
                Value::Int(1),
                Reply::Integer(1),
            ),
            // RESP3 answers HGETALL with a map, RESP2 with a flat array.
            (
                all.clone(),
                Value::Map(vec![(bulk("f"), bulk("1")), (bulk("g"), bulk("2"))]),
                pairs.clone(),
            ),
            (
                all.clone(),
                Value::Array(vec![bulk("f"), bulk("1"), bulk("g"), bulk("2")]),
                pairs,
            ),
            (all, Value::Array(vec![]), Reply::Pairs(vec![])),
        ];
        for (command, value, expected) in cases {
            let replies = replies(std::slice::from_ref(&command), vec![value]).unwrap();
            assert_eq!(replies, [expected], "{command:?}");
        }
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_an_error_naming_it() {
        let cases = [
            (Command::Get("k".into()), Value::Int(1)),
            (
                Command::Get("k".into()),
                Value::BulkString(vec![0xff, 0xfe]),
            ),
            (set(0, SetCondition::Always), Value::Int(1)),
            (Command::Ttl("k".into()), Value::Nil),
            (Command::HashGetAll("h".into()), Value::Nil),
            (
                Command::HashGetAll("h".into()),
                Value::Array(vec![Value::Int(1), Value::Int(2)]),
            ),
        ];
        for (command, value) in cases {
            let error = replies(std::slice::from_ref(&command), vec![value]).unwrap_err();
            assert!(!error.is_corrupt(), "{error}");
            assert!(
                error.message().starts_with("unexpected redis reply"),
                "{error}"
            );
        }
        let error = replies(&[Command::Ttl("k".into())], vec![]).unwrap_err();
        assert_eq!(error.message(), "redis answered 0 replies to 1 commands");
    }

    #[test]
    fn del_and_exists_split_by_group_and_other_commands_stay_whole() {
        let group = |key: &str| key.starts_with('a');
        assert_eq!(
            split_keys(Command::Del(strings(&["a1", "b1", "a2"])), group),
            [
                (false, Command::Del(strings(&["b1"]))),
                (true, Command::Del(strings(&["a1", "a2"]))),
            ]
        );
        assert_eq!(
            split_keys(Command::Exists(strings(&["b1"])), group),
            [(false, Command::Exists(strings(&["b1"])))]
        );
        let get = Command::Get("a1".into());
        assert_eq!(split_keys(get.clone(), group), [(true, get)]);
    }

    #[test]
    fn a_batch_waits_for_replicas_when_it_issues_or_revokes_not_when_it_prunes() {
        let hdel = Command::HashDelete(HashDeleteArgs {
            key: "index".into(),
            fields: vec!["dead".into()],
        });
        assert!(!issues_or_revokes(&[
            Command::Get("k".into()),
            hdel.clone()
        ]));
        assert!(issues_or_revokes(&[Command::Del(vec!["k".into()]), hdel]));
        assert!(issues_or_revokes(&[set(0, SetCondition::Always)]));
    }

    #[test]
    fn only_reads_knows_a_write_among_reads() {
        assert!(only_reads(&[]));
        assert!(only_reads(&[
            Command::Get("k".into()),
            Command::Ttl("k".into())
        ]));
        assert!(!only_reads(&[
            Command::Get("k".into()),
            set(0, SetCondition::Always)
        ]));
        let get_expire = Command::GetExpire(GetExpireArgs {
            key: "k".into(),
            seconds: 1,
        });
        assert!(!only_reads(&[get_expire]));
    }
}
