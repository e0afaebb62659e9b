//! `[server]`: where `mailtrack serve` listens, whom it trusts for the client's address, and
//! the limits that keep one client from starving the others.
//!
//! Durations are whole seconds: every timeout here is a human-scale wait, and one unit for all
//! of them keeps the file readable.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The plain-HTTP address when `[server]` names none: localhost only, so the embedded default
/// runs with no certificate and is not reachable from other machines by accident.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// The most connections open at once. Each costs one task and two small buffers (a few KiB),
/// so 10 000 stays well under 100 MiB, while a mail blast's opens arrive spread over minutes.
/// Past it, new connections are accepted and closed at once rather than left in the backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The most connections one client may hold open at once, counting an IPv4 address, or an
/// IPv6 /64, as one client; a trusted proxy is not held to it. Without it, one host could hold
/// every one of `max_connections`: at the defaults, about 170 requests a second, one per
/// connection, keep all 10,000 busy until their idle timeout.
///
/// 1,000 is a tenth of [`DEFAULT_MAX_CONNECTIONS`], so that filling the server takes ten
/// addresses, not one, and it is twice what the busiest real address holds. Opens and clicks
/// arrive through carrier-grade NATs, corporate gateways and image proxies (Gmail's, Apple
/// Mail's), where many recipients share one address. A gateway in front of 10,000 recipients,
/// half of whom open a blast in its first ten minutes, opens about 8 connections a second,
/// each held for up to the 60-second idle timeout: about 500 at once. Image proxies keep their
/// connections alive and fetch many pixels over each. A connection over the cap is closed at
/// once, which loses that open or click, so the cap errs on the generous side.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// How long a client has from connecting until its request headers are complete: the TLS
/// handshake, protocol detection and the headers together. Ten seconds is far more than any
/// real client on a slow mobile link needs, and bounds what a slow-loris connection can hold.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may sit with no request in flight before it is closed. Mail clients
/// fetch one pixel or follow one link; a minute keeps a browser's follow-up requests on the
/// same connection without letting idle sockets pile up. On HTTP/1 the wait for the next
/// request's head is also bounded by the header read timeout (hyper starts that clock as soon
/// as it waits), so an idle HTTP/1 connection closes after the shorter of the two.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an answer may wait for the client to take it before its connection is closed: an
/// HTTP/2 stream whose window the client keeps shut, or a socket it does not read. Every
/// answer here is a few KiB, which a real client takes in one round trip, so ten seconds is
/// a hundred round trips on a poor mobile link; a client that holds answers longer holds a
/// stream, a task and a body each, for nothing.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight requests may run after SIGTERM before their connections are dropped.
/// Every request here is answered from memory in microseconds, so this only covers slow
/// clients reading their response; it stays under Kubernetes' default 30-second grace.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The most connections the config may allow; past this the process would run out of file
/// descriptors on any usual system before the limit mattered.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The plain-HTTP address, if any.
    pub http: Option<SocketAddr>,
    /// The HTTPS address, if any; `[tls]` then has at least one certificate.
    pub https: Option<SocketAddr>,
    /// Peers whose client-address header is believed (a CDN's or load balancer's ranges).
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy puts the client's address in.
    pub client_ip_header: ClientIpHeader,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most connections one client address (an IPv6 /64) may hold open at once; trusted
    /// proxies are not held to it. 0: no per-client cap.
    pub max_connections_per_ip: usize,
    /// From connect until the request headers are complete (TLS handshake included).
    pub header_read_timeout: Duration,
    /// How long a connection may be idle before it is closed.
    pub idle_timeout: Duration,
    /// How long an answer may wait for the client to take it before its connection closes.
    pub answer_timeout: Duration,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// The header that carries the client's address from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`: a list; each proxy appends the address it saw.
    XForwardedFor,
    /// `CF-Connecting-IP`: Cloudflare's single address.
    CfConnectingIp,
    /// `True-Client-IP`: Akamai's (and Cloudflare Enterprise's) single address.
    TrueClientIp,
}

impl ClientIpHeader {
    /// The header's name, lower case as HTTP/2 requires.
    pub fn name(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::CfConnectingIp => "cf-connecting-ip",
            ClientIpHeader::TrueClientIp => "true-client-ip",
        }
    }

    /// Whether the header is a comma-separated list that proxies append to.
    pub fn is_list(self) -> bool {
        self == ClientIpHeader::XForwardedFor
    }

    fn parse(name: &str) -> Option<ClientIpHeader> {
        [
            ClientIpHeader::XForwardedFor,
            ClientIpHeader::CfConnectingIp,
            ClientIpHeader::TrueClientIp,
        ]
        .into_iter()
        .find(|header| header.name().eq_ignore_ascii_case(name))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            // The constant is a valid address; the test below checks it.
            http: DEFAULT_HTTP_ADDR.parse().ok(),
            https: None,
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::XForwardedFor,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// `[server]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    http: Option<String>,
    https: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    client_ip_header: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_read_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    answer_timeout: Option<u64>,
    shutdown_grace: Option<u64>,
}

/// A refused value: the key and what is wrong with it.
pub(super) type Refusal = (&'static str, String);

/// Checks a name that goes into metrics labels, file names and log lines (a notify endpoint's,
/// a classifier list's): 1 to 64 of `A-Z a-z 0-9 - _ .`; refused under `key` otherwise.
pub(super) fn check_name(name: &str, key: &'static str) -> Result<(), Refusal> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err((key, format!("{name:?} is not 1 to 64 of A-Z a-z 0-9 - _ .")))
    }
}

