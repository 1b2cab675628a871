//! Direction of a connection, from what the whole host shows in one cycle.
//!
//! - `local`: the remote address is on this host: loopback, or an address some namespace
//!   of this host has a socket on (a container, a veth peer, the host's own interfaces).
//! - `incoming`: the local port is a TCP listening port of the socket's namespace.
//! - `outgoing`: any other TCP connection, and UDP with a peer.
//! - `none`: UDP without a peer.
//!
//! `side` keeps who opened a TCP connection when the direction is `local`: `server` when
//! the local port is listening, or, with no listener left (a server that accepted one
//! client and closed its listening socket), when the local port is outside the ephemeral
//! range and the remote port inside it; `client` otherwise. Pairing draws relations
//! client->server.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use super::proc_net::TCP_LISTEN;
use super::socket::{Protocol, Socket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Outgoing,
    Incoming,
    Local,
    None,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
            Direction::Local => "local",
            Direction::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Linux's default `net.ipv4.ip_local_port_range`.
pub(crate) const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32768..=60999;

/// The host's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`).
pub(crate) fn ephemeral_ports() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut f = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some(f.next()??..=f.next()??)
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// Listening ports per namespace and every address of the host.
#[derive(Debug)]
pub(crate) struct Topology {
    listeners: HashMap<u64, Vec<SocketAddr>>,
    host_ips: HashSet<IpAddr>,
    ephemeral: RangeInclusive<u16>,
}

impl Topology {
    pub(crate) fn new(sockets: &[Socket], ephemeral: RangeInclusive<u16>) -> Self {
        let mut t = Self {
            listeners: HashMap::new(),
            host_ips: HashSet::new(),
            ephemeral,
        };
        for s in sockets {
            if s.protocol == Protocol::Tcp && s.state == TCP_LISTEN {
                t.listeners.entry(s.netns).or_default().push(s.local);
            }
            if !s.local.ip().is_unspecified() {
                t.host_ips.insert(s.local.ip());
            }
        }
        t
    }

    pub(crate) fn listening(&self, netns: u64, local: SocketAddr) -> bool {
        self.listeners.get(&netns).is_some_and(|ls| {
            ls.iter().any(|l| {
                l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip())
            })
        })
    }

    pub(crate) fn on_host(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.host_ips.contains(&ip)
    }

    pub(crate) fn classify(&self, s: &Socket) -> (Direction, Option<Side>) {
        let peerless = s.remote.port() == 0 && s.remote.ip().is_unspecified();
        match s.protocol {
            Protocol::Udp if peerless => (Direction::None, None),
            Protocol::Udp if self.on_host(s.remote.ip()) => (Direction::Local, None),
            Protocol::Udp => (Direction::Outgoing, None),
            Protocol::Tcp => {
                let accepted = !self.ephemeral.contains(&s.local.port())
                    && self.ephemeral.contains(&s.remote.port());
                let side = if accepted || self.listening(s.netns, s.local) {
                    Side::Server
                } else {
                    Side::Client
                };
                let direction = if self.on_host(s.remote.ip()) {
                    Direction::Local
                } else if side == Side::Server {
                    Direction::Incoming
                } else {
                    Direction::Outgoing
                };
                (direction, Some(side))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(netns: u64, protocol: Protocol, local: &str, remote: &str, state: u8) -> Socket {
        Socket {
            netns,
            protocol,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
            inode: 1,
            tx_queue: 0,
            rx_queue: 0,
            owner: None,
            counters: None,
            start_time_ms: None,
        }
    }

    #[test]
    fn directions() {
        use Protocol::{Tcp, Udp};
        let sockets = vec![
            sock(1, Tcp, "0.0.0.0:80", "0.0.0.0:0", TCP_LISTEN),
            sock(1, Tcp, "[::]:443", "[::]:0", TCP_LISTEN),
            sock(2, Tcp, "10.0.0.2:5432", "0.0.0.0:0", TCP_LISTEN),
            // host: served to an outside client, and dialling out.
            sock(1, Tcp, "192.168.1.5:80", "203.0.113.9:50000", 1),
            sock(1, Tcp, "192.168.1.5:40000", "198.51.100.1:443", 1),
            // v4 through the dual-stack listener.
            sock(1, Tcp, "192.168.1.5:443", "203.0.113.9:50001", 1),
            // container 2 is called by host namespace 1 over its address.
            sock(2, Tcp, "10.0.0.2:5432", "10.0.0.1:41000", 1),
            sock(1, Tcp, "10.0.0.1:41000", "10.0.0.2:5432", 1),
            // loopback on both sides.
            sock(1, Tcp, "127.0.0.1:80", "127.0.0.1:42000", 1),
            sock(1, Tcp, "127.0.0.1:42000", "127.0.0.1:80", 1),
            // a listener on one address does not make another address's port listening.
            sock(2, Tcp, "172.17.0.2:5432", "198.51.100.7:5432", 1),
            sock(1, Udp, "0.0.0.0:68", "0.0.0.0:0", 7),
            sock(1, Udp, "192.168.1.5:50001", "8.8.8.8:53", 1),
            sock(1, Udp, "127.0.0.1:50002", "127.0.0.53:53", 1),
            // The listener is gone, but 5000 is not ephemeral and 44638 is.
            sock(3, Tcp, "172.17.0.2:5000", "172.17.0.3:44638", 1),
            sock(4, Tcp, "172.17.0.3:44638", "172.17.0.2:5000", 1),
        ];
        let t = Topology::new(&sockets, DEFAULT_EPHEMERAL);
        let got: Vec<(&str, Option<&str>)> = sockets[3..]
            .iter()
            .map(|s| {
                let (d, side) = t.classify(s);
                (d.as_str(), side.map(Side::as_str))
            })
            .collect();
        assert_eq!(
            got,
            [
                ("incoming", Some("server")),
                ("outgoing", Some("client")),
                ("incoming", Some("server")),
                ("local", Some("server")),
                ("local", Some("client")),
                ("local", Some("server")),
                ("local", Some("client")),
                ("outgoing", Some("client")),
                ("none", None),
                ("outgoing", None),
                ("local", None),
                ("local", Some("server")),
                ("local", Some("client")),
            ]
        );
    }
}
