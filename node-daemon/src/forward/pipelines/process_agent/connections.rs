//! Connections as the process agent's `CollectorConnections` carries them, and the
//! tracker that gives each its age (for the short-lived filter) and its byte deltas
//! between messages.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use sts_proto::process_agent::v1 as pb;

use super::wire;
use crate::collect::network::Translation;
use crate::model::Connection;

/// What identifies a connection from one message to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnectionKey {
    pid: u32,
    create_time_ms: u64,
    netns: u64,
    udp: bool,
    local: SocketAddr,
    remote: SocketAddr,
}

impl ConnectionKey {
    fn of(c: &Connection) -> Self {
        Self {
            pid: c.pid,
            create_time_ms: c.process_create_time_ms,
            netns: c.netns,
            udp: c.protocol == "udp",
            local: c.local,
            remote: c.remote,
        }
    }
}

#[derive(Debug)]
struct Tracked {
    /// When it opened (eBPF knows) or, failing that, when the daemon first saw it.
    since_ms: u64,
    latest: Connection,
    /// The byte counters up to which the messages have counted, and when.
    counted: (u64, u64),
    counted_at_ms: u64,
    /// Seen since the last message.
    seen: bool,
}

/// What a connection did since the message before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Deltas {
    pub(crate) bytes_sent_delta: u64,
    pub(crate) bytes_received_delta: u64,
    pub(crate) seconds: f64,
}

/// What a message's connections were filtered by.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub reported: u64,
    pub(crate) short_lived: u64,
    /// Their process is not reported (short-lived or blacklisted).
    pub(crate) unreported_process: u64,
    /// Beyond the tracker's bound: counted, never reported.
    pub(crate) untracked: u64,
}

/// The connections seen between messages (closed ones too), at most `cap`.
pub(crate) struct ConnectionTracker {
    tracked: HashMap<ConnectionKey, Tracked, foldhash::fast::RandomState>,
    cap: usize,
}

impl ConnectionTracker {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            tracked: HashMap::default(),
            cap,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Takes one cycle's connections; returns how many did not fit.
    pub(crate) fn observe(&mut self, connections: &[Connection], now_ms: u64) -> u64 {
        let mut untracked = 0;
        for c in connections {
            let key = ConnectionKey::of(c);
            let counters = (c.bytes_sent.unwrap_or(0), c.bytes_received.unwrap_or(0));
            if let Some(t) = self.tracked.get_mut(&key) {
                refresh(&mut t.latest, c);
                t.seen = true;
                continue;
            }
            if self.tracked.len() >= self.cap {
                untracked += 1;
                continue;
            }
            // A connection the tracer saw open counts its bytes from zero; one that was
            // open before counts from here.
            let (since_ms, counted) = match c.start_time_ms {
                Some(start) => (start.min(now_ms), (0, 0)),
                None => (now_ms, counters),
            };
            self.tracked.insert(
                key,
                Tracked {
                    since_ms,
                    latest: c.clone(),
                    counted,
                    counted_at_ms: since_ms,
                    seen: true,
                },
            );
        }
        untracked
    }

    /// The connections of a message at `now_ms`, each made by `build`: seen since the last
    /// one, open for at least `min_age_ms`, and of a reported process. Forgets the closed
    /// and the vanished.
    pub(crate) fn take<T>(
        &mut self,
        now_ms: u64,
        min_age_ms: u64,
        reported: impl Fn(u32, u64) -> bool,
        counts: &mut ConnectionCounts,
        mut build: impl FnMut(&Connection, Deltas) -> T,
    ) -> Vec<T> {
        let mut out = Vec::new();
        self.tracked.retain(|_, t| {
            if !t.seen {
                return false;
            }
            t.seen = false;
            let c = &t.latest;
            if now_ms.saturating_sub(t.since_ms) < min_age_ms {
                counts.short_lived += 1;
                return !c.closed;
            }
            if !reported(c.pid, c.process_create_time_ms) {
                counts.unreported_process += 1;
                return !c.closed;
            }
            let now = (c.bytes_sent.unwrap_or(0), c.bytes_received.unwrap_or(0));
            counts.reported += 1;
            let deltas = Deltas {
                bytes_sent_delta: now.0.saturating_sub(t.counted.0),
                bytes_received_delta: now.1.saturating_sub(t.counted.1),
                seconds: now_ms.saturating_sub(t.counted_at_ms) as f64 / 1000.0,
            };
            out.push(build(c, deltas));
            t.counted = now;
            t.counted_at_ms = now_ms;
            !c.closed
        });
        out
    }
}

