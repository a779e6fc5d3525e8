//! Store commands, by their Redis names.
//!
//! Each function builds one [`Command`]; `set` and `expire` build their
//! argument record, whose methods add the TTL and condition, and which
//! turns into a command with `.into()`:
//!
//! ```
//! use dsession_policy_sdk::{Command, cmd};
//!
//! let commands: Vec<Command> = vec![
//!     cmd::set("token:abc", "alice").ttl(60).if_absent().into(),
//!     cmd::expire("index:alice", 86_400).if_later().into(),
//!     cmd::hgetall("index:alice"),
//! ];
//! assert_eq!(commands.len(), 3);
//! ```

use crate::Command;
use crate::bindings::dsession::session::store::{
    ExpireArgs, ExpireCondition, GetExpireArgs, HashDeleteArgs, HashExistsArgs, HashGetArgs,
    HashSetArgs, SetArgs, SetCondition,
};

/// `GET key`; replies text, or nil when the key is missing.
pub fn get(key: impl Into<String>) -> Command {
    Command::Get(key.into())
}

/// `SET key value`, without expiry, always; replies ok, or nil when a
/// condition kept it from writing.
pub fn set(key: impl Into<String>, value: impl Into<String>) -> SetArgs {
    SetArgs {
        key: key.into(),
        value: value.into(),
        ttl_seconds: 0,
        condition: SetCondition::Always,
    }
}

impl SetArgs {
    /// Expires the key `seconds` after the write (`EX`); 0 means never.
    pub fn ttl(self, seconds: i64) -> Self {
        Self {
            ttl_seconds: seconds,
            ..self
        }
    }

    /// Writes only when the key does not exist (`NX`).
    pub fn if_absent(self) -> Self {
        Self {
            condition: SetCondition::IfAbsent,
            ..self
        }
    }

    /// Writes only when the key exists (`XX`).
    pub fn if_present(self) -> Self {
        Self {
            condition: SetCondition::IfPresent,
            ..self
        }
    }
}

impl From<SetArgs> for Command {
    fn from(args: SetArgs) -> Self {
        Command::Set(args)
    }
}

/// `DEL key…`; replies how many keys existed.
pub fn del(keys: impl IntoIterator<Item = String>) -> Command {
    Command::Del(keys.into_iter().collect())
}

/// `EXISTS key…`; replies how many of the keys exist.
pub fn exists(keys: impl IntoIterator<Item = String>) -> Command {
    Command::Exists(keys.into_iter().collect())
}

/// `TTL key`; replies the seconds left, -1 without expiry, -2 when the key
/// is missing (see [`crate::time::lifetime`]).
pub fn ttl(key: impl Into<String>) -> Command {
    Command::Ttl(key.into())
}

/// `EXPIRE key seconds`, always; replies 1 when changed, 0 when the key is
/// missing or a condition kept it. Never creates a key.
pub fn expire(key: impl Into<String>, seconds: i64) -> ExpireArgs {
    ExpireArgs {
        key: key.into(),
        seconds,
        condition: ExpireCondition::Always,
    }
}

impl ExpireArgs {
    /// Changes only a key without expiry (`NX`).
    pub fn if_none(self) -> Self {
        Self {
            condition: ExpireCondition::IfNone,
            ..self
        }
    }

    /// Changes only to a later expiry (`GT`); a key without expiry stays.
    pub fn if_later(self) -> Self {
        Self {
            condition: ExpireCondition::IfLater,
            ..self
        }
    }
}

impl From<ExpireArgs> for Command {
    fn from(args: ExpireArgs) -> Self {
        Command::Expire(args)
    }
}

/// `HSET key field value…`; replies how many fields are new.
pub fn hset(key: impl Into<String>, fields: Vec<(String, String)>) -> Command {
    Command::HashSet(HashSetArgs {
        key: key.into(),
        fields,
    })
}

/// `HDEL key field…`; replies how many fields existed.
pub fn hdel(key: impl Into<String>, fields: Vec<String>) -> Command {
    Command::HashDelete(HashDeleteArgs {
        key: key.into(),
        fields,
    })
}

/// `HGETALL key`; replies pairs, none for a missing key.
pub fn hgetall(key: impl Into<String>) -> Command {
    Command::HashGetAll(key.into())
}

/// `HEXISTS key field`; replies 1 or 0.
pub fn hexists(key: impl Into<String>, field: impl Into<String>) -> Command {
    Command::HashExists(HashExistsArgs {
        key: key.into(),
        field: field.into(),
    })
}

/// `HGET key field`; replies text, or nil.
pub fn hget(key: impl Into<String>, field: impl Into<String>) -> Command {
    Command::HashGet(HashGetArgs {
        key: key.into(),
        field: field.into(),
    })
}

/// `GETEX key EX seconds`: the value, or nil, and a new lifetime for a key
/// that exists, in one command (a sliding expiry).
pub fn getex(key: impl Into<String>, seconds: i64) -> Command {
    Command::GetExpire(GetExpireArgs {
        key: key.into(),
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_in_the_defaults_and_the_conditions() {
        assert_eq!(
            Command::from(set("k", "v")),
            Command::Set(SetArgs {
                key: "k".into(),
                value: "v".into(),
                ttl_seconds: 0,
                condition: SetCondition::Always,
            })
        );
        let set = set("k", "v").ttl(5).if_present();
        assert_eq!(
            (set.ttl_seconds, set.condition),
            (5, SetCondition::IfPresent)
        );
        assert_eq!(expire("k", 9).if_none().condition, ExpireCondition::IfNone);
        assert_eq!(del(["a".to_owned()]), Command::Del(vec!["a".into()]));
    }
}
