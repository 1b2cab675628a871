//! Both ends of same-host TCP connections, paired by address: the local `ip:port` of one end
//! is the remote of the other. Loopback ends must share their network namespace (every
//! namespace has its own 127.0.0.1); other addresses pair across namespaces (containers,
//! veth peers). Each pair becomes a `connects-to` relation from the client's process to
//! the server's (and from container to container when they differ), with the traffic of all
//! the pair's connections seen from the client.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::model::{Connection, Container, Process, Relation, Traffic};

pub const CONNECTS_TO: &str = "connects-to";

/// Index pairs (client, server) of the TCP connections whose both ends were seen.
pub fn pair(connections: &[Connection]) -> Vec<(usize, usize)> {
    let mut by_ends: HashMap<(SocketAddr, SocketAddr), Vec<usize>> = HashMap::new();
    for (i, c) in connections.iter().enumerate() {
        if c.protocol == "tcp" {
            by_ends.entry((c.local, c.remote)).or_default().push(i);
        }
    }
    let mut pairs = Vec::new();
    for (i, c) in connections.iter().enumerate() {
        if c.protocol != "tcp" || c.side == Some("server") {
            continue;
        }
        let Some(peers) = by_ends.get(&(c.remote, c.local)) else {
            continue;
        };
        let peer = peers.iter().copied().find(|&j| {
            let p = &connections[j];
            j != i
                && (!c.remote.ip().is_loopback() || p.netns == c.netns)
                // Two clients (the listener is gone): take the pair once.
                && (p.side == Some("server") || i < j)
        });
        if let Some(j) = peer {
            pairs.push((i, j));
        }
    }
    pairs
}

/// `connects-to` relations with their traffic, between reported processes and known
/// containers.
pub fn connects_to(
    connections: &[Connection],
    processes: &[Process],
    containers: &[Container],
) -> Vec<Relation> {
    let process_urns: HashMap<(u32, u64), &str> = processes
        .iter()
        .map(|p| ((p.pid, p.create_time_ms), p.urn.as_str()))
        .collect();
    let container_urns: HashMap<&str, &str> = containers
        .iter()
        .map(|c| (c.id.as_str(), c.urn.as_str()))
        .collect();
    let mut traffic: BTreeMap<(&str, &str), Traffic> = BTreeMap::new();
    for (i, j) in pair(connections) {
        let (client, server) = (&connections[i], &connections[j]);
        let urn = |c: &Connection| {
            process_urns
                .get(&(c.pid, c.process_create_time_ms))
                .copied()
        };
        if let (Some(from), Some(to)) = (urn(client), urn(server)) {
            if from != to {
                add(traffic.entry((from, to)).or_default(), client, server);
            }
        }
        let container = |c: &Connection| {
            c.container_id
                .as_deref()
                .and_then(|id| container_urns.get(id).copied())
        };
        if let (Some(from), Some(to)) = (container(client), container(server)) {
            if from != to {
                add(traffic.entry((from, to)).or_default(), client, server);
            }
        }
    }
    traffic
        .into_iter()
        .map(|((source, target), traffic)| Relation {
            kind: CONNECTS_TO,
            source: source.to_string(),
            target: target.to_string(),
            traffic: Some(traffic),
        })
        .collect()
}

/// Adds one connection, from the client's counters (or the server's, mirrored).
fn add(t: &mut Traffic, client: &Connection, server: &Connection) {
    t.connections += 1;
    let (sent, received, sent_rate, received_rate) = if client.bytes_sent.is_some() {
        (
            client.bytes_sent,
            client.bytes_received,
            client.bytes_sent_per_sec,
            client.bytes_received_per_sec,
        )
    } else {
        (
            server.bytes_received,
            server.bytes_sent,
            server.bytes_received_per_sec,
            server.bytes_sent_per_sec,
        )
    };
    sum(&mut t.bytes_sent, sent);
    sum(&mut t.bytes_received, received);
    sum(&mut t.bytes_sent_per_sec, sent_rate);
    sum(&mut t.bytes_received_per_sec, received_rate);
}