/// What may change in a connection between cycles (the rest is its key or fixed).
fn refresh(latest: &mut Connection, now: &Connection) {
    latest.direction = now.direction;
    latest.side = now.side;
    latest.state = now.state;
    latest.bytes_sent = now.bytes_sent;
    latest.bytes_received = now.bytes_received;
    latest.bytes_sent_per_sec = now.bytes_sent_per_sec;
    latest.bytes_received_per_sec = now.bytes_received_per_sec;
    latest.retransmits = now.retransmits;
    latest.rtt_us = now.rtt_us;
    latest.tx_queue = now.tx_queue;
    latest.rx_queue = now.rx_queue;
    latest.start_time_ms = now.start_time_ms;
    latest.closed = now.closed;
    if latest.container_id != now.container_id {
        latest.container_id.clone_from(&now.container_id);
    }
}

/// How a connection is written: the host and the cluster it is named in, and the NAT.
pub(crate) struct Naming<'a> {
    pub(crate) hostname: &'a str,
    pub(crate) cluster: Option<&'a str>,
    pub(crate) translations:
        HashMap<(SocketAddr, SocketAddr), &'a Translation, foldhash::fast::RandomState>,
}

impl<'a> Naming<'a> {
    pub(crate) fn new(
        hostname: &'a str,
        cluster: Option<&'a str>,
        translations: &'a [Translation],
    ) -> Self {
        Self {
            hostname,
            cluster,
            translations: translations
                .iter()
                .map(|t| ((t.client_local, t.client_remote), t))
                .collect(),
        }
    }

    /// `[<cluster>:]`, then `<host>:<netns>` only when both ends are loopback: loopback
    /// ends on different hosts or in different namespaces must never pair.
    fn write_namespace(&self, buf: &mut Vec<u8>, c: &Connection) {
        if let Some(cluster) = self.cluster {
            buf.extend_from_slice(cluster.as_bytes());
        }
        if is_loopback(c.local.ip()) && is_loopback(c.remote.ip()) {
            if self.cluster.is_some() {
                buf.push(b':');
            }
            buf.extend_from_slice(self.hostname.as_bytes());
            buf.push(b':');
            wire::decimal(buf, c.netns);
        }
    }

    /// Appends `c` as a protobuf `Connection` (the message's fields, no tag or length).
    pub(crate) fn encode(&self, buf: &mut Vec<u8>, c: &Connection, r: Deltas) {
        let direction = direction(c);
        let per_second = |delta: u64, fallback: Option<f64>| {
            if r.seconds > 0.0 {
                delta as f64 / r.seconds
            } else {
                fallback.unwrap_or(0.0)
            }
        };
        let nat = if self.translations.is_empty() {
            None
        } else {
            self.translations.get(&(c.local, c.remote))
        };
        wire::int(buf, 1, i64::from(c.pid as i32));
        addr(buf, 5, c.local);
        addr(buf, 6, c.remote);
        let sent = per_second(r.bytes_sent_delta, c.bytes_sent_per_sec);
        wire::float(buf, 8, sent as f32);
        let received = per_second(r.bytes_received_delta, c.bytes_received_per_sec);
        wire::float(buf, 9, received as f32);
        let family = if c.ip_version == 6 {
            pb::ConnectionFamily::V6
        } else {
            pb::ConnectionFamily::V4
        };
        wire::int(buf, 10, family as i64);
        let kind = if c.protocol == "udp" {
            pb::ConnectionType::Udp
        } else {
            pb::ConnectionType::Tcp
        };
        wire::int(buf, 11, kind as i64);
        wire::int(buf, 12, c.process_create_time_ms as i64);
        wire::message(buf, 50, |buf| self.write_namespace(buf, c));
        wire::int(buf, 51, direction as i64);
        wire::message(buf, 52, |buf| self.write_identifier(buf, direction, c));
        metric(buf, "bytes_sent_delta", r.bytes_sent_delta);
        metric(buf, "bytes_received_delta", r.bytes_received_delta);
        if let Some(t) = nat {
            addr(buf, 55, t.server_remote);
            addr(buf, 56, t.server_local);
        }
        wire::int(buf, 58, i64::from(c.netns as u32));
    }