impl RawServer {
    /// Validates `[server]`. With neither address given, plain HTTP on [`DEFAULT_HTTP_ADDR`].
    pub(super) fn validate(self) -> Result<ServerConfig, Refusal> {
        let defaults = ServerConfig::default();
        let (http, https) = match (&self.http, &self.https) {
            (None, None) => (defaults.http, None),
            _ => (
                address("server.http", self.http.as_deref())?,
                address("server.https", self.https.as_deref())?,
            ),
        };
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|cidr| proxy_range(cidr))
            .collect::<Result<_, _>>()?;
        let client_ip_header = match self.client_ip_header.as_deref() {
            None => defaults.client_ip_header,
            Some(name) => ClientIpHeader::parse(name).ok_or_else(|| {
                (
                    "server.client_ip_header",
                    format!("{name:?} is not one of \"x-forwarded-for\", \"cf-connecting-ip\", \"true-client-ip\""),
                )
            })?,
        };
        let max_connections = self.max_connections.unwrap_or(defaults.max_connections);
        if max_connections == 0 || max_connections > MAX_MAX_CONNECTIONS {
            return Err((
                "server.max_connections",
                format!("{max_connections} is not between 1 and {MAX_MAX_CONNECTIONS}"),
            ));
        }
        let max_connections_per_ip = self
            .max_connections_per_ip
            .unwrap_or(defaults.max_connections_per_ip);
        if max_connections_per_ip > MAX_MAX_CONNECTIONS {
            return Err((
                "server.max_connections_per_ip",
                format!("{max_connections_per_ip} is more than {MAX_MAX_CONNECTIONS} (0 turns the cap off)"),
            ));
        }
        Ok(ServerConfig {
            http,
            https,
            trusted_proxies,
            client_ip_header,
            max_connections,
            max_connections_per_ip,
            header_read_timeout: seconds("server.header_read_timeout", self.header_read_timeout)?
                .unwrap_or(defaults.header_read_timeout),
            idle_timeout: seconds("server.idle_timeout", self.idle_timeout)?
                .unwrap_or(defaults.idle_timeout),
            answer_timeout: seconds("server.answer_timeout", self.answer_timeout)?
                .unwrap_or(defaults.answer_timeout),
            shutdown_grace: self
                .shutdown_grace
                .map_or(defaults.shutdown_grace, Duration::from_secs),
        })
    }
}

fn address(key: &'static str, text: Option<&str>) -> Result<Option<SocketAddr>, Refusal> {
    text.map(|text| {
        text.parse().map_err(|_| {
            (
                key,
                format!("{text:?} is not an address (expected IP:PORT, e.g. \"0.0.0.0:443\")"),
            )
        })
    })
    .transpose()
}

fn proxy_range(cidr: &str) -> Result<IpNet, Refusal> {
    // A bare address is a range of one.
    let parsed = cidr
        .parse::<IpNet>()
        .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from));
    parsed.map(|net| net.trunc()).map_err(|_| {
        (
            "server.trusted_proxies",
            format!("{cidr:?} is not a CIDR range (e.g. \"10.0.0.0/8\") or an address"),
        )
    })
}

/// A timeout of zero would close every connection at once: refuse it.
fn seconds(key: &'static str, value: Option<u64>) -> Result<Option<Duration>, Refusal> {
    match value {
        Some(0) => Err((key, "must be at least 1 second".to_owned())),
        other => Ok(other.map(Duration::from_secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Result<ServerConfig, Refusal> {
        toml::from_str::<RawServer>(text).unwrap().validate()
    }

    #[test]
    fn defaults_serve_plain_http_on_localhost() {
        let config = raw("").unwrap();
        assert_eq!(config.http, Some(DEFAULT_HTTP_ADDR.parse().unwrap()));
        assert_eq!(config.https, None);
        assert_eq!(config.client_ip_header, ClientIpHeader::XForwardedFor);
    }

    #[test]
    fn https_alone_turns_plain_http_off() {
        let config = raw("https = \"[::]:443\"").unwrap();
        assert_eq!(config.http, None);
        assert_eq!(config.https, Some("[::]:443".parse().unwrap()));
    }

    #[test]
    fn refusals_name_the_key() {
        let (key, message) = raw("http = \"nope\"").unwrap_err();
        assert_eq!(key, "server.http");
        assert!(
            message.starts_with("\"nope\" is not an address"),
            "{message}"
        );
        assert_eq!(
            raw("trusted_proxies = [\"10.0.0.0/33\"]").unwrap_err().0,
            "server.trusted_proxies"
        );
        assert_eq!(
            raw("client_ip_header = \"x-real-ip\"").unwrap_err().0,
            "server.client_ip_header"
        );
        assert_eq!(
            raw("idle_timeout = 0").unwrap_err().0,
            "server.idle_timeout"
        );
        assert_eq!(
            raw("answer_timeout = 0").unwrap_err().0,
            "server.answer_timeout"
        );
        assert_eq!(
            raw("max_connections = 0").unwrap_err().0,
            "server.max_connections"
        );
        assert_eq!(
            raw("max_connections_per_ip = 1000001").unwrap_err().0,
            "server.max_connections_per_ip"
        );
    }

    #[test]
    fn the_per_client_cap_defaults_and_turns_off_with_zero() {
        assert_eq!(
            raw("").unwrap().max_connections_per_ip,
            DEFAULT_MAX_CONNECTIONS_PER_IP
        );
        assert_eq!(
            raw("max_connections_per_ip = 0")
                .unwrap()
                .max_connections_per_ip,
            0
        );
    }

    #[test]
    fn proxies_accept_ranges_and_single_addresses() {
        let config = raw("trusted_proxies = [\"10.1.2.3/8\", \"::1\", \"192.0.2.7\"]").unwrap();
        let ranges: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(ranges, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        let config = raw("client_ip_header = \"CF-Connecting-IP\"").unwrap();
        assert_eq!(config.client_ip_header, ClientIpHeader::CfConnectingIp);
    }
}
