//! A login's [`SessionAttributes`] as one JSON text, for a policy to keep
//! beside a session: `{"device":…,"user_agent":…,"ip":…,"labels":[[name,value],…]}`,
//! absent fields left out.

use serde_json::{Map, Value};

use crate::{Error, SessionAttributes};

/// Whether the login gave no attributes at all: nothing to keep.
pub fn is_empty(attributes: &SessionAttributes) -> bool {
    attributes.device.is_none()
        && attributes.user_agent.is_none()
        && attributes.ip.is_none()
        && attributes.labels.is_empty()
}

/// No attributes.
pub fn none() -> SessionAttributes {
    SessionAttributes {
        device: None,
        user_agent: None,
        ip: None,
        labels: Vec::new(),
    }
}

/// The attributes as JSON text.
pub fn encode(attributes: &SessionAttributes) -> String {
    let mut object = Map::new();
    for (name, value) in [
        ("device", &attributes.device),
        ("user_agent", &attributes.user_agent),
        ("ip", &attributes.ip),
    ] {
        if let Some(value) = value {
            object.insert(name.into(), Value::from(value.as_str()));
        }
    }
    if !attributes.labels.is_empty() {
        let labels = attributes
            .labels
            .iter()
            .map(|(name, value)| Value::from(vec![name.as_str(), value.as_str()]))
            .collect();
        object.insert("labels".into(), Value::Array(labels));
    }
    Value::Object(object).to_string()
}

/// Reads what [`encode`] wrote; corrupt when it is not that.
pub fn decode(json: &str) -> Result<SessionAttributes, Error> {
    let corrupt = || {
        Error::Corrupt(format!(
            "session attributes are not what dsession writes: {json:?}"
        ))
    };
    let Value::Object(mut object) = serde_json::from_str(json).map_err(|_| corrupt())? else {
        return Err(corrupt());
    };
    let mut text = |name: &str| match object.remove(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(corrupt()),
    };
    let device = text("device")?;
    let user_agent = text("user_agent")?;
    let ip = text("ip")?;
    let labels = match object.remove("labels") {
        None => Vec::new(),
        Some(Value::Array(labels)) => labels
            .into_iter()
            .map(|label| match label {
                Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                    Ok([Value::String(name), Value::String(value)]) => Ok((name, value)),
                    _ => Err(corrupt()),
                },
                _ => Err(corrupt()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(corrupt()),
    };
    Ok(SessionAttributes {
        device,
        user_agent,
        ip,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_come_back_as_they_were_kept() {
        let attributes = SessionAttributes {
            device: Some("laptop \"home\"".into()),
            user_agent: None,
            ip: Some("2001:db8::1".into()),
            labels: vec![("team".into(), "a b".into()), ("env".into(), "prod".into())],
        };
        assert_eq!(decode(&encode(&attributes)), Ok(attributes));
        assert_eq!(encode(&none()), "{}");
        assert_eq!(decode("{}"), Ok(none()));
        assert!(is_empty(&none()));
    }

    #[test]
    fn what_dsession_did_not_write_is_corrupt() {
        for json in ["", "[]", r#"{"device":1}"#, r#"{"labels":[["a"]]}"#] {
            assert!(matches!(decode(json), Err(Error::Corrupt(_))), "{json}");
        }
    }
}
