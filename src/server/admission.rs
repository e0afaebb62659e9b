//! Whether a new connection may be served: at most `max_connections` open in all, and at
//! most `max_connections_per_ip` from one client, shared by every public listener.
//!
//! A client is a TCP peer: an IPv4 address, or an IPv6 /64. One host is given a whole /64
//! (SLAAC, privacy addresses), so counting IPv6 by address would let it open connections
//! from as many addresses as it likes; the /64 is what it cannot leave. Peers inside
//! `trusted_proxies` are not counted per client: behind a CDN every connection comes from
//! the CDN, and the client it forwards for is only known from a header, per request.
//!
//! The bookkeeping is one map entry per client with a connection open, removed when its
//! count falls to 0, so it holds at most `max_connections` entries; it is touched once when
//! a connection is accepted and once when it closes, never per request.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

use super::client_ip::canonical;
use super::state::Limits;

/// The caps, and what is open under them.
#[derive(Debug)]
pub(crate) struct Admission {
    max_connections: usize,
    /// 0: no per-client cap.
    max_per_client: usize,
    trusted_proxies: Vec<IpNet>,
    open: AtomicUsize,
    /// Open connections by client; a client with none has no entry.
    clients: Mutex<HashMap<ClientKey, usize>>,
}

/// Why a connection was refused: the cap it was over, as the `reason` label of
/// `mailtrack_connections_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server has `max_connections` open.
    MaxConnections,
    /// This client has `max_connections_per_ip` open.
    MaxConnectionsPerIp,
}

impl Refused {
    /// The metric label: the config key of the cap.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

/// One connection's place under the caps, given back when it is dropped.
///
/// As small as the semaphore permit it replaced (16 bytes), since every open connection's
/// task holds one for its whole life.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    admission: Arc<Admission>,
    client: ClientKey,
}

/// A client as the per-client cap counts it, in 8 bytes: an IPv6 address's /64 prefix, or
/// an IPv4 address under the prefix `0:0:ffff::/48`, which is reserved (inside `::/8`) and is
/// never a real peer's /64. `UNCOUNTED` (in multicast space, never a TCP peer) marks a
/// connection not counted per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ClientKey(u64);

impl ClientKey {
    const UNCOUNTED: ClientKey = ClientKey(u64::MAX);
    const IPV4_PREFIX: u64 = 0xffff << 32;

    /// The client `ip` (already [`canonical`]) belongs to.
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(ClientKey::IPV4_PREFIX | u64::from(u32::from(v4))),
            IpAddr::V6(v6) => ClientKey((u128::from(v6) >> 64) as u64),
        }
    }
}

impl Admission {
    /// The caps in `limits`; peers inside `trusted_proxies` are not held to the per-client one.
    pub(crate) fn new(limits: &Limits, trusted_proxies: Vec<IpNet>) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections: limits.max_connections,
            max_per_client: limits.max_connections_per_ip,
            trusted_proxies,
            open: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a new connection from `peer`, or the cap it is over.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, Refused> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            })
            .map_err(|_| Refused::MaxConnections)?;
        // From here the slot gives the connection back when dropped, refused or not.
        let mut slot = ConnectionSlot {
            admission: Arc::clone(self),
            client: ClientKey::UNCOUNTED,
        };
        let peer = canonical(peer);
        if self.max_per_client == 0 || self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            return Ok(slot);
        }
        let client = ClientKey::of(peer);
        let mut clients = self.lock_clients();
        let open = clients.entry(client).or_insert(0);
        if *open >= self.max_per_client {
            return Err(Refused::MaxConnectionsPerIp);
        }
        *open += 1;
        slot.client = client;
        Ok(slot)
    }

    /// How many clients have a connection open (counted per client).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.lock_clients().len()
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        // Nothing panics while the lock is held; should something ever, the counts are
        // still whole numbers, and refusing every connection would be worse.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let admission = &self.admission;
        if self.client != ClientKey::UNCOUNTED {
            // One lookup for both the count and its removal.
            if let Entry::Occupied(mut open) = admission.lock_clients().entry(self.client) {
                *open.get_mut() -= 1;
                if *open.get() == 0 {
                    open.remove();
                }
            }
        }
        admission.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admission(max_connections: usize, per_client: usize, trusted: &[&str]) -> Arc<Admission> {
        let limits = Limits {
            max_connections,
            max_connections_per_ip: per_client,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(1),
        };
        let trusted = trusted.iter().map(|net| net.parse().unwrap()).collect();
        Admission::new(&limits, trusted)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_client_is_held_to_its_cap_and_gets_slots_back() {
        let caps = admission(100, 2, &[]);
        let first = caps.admit(ip("192.0.2.1")).unwrap();
        let second = caps.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::MaxConnectionsPerIp
        );
        let other = caps.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(caps.clients(), 2);
        drop(first);
        let again = caps.admit(ip("192.0.2.1")).unwrap();
        drop((second, again, other));
        assert_eq!(
            caps.clients(),
            0,
            "no entry is left for a client with none open"
        );
        assert_eq!(caps.open.load(Ordering::Acquire), 0);
    }

    #[test]
    fn ipv6_counts_by_64() {
        let caps = admission(100, 2, &[]);
        let _held = [
            caps.admit(ip("2001:db8:1:2::1")).unwrap(),
            caps.admit(ip("2001:db8:1:2:ffff::9")).unwrap(),
        ];
        assert!(caps.admit(ip("2001:db8:1:2::3")).is_err(), "same /64");
        assert!(caps.admit(ip("2001:db8:1:3::1")).is_ok(), "the next /64");
    }

    #[test]
    fn trusted_proxies_and_a_zero_cap_are_not_counted_per_client() {
        let caps = admission(100, 1, &["10.0.0.0/8"]);
        let proxied: Vec<_> = (0..5)
            .map(|_| caps.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(caps.clients(), 0);
        drop(proxied);
        let uncapped = admission(100, 0, &[]);
        let held: Vec<_> = (0..5)
            .map(|_| uncapped.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 5);
    }

    #[test]
    fn a_slot_costs_a_connection_no_more_than_the_permit_it_replaced() {
        // Every open connection's task holds one, for its whole life.
        assert_eq!(
            std::mem::size_of::<ConnectionSlot>(),
            std::mem::size_of::<tokio::sync::OwnedSemaphorePermit>()
        );
    }

    #[test]
    fn the_global_cap_comes_first_and_a_refusal_takes_no_place() {
        let caps = admission(2, 1, &[]);
        let _one = caps.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.1")).unwrap_err(),
            Refused::MaxConnectionsPerIp
        );
        let _two = caps.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.3")).unwrap_err(),
            Refused::MaxConnections
        );
        assert_eq!(caps.open.load(Ordering::Acquire), 2);
    }
}
