//! Which client a request comes from, for per-client limits.
//!
//! By default the peer address of the socket: any header is the client's
//! to forge. Behind a reverse proxy every peer is the proxy, so the address
//! is read from one header the operator names (`TRUSTED_CLIENT_IP_HEADER`)
//! and the proxy sets. Of a list such as `X-Forwarded-For`, the right-most
//! value is taken: it is the one the trusted proxy appended, while the
//! values left of it came from the client and prove nothing. (Behind a
//! chain of proxies, the outermost one must overwrite the header, or the
//! right-most value names the previous proxy.)

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};

/// Where the client's address comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientAddressSource {
    /// The header the trusted proxy sets; `None` (the default) uses the
    /// socket's peer address.
    pub trusted_header: Option<HeaderName>,
}

impl ClientAddressSource {
    /// The client's address: the trusted header's right-most value if one is
    /// configured and present and an address, otherwise the peer's (the
    /// proxy's, then: such requests share one budget, which fails closed).
    pub(crate) fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        self.trusted_header
            .as_ref()
            .and_then(|name| headers.get_all(name).iter().next_back())
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(parse_address)
            .unwrap_or_else(|| peer.ip())
    }
}

/// An address, with or without a port (`203.0.113.7`, `203.0.113.7:4711`,
/// `[2001:db8::1]:4711`).
fn parse_address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let _ = map.append(*name, value.parse().unwrap());
        }
        map
    }

    const PEER: &str = "10.0.0.1:5000";

    #[test]
    fn without_a_trusted_header_the_peer_counts_whatever_is_sent() {
        let source = ClientAddressSource::default();
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(
            source.client(&forged, PEER.parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_right_most_value_of_the_trusted_header_counts() {
        let source = ClientAddressSource {
            trusted_header: Some(HeaderName::from_static("x-forwarded-for")),
        };
        let sent = headers(&[
            ("x-forwarded-for", "9.9.9.9, 8.8.8.8"),
            ("x-forwarded-for", "1.1.1.1, 203.0.113.7:4711"),
        ]);
        assert_eq!(
            source.client(&sent, PEER.parse().unwrap()),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let v6 = headers(&[("x-forwarded-for", "[2001:db8::1]:4711")]);
        assert_eq!(
            source.client(&v6, PEER.parse().unwrap()),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_missing_or_garbled_trusted_header_falls_back_to_the_peer() {
        let source = ClientAddressSource {
            trusted_header: Some(HeaderName::from_static("x-forwarded-for")),
        };
        for sent in [
            headers(&[]),
            headers(&[("x-forwarded-for", "1.2.3.4, nonsense")]),
        ] {
            assert_eq!(
                source.client(&sent, PEER.parse().unwrap()),
                "10.0.0.1".parse::<IpAddr>().unwrap()
            );
        }
    }
}