fn sum<T: std::ops::AddAssign + Copy>(total: &mut Option<T>, value: Option<T>) {
    if let Some(v) = value {
        match total {
            Some(t) => *t += v,
            None => *total = Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::process_urn;

    fn conn(pid: u32, netns: u64, local: &str, remote: &str, side: &str) -> Connection {
        Connection {
            pid,
            process_create_time_ms: 1,
            container_id: None,
            netns,
            protocol: "tcp",
            ip_version: 4,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            direction: "local",
            side: Some(if side == "c" { "client" } else { "server" }),
            state: "established",
            bytes_sent: Some(u64::from(pid) * 100),
            bytes_received: Some(u64::from(pid)),
            bytes_sent_per_sec: None,
            bytes_received_per_sec: None,
            retransmits: Some(0),
            rtt_us: Some(10),
            tx_queue: 0,
            rx_queue: 0,
            inode: u64::from(pid),
            start_time_ms: None,
            closed: false,
        }
    }

    fn process(pid: u32, container: Option<&str>) -> Process {
        Process {
            pid,
            ppid: 1,
            create_time_ms: 1,
            urn: process_urn("h", pid, 1),
            name: format!("p{pid}"),
            exe: None,
            cmdline: vec![],
            user: "root".into(),
            cpu_pct: None,
            cpu_user_seconds: 0.0,
            cpu_system_seconds: 0.0,
            rss_bytes: 0,
            vms_bytes: 0,
            read_bytes: None,
            write_bytes: None,
            threads: 1,
            open_fds: None,
            container_id: container.map(String::from),
            ecs_task_arn: None,
            readmitted: false,
        }
    }

    #[test]
    fn pairs_loopback_within_a_namespace_and_addresses_across() {
        let cs = vec![
            conn(1, 10, "127.0.0.1:80", "127.0.0.1:40000", "s"),
            conn(2, 10, "127.0.0.1:40000", "127.0.0.1:80", "c"),
            // The same loopback tuple in another namespace is another connection.
            conn(3, 20, "127.0.0.1:40000", "127.0.0.1:80", "c"),
            // Across namespaces over a veth pair.
            conn(4, 30, "10.9.0.1:41000", "10.9.0.2:5432", "c"),
            conn(5, 40, "10.9.0.2:5432", "10.9.0.1:41000", "s"),
            // The peer is elsewhere.
            conn(6, 10, "10.0.0.5:42000", "198.51.100.1:443", "c"),
        ];
        assert_eq!(pair(&cs), [(1, 0), (3, 4)]);
    }

    #[test]
    fn two_clients_pair_once() {
        let cs = vec![
            conn(1, 10, "127.0.0.1:80", "127.0.0.1:40000", "c"),
            conn(2, 10, "127.0.0.1:40000", "127.0.0.1:80", "c"),
        ];
        assert_eq!(pair(&cs), [(0, 1)]);
    }

    #[test]
    fn relations_with_traffic_for_processes_and_containers() {
        let mut cs = vec![
            conn(1, 10, "172.17.0.3:80", "172.17.0.2:40000", "s"),
            conn(2, 20, "172.17.0.2:40000", "172.17.0.3:80", "c"),
            conn(1, 10, "172.17.0.3:80", "172.17.0.2:40001", "s"),
            conn(2, 20, "172.17.0.2:40001", "172.17.0.3:80", "c"),
        ];
        cs[0].container_id = Some("b".into());
        cs[2].container_id = Some("b".into());
        cs[1].container_id = Some("a".into());
        cs[3].container_id = Some("a".into());
        cs[3].bytes_sent = None;
        let processes = vec![process(1, Some("b")), process(2, Some("a"))];
        let containers = vec![container("a"), container("b")];
        let rels = connects_to(&cs, &processes, &containers);
        assert_eq!(rels.len(), 2, "{rels:?}");
        let p = rels
            .iter()
            .find(|r| r.source.starts_with("urn:process:"))
            .unwrap();
        assert_eq!(
            (p.source.as_str(), p.target.as_str(), p.kind),
            ("urn:process:/h:2:1", "urn:process:/h:1:1", CONNECTS_TO)
        );
        let t = p.traffic.as_ref().unwrap();
        // 200/2 from the first client end; the second client end has no counters, so
        // its server end's 1/100 count, mirrored.
        assert_eq!(
            (t.connections, t.bytes_sent, t.bytes_received),
            (2, Some(201), Some(102))
        );
        let c = rels
            .iter()
            .find(|r| r.source.starts_with("urn:container:"))
            .unwrap();
        assert_eq!(
            (c.source.as_str(), c.target.as_str()),
            ("urn:container:/h:a", "urn:container:/h:b")
        );
    }

    fn container(id: &str) -> Container {
        Container {
            id: id.to_string(),
            urn: crate::model::container_urn("h", id),
            name: id.to_string(),
            image: String::new(),
            image_id: String::new(),
            state: "running".into(),
            created: String::new(),
            started_at: None,
            labels: Default::default(),
            pid: None,
            network_mode: "bridge".into(),
            ip_addresses: vec![],
            ports: vec![],
            restart_count: 0,
            ecs: None,
            role: None,
            telemetry: None,
        }
    }
}
