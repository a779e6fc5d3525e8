//! How a server makes room once full: `CONFIG GET maxmemory*`, and its
//! reply read as a [`MemoryPolicy`].

use redis::{Cmd, Value};

use super::codec::text;
use crate::store::{MemoryPolicy, StoreError};

/// `CONFIG GET maxmemory*`: one command for `maxmemory` and
/// `maxmemory-policy` alike, on Redis 6 as on 7 (only 7 takes several
/// names).
pub(super) fn config_get() -> Cmd {
    redis::cmd("CONFIG").arg("GET").arg("maxmemory*").clone()
}

/// A failure of [`config_get`], said as what could not be read.
pub(super) fn unreadable(error: StoreError) -> StoreError {
    error.context("cannot read maxmemory and maxmemory-policy (CONFIG GET maxmemory*)")
}

/// `server`'s policy from the reply to [`config_get`]: name-value pairs,
/// a flat array over RESP2 or a map over RESP3.
pub(super) fn parse(server: String, reply: Value) -> Result<MemoryPolicy, StoreError> {
    let unexpected = |what: &str| {
        StoreError::new(format!(
            "unexpected reply to CONFIG GET maxmemory* from {server}: {what}"
        ))
    };
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((items.next()?, items.next()?))).collect()
        }
        other => return Err(unexpected(&format!("{other:?}"))),
    };
    let (mut max_bytes, mut policy) = (None, None);
    for (name, value) in pairs {
        let (Ok(name), Ok(value)) = (text(name), text(value)) else {
            return Err(unexpected("a name or a value that is not text"));
        };
        match name.as_str() {
            "maxmemory" => max_bytes = value.parse::<u64>().ok(),
            "maxmemory-policy" => policy = Some(value),
            _ => {}
        }
    }
    match (max_bytes, policy) {
        (Some(max_bytes), Some(policy)) => Ok(MemoryPolicy {
            server,
            max_bytes,
            policy,
        }),
        _ => Err(unexpected("no maxmemory or maxmemory-policy")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn the_reply_is_read_over_resp2_and_resp3() {
        let items = [
            "maxmemory-policy",
            "allkeys-lru",
            "maxmemory-samples",
            "5",
            "maxmemory",
            "10485760",
        ];
        let resp2 = Value::Array(items.iter().map(|item| bulk(item)).collect());
        let resp3 = Value::Map(
            items
                .chunks(2)
                .map(|pair| (bulk(pair[0]), bulk(pair[1])))
                .collect(),
        );
        for reply in [resp2, resp3] {
            let policy = parse("127.0.0.1:6379".into(), reply).unwrap();
            assert_eq!(policy.max_bytes, 10 << 20);
            assert_eq!(policy.policy, "allkeys-lru");
            assert!(policy.evicts());
        }
    }

    #[test]
    fn only_a_limit_with_a_policy_other_than_noeviction_evicts() {
        let policy = |max_bytes, policy: &str| MemoryPolicy {
            server: "s:1".into(),
            max_bytes,
            policy: policy.into(),
        };
        assert!(!policy(10, "noeviction").evicts());
        assert!(
            !policy(0, "allkeys-lru").evicts(),
            "no limit, nothing to evict"
        );
        assert!(policy(10, "volatile-ttl").evicts());
        assert!(parse("s:1".into(), Value::Array(vec![bulk("maxmemory")])).is_err());
        assert!(parse("s:1".into(), Value::Array(Vec::new())).is_err());
    }
}
