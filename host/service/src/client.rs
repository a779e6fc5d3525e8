//! The client behind a gateway's forward-auth call: its IP from
//! `X-Real-IP` or `X-Forwarded-For` and its user agent, believed only
//! from a gateway the operator trusts (`[auth] trusted_proxies`).

use std::net::IpAddr;

use axum::http::HeaderMap;
use dsession::{MAX_USER_AGENT_CHARS, SessionAttributes};

/// An address or a network, `10.0.0.0/8` or `::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Reads `address` or `address/prefix`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not an IP address or network (`10.0.0.0/8`)");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(invalid)?,
        };
        Ok(Self { address, prefix })
    }

    /// Whether `address` is in the network; an IPv4-mapped IPv6 address is
    /// read as its IPv4 address.
    pub fn contains(&self, address: IpAddr) -> bool {
        let bits = |address: IpAddr| match address.to_canonical() {
            IpAddr::V4(v4) => (u128::from(v4.to_bits()) << 96, true),
            IpAddr::V6(v6) => (v6.to_bits(), false),
        };
        // An IPv4 address sits in the top 32 bits, so that a prefix counts
        // from the top either way.
        let ((network, v4), (address, same)) = (bits(self.address), bits(address));
        if v4 != same {
            return false;
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        network & mask == address & mask
    }
}

/// The client of a forward-auth request from `peer`: when `peer` is one
/// of `trusted`, the last address of `X-Forwarded-For` that is not itself
/// a trusted proxy (the first, when all are; none when a hop on the way
/// is not an address, as what lies before it is the client's own
/// writing), else without that header the IP `X-Real-IP` names, and the
/// `User-Agent` cut to its bound; None from any other peer, or when
/// neither is known.
pub fn client(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[Network],
) -> Option<SessionAttributes> {
    let peer = peer?;
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    if !is_trusted(peer) {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let ip = if hops.is_empty() {
        header("x-real-ip").and_then(|ip| ip.trim().parse::<IpAddr>().ok())
    } else {
        let mut client = None;
        for hop in hops.iter().rev() {
            let Ok(hop) = hop.parse::<IpAddr>() else {
                client = None;
                break;
            };
            client = Some(hop);
            if !is_trusted(hop) {
                break;
            }
        }
        client
    };
    let user_agent = header("user-agent").map(|agent| {
        agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT_CHARS)
            .collect::<String>()
    });
    let client = SessionAttributes {
        ip: ip.map(|ip| ip.to_canonical().to_string()),
        user_agent: user_agent.filter(|agent| !agent.is_empty()),
        ..SessionAttributes::default()
    };
    (!client.is_empty()).then_some(client)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn networks(texts: &[&str]) -> Vec<Network> {
        texts
            .iter()
            .map(|text| Network::parse(text).unwrap())
            .collect()
    }

    #[test]
    fn networks_hold_their_addresses_only() {
        let [lan, host, six] = networks(&["10.0.0.0/8", "127.0.0.1", "fd00::/8"])[..] else {
            unreachable!()
        };
        assert!(lan.contains("10.200.3.4".parse().unwrap()));
        assert!(!lan.contains("11.0.0.1".parse().unwrap()));
        assert!(host.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(six.contains("fd12::1".parse().unwrap()));
        assert!(!six.contains("10.0.0.1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_believed_only_from_a_trusted_proxy() {
        let trusted = networks(&["127.0.0.1", "10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0\tX"));
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.9"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("10.1.2.3"));
        let gateway = Some("127.0.0.1".parse().unwrap());
        let seen = client(&headers, gateway, &trusted).unwrap();
        // The last hop that is not a trusted proxy: the one that reached them.
        assert_eq!(seen.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(seen.user_agent.as_deref(), Some("Mozilla/5.0X"));
        assert_eq!(
            client(&headers, Some("192.0.2.1".parse().unwrap()), &trusted),
            None
        );
        assert_eq!(client(&headers, None, &trusted), None);
        assert_eq!(client(&headers, gateway, &[]), None);

        // X-Real-IP, which a gateway may pass on as the client sent it,
        // only counts without X-Forwarded-For.
        headers.insert("x-real-ip", HeaderValue::from_static("::ffff:192.0.2.7"));
        let seen = client(&headers, gateway, &trusted).unwrap();
        assert_eq!(seen.ip.as_deref(), Some("203.0.113.9"));
        headers.remove("x-forwarded-for");
        let long = format!("agent-{}", "a".repeat(2000));
        headers.insert("user-agent", HeaderValue::from_str(&long).unwrap());
        let seen = client(&headers, gateway, &trusted).unwrap();
        assert_eq!(seen.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(
            seen.user_agent.unwrap().chars().count(),
            MAX_USER_AGENT_CHARS
        );
        assert_eq!(seen.device, None);

        // A hop that is no address ends the walk: what lies before it is
        // the client's own writing. Every hop trusted: the first is the client.
        let forwarded = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_static(value));
            client(&headers, gateway, &trusted).and_then(|seen| seen.ip)
        };
        assert_eq!(forwarded("198.51.100.1, unknown, 10.0.0.2"), None);
        assert_eq!(forwarded("10.9.9.9, 10.0.0.2").as_deref(), Some("10.9.9.9"));
    }
}