    /// `<out|in|none>:<namespace>:` and the addresses that name the relation: a client's
    /// own port is left out (each new connection takes another), as is a server's peer
    /// port.
    fn write_identifier(
        &self,
        buf: &mut Vec<u8>,
        direction: pb::ConnectionDirection,
        c: &Connection,
    ) {
        use pb::ConnectionDirection as D;
        let prefix: &[u8] = match direction {
            D::Outgoing => b"out:",
            D::Incoming => b"in:",
            D::None => b"none:",
        };
        buf.extend_from_slice(prefix);
        self.write_namespace(buf, c);
        let (l, r) = (c.local, c.remote);
        let port = |buf: &mut Vec<u8>, p: u16| {
            buf.push(b':');
            wire::decimal(buf, u64::from(p));
        };
        buf.push(b':');
        wire::ip(buf, l.ip());
        if direction != D::Outgoing {
            port(buf, l.port());
        }
        buf.push(b':');
        wire::ip(buf, r.ip());
        if direction != D::Incoming {
            port(buf, r.port());
        }
    }
}

/// Clients' ends go out, servers' ends come in; a remote on this host is decided by the
/// side (who opened it).
fn direction(c: &Connection) -> pb::ConnectionDirection {
    use pb::ConnectionDirection as D;
    match (c.direction, c.side) {
        (_, Some("client")) | ("outgoing", None) => D::Outgoing,
        (_, Some("server")) | ("incoming", None) => D::Incoming,
        _ => D::None,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// An `Addr` {ip 2, port 3} as field `tag`.
fn addr(buf: &mut Vec<u8>, tag: u32, a: SocketAddr) {
    wire::message(buf, tag, |buf| {
        wire::message(buf, 2, |buf| wire::ip(buf, a.ip()));
        wire::int(buf, 3, i64::from(a.port()));
    });
}

/// A `ConnectionMetric` {name 1, value 3 {number 2}} (field 54); the number is written
/// even when 0, as a set oneof is.
fn metric(buf: &mut Vec<u8>, name: &str, value: u64) {
    wire::message(buf, 54, |buf| {
        wire::string(buf, 1, name);
        wire::message(buf, 3, |buf| wire::double_always(buf, 2, value as f64));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(local: &str, remote: &str, side: &'static str, sent: u64) -> Connection {
        Connection {
            pid: 10,
            process_create_time_ms: 1_000,
            container_id: None,
            netns: 4_026_531_840,
            protocol: "tcp",
            ip_version: 4,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            direction: "local",
            side: Some(side),
            state: "established",
            bytes_sent: Some(sent),
            bytes_received: Some(sent / 2),
            bytes_sent_per_sec: None,
            bytes_received_per_sec: None,
            retransmits: None,
            rtt_us: None,
            tx_queue: 0,
            rx_queue: 0,
            inode: 1,
            start_time_ms: None,
            closed: false,
        }
    }

    /// What a receiver reads of the encoding.
    fn decoded(naming: &Naming, c: &Connection, r: Deltas) -> pb::Connection {
        use prost::Message;
        let mut buf = Vec::new();
        naming.encode(&mut buf, c, r);
        pb::Connection::decode(buf.as_slice()).expect("a Connection")
    }

    const NONE: Deltas = Deltas {
        bytes_sent_delta: 0,
        bytes_received_delta: 0,
        seconds: 0.0,
    };

    #[test]
    fn loopback_ends_are_named_by_host_and_namespace_others_by_cluster_only() {
        let naming = Naming::new("ip-10-0-1-5", Some("prod"), &[]);
        let lo = connection("127.0.0.1:40000", "127.0.0.1:5432", "client", 0);
        let pb = decoded(&naming, &lo, NONE);
        assert_eq!(pb.namespace, "prod:ip-10-0-1-5:4026531840");
        assert_eq!(
            pb.connection_identifier,
            "out:prod:ip-10-0-1-5:4026531840:127.0.0.1:127.0.0.1:5432"
        );
        let out = connection("10.0.1.5:40000", "10.0.2.9:5432", "client", 0);
        assert_eq!(decoded(&naming, &out, NONE).namespace, "prod");
        let bare = Naming::new("h", None, &[]);
        assert_eq!(decoded(&bare, &out, NONE).namespace, "");
        assert_eq!(decoded(&bare, &lo, NONE).namespace, "h:4026531840");
        let r = Deltas {
            bytes_sent_delta: 300,
            bytes_received_delta: 150,
            seconds: 30.0,
        };
        let pb = decoded(&naming, &out, r);
        assert_eq!(pb.pid, 10);
        assert_eq!(pb.pid_create_time, 1_000);
        assert_eq!(pb.laddr.as_ref().unwrap().ip, "10.0.1.5");
        assert_eq!(pb.laddr.as_ref().unwrap().port, 40_000);
        assert_eq!(pb.family, pb::ConnectionFamily::V4 as i32);
        assert_eq!(pb.r#type, pb::ConnectionType::Tcp as i32);
        assert_eq!(
            pb.metrics[1].value.as_ref().unwrap().value,
            Some(pb::connection_metric_value::Value::Number(150.0))
        );
        assert_eq!(pb.direction, pb::ConnectionDirection::Outgoing as i32);
        assert_eq!(pb.connection_identifier, "out:prod:10.0.1.5:10.0.2.9:5432");
        assert_eq!(pb.bytes_sent_per_second, 10.0);
        assert_eq!(pb.metrics[0].name, "bytes_sent_delta");
        assert_eq!(pb.net_ns, 4_026_531_840);
        let server = connection("10.0.2.9:5432", "10.0.1.5:40000", "server", 0);
        let pb = decoded(&naming, &server, r);
        assert_eq!(pb.direction, pb::ConnectionDirection::Incoming as i32);
        assert_eq!(pb.connection_identifier, "in:prod:10.0.2.9:5432:10.0.1.5");
    }

    #[test]
    fn nat_addresses_come_from_conntrack() {
        let t = Translation {
            client_local: "172.17.0.1:40000".parse().unwrap(),
            client_remote: "10.0.1.5:8080".parse().unwrap(),
            server_local: "172.17.0.2:80".parse().unwrap(),
            server_remote: "172.17.0.1:40000".parse().unwrap(),
        };
        let naming = Naming::new("h", None, std::slice::from_ref(&t));
        let c = connection("172.17.0.1:40000", "10.0.1.5:8080", "client", 0);
        let pb = decoded(&naming, &c, NONE);
        assert_eq!(pb.natraddr.unwrap().ip, "172.17.0.2");
        assert_eq!(pb.natladdr.unwrap().port, 40_000);
        // A delta of 0 is still a number.
        assert_eq!(
            pb.metrics[0].value.as_ref().unwrap().value,
            Some(pb::connection_metric_value::Value::Number(0.0))
        );
        assert_eq!(pb.raddr.unwrap().port, 8080);
    }

    #[test]
    fn young_connections_wait_and_deltas_count_between_messages() {
        let mut tracker = ConnectionTracker::new(10);
        let mut c = connection("10.0.0.1:1", "10.0.0.2:2", "client", 1_000);
        tracker.observe(std::slice::from_ref(&c), 0);
        let mut counts = ConnectionCounts::default();
        assert!(tracker
            .take(30_000, 60_000, |_, _| true, &mut counts, |_, d| d)
            .is_empty());
        assert_eq!(counts.short_lived, 1);
        c.bytes_sent = Some(4_000);
        tracker.observe(std::slice::from_ref(&c), 60_000);
        let sent = tracker.take(60_000, 60_000, |_, _| true, &mut counts, |_, d| d);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].bytes_sent_delta, 3_000, "since first seen");
        c.bytes_sent = Some(4_500);
        c.closed = true;
        tracker.observe(std::slice::from_ref(&c), 90_000);
        let sent = tracker.take(90_000, 60_000, |_, _| true, &mut counts, |_, d| d);
        assert_eq!((sent[0].bytes_sent_delta, sent[0].seconds), (500, 30.0));
        assert_eq!(tracker.len(), 0, "a closed connection is reported once");
    }

    #[test]
    fn unreported_processes_and_the_bound_are_counted() {
        let mut tracker = ConnectionTracker::new(1);
        let a = connection("10.0.0.1:1", "10.0.0.2:2", "client", 0);
        let b = connection("10.0.0.1:3", "10.0.0.2:2", "client", 0);
        assert_eq!(tracker.observe(&[a, b], 0), 1);
        let mut counts = ConnectionCounts::default();
        assert!(tracker
            .take(60_000, 60_000, |_, _| false, &mut counts, |_, d| d)
            .is_empty());
        assert_eq!(counts.unreported_process, 1);
        tracker.observe(&[], 70_000);
        tracker.take(90_000, 60_000, |_, _| true, &mut counts, |_, d| d);
        assert_eq!(tracker.len(), 0, "not seen since the last message: gone");
    }
}
