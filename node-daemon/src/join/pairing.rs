//! Both ends of same-host TCP connections, paired by address: the local `ip:port` of one end
//! is the remote of the other. Loopback ends must share their network namespace (every
//! namespace has its own 127.0.0.1); other addresses pair across namespaces (containers,
//! veth peers). Each pair becomes a `connects-to` relation from the client's process to
//! the server's (and from container to container when they differ), with the traffic of all
//! the pair's connections seen from the client.
//!
//! Docker's published ports add a leg: with destination NAT the client's remote address is
//! rewritten (conntrack says into what), and through Docker's userland proxy the client
//! talks to `docker-proxy`, which opens its own connection to the container. Both are
//! stitched so the real client is linked to the real server.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::collect::network::Translation;
use crate::model::{Connection, Container, Process, Relation, Traffic};

/// The process name of Docker's userland proxy.
const DOCKER_PROXY: &str = "docker-proxy";

pub const CONNECTS_TO: &str = "connects-to";

/// Index pairs (client, server) of the TCP connections whose both ends were seen, directly
/// or through a destination NAT `translations` knows.
pub fn pair(connections: &[Connection], translations: &[Translation]) -> Vec<(usize, usize)> {
    let mut by_ends: HashMap<(SocketAddr, SocketAddr), Vec<usize>> = HashMap::new();
    for (i, c) in connections.iter().enumerate() {
        if c.protocol == "tcp" {
            by_ends.entry((c.local, c.remote)).or_default().push(i);
        }
    }
    // The client's (local, remote) -> the server's (local, remote).
    let nat: HashMap<(SocketAddr, SocketAddr), (SocketAddr, SocketAddr)> = translations
        .iter()
        .map(|t| {
            let server = (t.server_local, t.server_remote);
            ((t.client_local, t.client_remote), server)
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, c) in connections.iter().enumerate() {
        if c.protocol != "tcp" || c.side == Some("server") {
            continue;
        }
        let (peers, translated) = match by_ends.get(&(c.remote, c.local)) {
            Some(peers) => (peers, false),
            None => match nat.get(&(c.local, c.remote)).and_then(|s| by_ends.get(s)) {
                Some(peers) => (peers, true),
                None => continue,
            },
        };
        let peer = peers.iter().copied().find(|&j| {
            let p = &connections[j];
            j != i
                && (translated || !c.remote.ip().is_loopback() || p.netns == c.netns)
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
    translations: &[Translation],
    processes: &[Process],
    containers: &[Container],
) -> Vec<Relation> {
    let process_urns: HashMap<(u32, u64), &str> = processes
        .iter()
        .map(|p| ((p.pid, p.create_time_ms), p.urn.as_str()))
        .collect();
    let container_urns: HashMap<&str, &str> = containers
        .iter()
        .map(|c| (c.info.id.as_str(), c.urn.as_str()))
        .collect();
    let process = |c: &Connection| {
        process_urns
            .get(&(c.pid, c.process_create_time_ms))
            .copied()
    };
    let container = |c: &Connection| {
        c.container_id
            .as_deref()
            .and_then(|id| container_urns.get(id).copied())
    };
    let mut traffic: BTreeMap<(&str, &str), Traffic> = BTreeMap::new();
    let mut link = |client: &Connection, server: &Connection| {
        for (from, to) in [
            (process(client), process(server)),
            (container(client), container(server)),
        ] {
            if let (Some(from), Some(to)) = (from, to) {
                if from != to {
                    add(traffic.entry((from, to)).or_default(), client, server);
                }
            }
        }
    };
    let pairs = pair(connections, translations);
    for &(i, j) in &pairs {
        link(&connections[i], &connections[j]);
    }
    for (client, server) in through_docker_proxy(connections, &pairs, processes) {
        link(&connections[client], &connections[server]);
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

/// (client, server) of the connections that Docker's userland proxy joins: each client of
/// a proxy's published port with each server the proxy forwards that port to.
fn through_docker_proxy(
    connections: &[Connection],
    pairs: &[(usize, usize)],
    processes: &[Process],
) -> Vec<(usize, usize)> {
    // pid -> the container address the proxy forwards to.
    let proxies: HashMap<u32, SocketAddr> = processes
        .iter()
        .filter(|p| p.name == DOCKER_PROXY)
        .filter_map(|p| Some((p.pid, proxy_target(&p.cmdline)?)))
        .collect();
    if proxies.is_empty() {
        return Vec::new();
    }
    let mut front: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let mut back: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for &(i, j) in pairs {
        let (client, server) = (&connections[i], &connections[j]);
        if proxies.contains_key(&server.pid) {
            front.entry(server.pid).or_default().insert(i);
        }
        if proxies.get(&client.pid) == Some(&client.remote) {
            back.entry(client.pid).or_default().insert(j);
        }
    }
    // One connection per client and server process behind the proxy, not one per leg.
    let mut stitched = Vec::new();
    for (pid, clients) in &front {
        let Some(servers) = back.get(pid) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for &j in servers {
            let server = &connections[j];
            if seen.insert((server.pid, server.process_create_time_ms)) {
                stitched.extend(clients.iter().map(|&i| (i, j)));
            }
        }
    }
    stitched
}

/// `-container-ip 172.17.0.2 -container-port 80` of a docker-proxy command line.
fn proxy_target(cmdline: &[String]) -> Option<SocketAddr> {
    let value = |flag: &str| {
        let at = cmdline.iter().position(|a| a == flag)?;
        cmdline.get(at + 1)
    };
    let ip = value("-container-ip")?.parse().ok()?;
    let port = value("-container-port")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
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
    use crate::model::fixtures::process;
    use crate::model::{process_urn, ContainerInfo};

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
        assert_eq!(pair(&cs, &[]), [(1, 0), (3, 4)]);
    }

    #[test]
    fn two_clients_pair_once() {
        let cs = vec![
            conn(1, 10, "127.0.0.1:80", "127.0.0.1:40000", "c"),
            conn(2, 10, "127.0.0.1:40000", "127.0.0.1:80", "c"),
        ];
        assert_eq!(pair(&cs, &[]), [(0, 1)]);
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
        let rels = connects_to(&cs, &[], &processes, &containers);
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
            urn: crate::model::container_urn("h", id),
            info: ContainerInfo {
                id: id.to_string(),
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
            },
            telemetry: None,
        }
    }

    #[test]
    fn a_published_port_pairs_through_its_nat_entry() {
        // Host process 1 connects to the host's 10.0.0.5:8080, which DNAT sends to the
        // container's 172.17.0.2:80 (process 2, another namespace).
        let cs = vec![
            conn(1, 10, "10.0.0.5:40000", "10.0.0.5:8080", "c"),
            conn(2, 20, "172.17.0.2:80", "10.0.0.5:40000", "s"),
        ];
        assert!(pair(&cs, &[]).is_empty(), "nothing listens on 8080");
        let nat = Translation {
            client_local: "10.0.0.5:40000".parse().unwrap(),
            client_remote: "10.0.0.5:8080".parse().unwrap(),
            server_local: "172.17.0.2:80".parse().unwrap(),
            server_remote: "10.0.0.5:40000".parse().unwrap(),
        };
        assert_eq!(pair(&cs, &[nat]), [(0, 1)]);
        let processes = vec![process(1, None), process(2, None)];
        let rels = connects_to(&cs, &[nat], &processes, &[]);
        assert_eq!(rels.len(), 1);
        assert_eq!(rels[0].source, process_urn("h", 1, 1));
        assert_eq!(rels[0].target, process_urn("h", 2, 1));
    }

    #[test]
    fn docker_proxy_legs_are_stitched() {
        // Client 1 -> docker-proxy 7 on 127.0.0.1:18080; proxy -> container server 2.
        let cs = vec![
            conn(1, 10, "127.0.0.1:40000", "127.0.0.1:18080", "c"),
            conn(7, 10, "127.0.0.1:18080", "127.0.0.1:40000", "s"),
            conn(7, 10, "172.17.0.1:50000", "172.17.0.2:5000", "c"),
            conn(2, 20, "172.17.0.2:5000", "172.17.0.1:50000", "s"),
        ];
        let mut proxy = process(7, None);
        proxy.name = "docker-proxy".into();
        proxy.cmdline = "/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 18080 -container-ip 172.17.0.2 -container-port 5000"
            .split(' ')
            .map(String::from)
            .collect();
        let processes = vec![process(1, None), process(2, None), proxy];
        let rels = connects_to(&cs, &[], &processes, &[]);
        let (client, server) = (process_urn("h", 1, 1), process_urn("h", 2, 1));
        let direct = rels
            .iter()
            .find(|r| r.source == client && r.target == server)
            .expect("client linked to the server behind the proxy");
        let t = direct.traffic.as_ref().unwrap();
        assert_eq!(
            (t.connections, t.bytes_sent),
            (1, Some(100)),
            "the client's leg"
        );
        assert_eq!(rels.len(), 3, "both legs stay: {rels:?}");
    }
}
