//! JSON as the routes read it. An object with a key twice is refused: two
//! parsers that disagree on which one wins (a proxy's and ours) are a way
//! to smuggle a value past the first. A number with a zero fraction
//! (`6810.0`) is the integer it equals, as JSON Schema counts it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value read with the rules above.
#[derive(Debug)]
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Self)
    }
}

/// Builds a [`Value`] as `serde_json`'s own visitor does, but for
/// duplicate keys and integral floats.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // `i64::MAX as f64` is 2^63, just past the range: the end is open,
        // and the cast below exact.
        if value.fract() == 0.0 && (i64::MIN as f64..i64::MAX as f64).contains(&value) {
            return Ok((value as i64).into());
        }
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Value, String> {
        serde_json::from_str::<StrictValue>(json)
            .map(|StrictValue(value)| value)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        assert!(
            read(r#"{"a":1,"a":1}"#)
                .unwrap_err()
                .contains("duplicate field `a`")
        );
        assert!(
            read(r#"[{"b":{"c":1,"c":2}}]"#)
                .unwrap_err()
                .contains("`c`")
        );
        assert_eq!(
            read(r#"{"a":{"a":1},"b":[1,"x",null,true]}"#).unwrap(),
            serde_json::json!({ "a": { "a": 1 }, "b": [1, "x", null, true] })
        );
    }

    #[test]
    fn an_integral_float_is_its_integer_and_others_stay_floats() {
        assert_eq!(read("6810.0").unwrap(), serde_json::json!(6810));
        assert_eq!(read("-1e3").unwrap(), serde_json::json!(-1000));
        assert_eq!(read("0.5").unwrap(), serde_json::json!(0.5));
        assert!(read("1e300").unwrap().is_f64());
        assert!(read("9223372036854775808.0").unwrap().is_f64());
    }
}
