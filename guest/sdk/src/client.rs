//! The client of the request a call serves, as the host knows it
//! (`client.current`): for a gateway's forward-auth check from a trusted
//! proxy, its IP and user agent.

use crate::SessionAttributes;
use crate::attributes;
use crate::bindings::dsession::session::client as raw;

/// The client of the running call; None when the host knows none.
pub fn current() -> Option<SessionAttributes> {
    raw::current().filter(|client| !attributes::is_empty(client))
}

/// `kept` with the IP and user agent of `client` in place of its own,
/// where `client` names them; None when that changes nothing, so that a
/// policy writes only what is new.
pub fn merged(kept: &SessionAttributes, client: &SessionAttributes) -> Option<SessionAttributes> {
    let ip = client.ip.clone().or_else(|| kept.ip.clone());
    let user_agent = client
        .user_agent
        .clone()
        .or_else(|| kept.user_agent.clone());
    if ip == kept.ip && user_agent == kept.user_agent {
        return None;
    }
    Some(SessionAttributes {
        ip,
        user_agent,
        ..kept.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_replaces_the_ip_and_user_agent_it_names_and_nothing_else() {
        let kept = SessionAttributes {
            device: Some("laptop".into()),
            user_agent: Some("old".into()),
            ip: Some("192.0.2.1".into()),
            labels: vec![("a".into(), "b".into())],
        };
        let moved = SessionAttributes {
            ip: Some("198.51.100.2".into()),
            ..attributes::none()
        };
        let merged = merged(&kept, &moved).unwrap();
        assert_eq!(merged.ip.as_deref(), Some("198.51.100.2"));
        assert_eq!(merged.user_agent.as_deref(), Some("old"));
        assert_eq!(
            (merged.device, merged.labels),
            (kept.device.clone(), kept.labels.clone())
        );
        assert_eq!(super::merged(&kept, &kept), None);
    }
}
