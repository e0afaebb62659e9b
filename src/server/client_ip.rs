//! Which address a request comes from.
//!
//! The TCP peer, unless the peer is a trusted proxy (`[server] trusted_proxies`). From a
//! trusted peer the configured header is read: for `X-Forwarded-For`, the right-most address
//! that is not itself a trusted proxy, because every hop appends what it saw and only the
//! hops we trust can be believed; anything to the left of the first untrusted hop could have
//! been written by the client. A header from an untrusted peer is never read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::HeaderMap;
use ipnet::IpNet;

use crate::config::ClientIpHeader;

/// Who is trusted to say where a request came from.
#[derive(Debug, Clone)]
pub struct ClientIpPolicy {
    /// Peers whose header is read.
    pub trusted_proxies: Vec<IpNet>,
    /// The header they write.
    pub header: ClientIpHeader,
}

impl ClientIpPolicy {
    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let values = headers.get_all(self.header.name()).iter();
        // Several header lines are one list, in order (RFC 9110, section 5.3).
        let hops: Vec<&str> = values
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        if !self.header.is_list() {
            return hops.first().and_then(|hop| parse_hop(hop)).unwrap_or(peer);
        }
        let mut nearest = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                // An unreadable hop ends what can be believed: keep the last trusted one.
                None => return nearest,
                Some(ip) if !self.is_trusted(ip) => return ip,
                Some(ip) => nearest = ip,
            }
        }
        nearest
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4 address that arrived mapped into IPv6 (a dual-stack socket) as plain IPv4, so
/// that IPv4 ranges match it (and the per-client cap counts it as IPv4).
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One list element: `192.0.2.1`, `192.0.2.1:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse().ok())
            .map(canonical);
    }
    hop.rsplit_once(':')
        .and_then(|(ip, _port)| ip.parse::<Ipv4Addr>().ok())
        .map(IpAddr::V4)
}

/// A client address as logs show it: truncated to its /24 (IPv4) or /48 (IPv6) unless
/// `[log] full_client_ip` is on.
#[derive(Debug, Clone, Copy)]
pub struct LoggedIp {
    ip: IpAddr,
    full: bool,
}

impl LoggedIp {
    /// `ip` as the log policy shows it.
    pub fn new(ip: IpAddr, full: bool) -> LoggedIp {
        LoggedIp { ip, full }
    }
}

impl fmt::Display for LoggedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.full {
            return write!(f, "{}", self.ip);
        }
        match self.ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                write!(f, "{}/24", Ipv4Addr::new(a, b, c, 0))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                write!(f, "{net}/48")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn policy(header: ClientIpHeader) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted_proxies: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            header,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn untrusted_peers_are_never_believed() {
        let xff = headers("x-forwarded-for", &["198.51.100.9"]);
        let got = policy(ClientIpHeader::XForwardedFor).client_ip(ip("192.0.2.1"), &xff);
        assert_eq!(got, ip("192.0.2.1"));
    }

    #[test]
    fn trusted_peers_give_the_right_most_untrusted_hop() {
        let xff = headers(
            "x-forwarded-for",
            &["1.1.1.1, 198.51.100.9", "10.1.1.1:443"],
        );
        let got = policy(ClientIpHeader::XForwardedFor).client_ip(ip("10.0.0.2"), &xff);
        assert_eq!(got, ip("198.51.100.9"));
        let all_trusted = headers("x-forwarded-for", &["10.3.3.3, 10.2.2.2"]);
        let got = policy(ClientIpHeader::XForwardedFor).client_ip(ip("10.0.0.2"), &all_trusted);
        assert_eq!(got, ip("10.3.3.3"));
        let garbage = headers("x-forwarded-for", &["198.51.100.9, unknown"]);
        let got = policy(ClientIpHeader::XForwardedFor).client_ip(ip("10.0.0.2"), &garbage);
        assert_eq!(got, ip("10.0.0.2"));
        let v6 = headers("x-forwarded-for", &["[2001:db9::1]:80"]);
        let got = policy(ClientIpHeader::XForwardedFor).client_ip(ip("::ffff:10.0.0.2"), &v6);
        assert_eq!(got, ip("2001:db9::1"));
    }

    #[test]
    fn single_address_headers() {
        let cf = headers("cf-connecting-ip", &["203.0.113.5"]);
        let got = policy(ClientIpHeader::CfConnectingIp).client_ip(ip("10.0.0.2"), &cf);
        assert_eq!(got, ip("203.0.113.5"));
        let got = policy(ClientIpHeader::TrueClientIp).client_ip(ip("10.0.0.2"), &cf);
        assert_eq!(got, ip("10.0.0.2"));
    }

    #[test]
    fn logs_truncate_unless_asked() {
        assert_eq!(
            LoggedIp::new(ip("192.0.2.77"), false).to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            LoggedIp::new(ip("192.0.2.77"), true).to_string(),
            "192.0.2.77"
        );
        assert_eq!(
            LoggedIp::new(ip("2001:db8:1:2:3::4"), false).to_string(),
            "2001:db8:1::/48"
        );
    }
}
