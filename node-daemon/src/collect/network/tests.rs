use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;

use super::socket::{Owner, TcpCounters};
use super::*;
use crate::config::{NetworkBackend, NetworkConfig};

/// A backend answering recorded observations.
struct Recorded(Vec<Vec<Socket>>);

impl Backend for Recorded {
    fn describe(&self) -> String {
        "recorded".into()
    }
    fn observe(&mut self) -> Result<Observation, NetworkError> {
        Ok(Observation {
            sockets: if self.0.is_empty() {
                vec![]
            } else {
                self.0.remove(0)
            },
            ..Observation::default()
        })
    }
}

fn sock(local: &str, remote: &str, state: u8, owner: Option<u32>) -> Socket {
    Socket {
        netns: 7,
        protocol: Protocol::Tcp,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        state,
        inode: u64::from(owner.unwrap_or(0)) + 1000,
        tx_queue: 0,
        rx_queue: 0,
        owner: owner.map(|pid| Owner {
            pid,
            create_time_ms: 5,
            container_id: Some(Arc::from("c1")),
        }),
        counters: Some(TcpCounters {
            bytes_sent: 10,
            bytes_received: 20,
            retransmits: 1,
            rtt_us: 30,
        }),
        start_time_ms: None,
    }
}

#[test]
fn records_from_an_observation() {
    let cycle = vec![
        sock("0.0.0.0:80", "0.0.0.0:0", 10, Some(1)),
        sock("127.0.0.1:80", "127.0.0.1:50000", 1, Some(1)),
        sock("127.0.0.1:50000", "127.0.0.1:80", 1, Some(2)),
        sock("127.0.0.1:50001", "127.0.0.1:80", 6, None),
    ];
    let mut c = NetworkCollector::with_backend(Box::new(Recorded(vec![cycle])), 100);
    let scan = c.collect().unwrap();
    assert_eq!(scan.counts.listening, 1);
    assert_eq!(
        scan.counts.connections, 2,
        "the listener and TIME_WAIT are not"
    );
    let server = &scan.connections[0];
    assert_eq!(
        (server.pid, server.direction, server.side, server.state),
        (1, "local", Some("server"), "established")
    );
    assert_eq!(server.container_id.as_deref(), Some("c1"));
    assert_eq!((server.bytes_sent, server.rtt_us), (Some(10), Some(30)));
    assert_eq!(scan.connections[1].side, Some("client"));

    let scan = c.collect().unwrap();
    assert_eq!((scan.counts.connections, scan.counts.closed), (0, 2));
    assert!(scan.connections.iter().all(|c| c.closed));
}

#[test]
fn state_names() {
    assert_eq!(state_name(Protocol::Tcp, 1), "established");
    assert_eq!(state_name(Protocol::Tcp, 8), "close_wait");
    assert_eq!(state_name(Protocol::Udp, 1), "connected");
    assert_eq!(state_name(Protocol::Udp, 7), "unconnected");
}

#[test]
fn finds_this_process_connections_with_counters() {
    for backend in [NetworkBackend::Auto, NetworkBackend::Proc] {
        finds_connections_with(backend);
    }
}

/// Root on a BPF kernel with a build that had clang: the eBPF backend must run (CI sets
/// STS_TEST_STRICT=1); anywhere else `auto` may fall back, and says so.
fn finds_connections_with(backend: NetworkBackend) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[1u8; 3000]).unwrap();
    let mut buf = [0u8; 3000];
    server.read_exact(&mut buf).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();

    let config = NetworkConfig {
        backend,
        max_connections: 100_000,
    };
    let mut collector = NetworkCollector::new(&config).unwrap();
    let described = collector.describe();
    let ebpf = described.starts_with("ebpf:");
    match backend {
        NetworkBackend::Proc => assert!(described.starts_with("proc: forced"), "{described}"),
        _ if std::env::var_os("STS_TEST_STRICT").is_some() => assert!(ebpf, "{described}"),
        _ if !ebpf => println!("SKIPPED the eBPF backend: {described}"),
        _ => {}
    }
    let scan = collector.collect().unwrap();
    let me = std::process::id();
    let find = |local| {
        scan.connections
            .iter()
            .find(|c| c.pid == me && c.local == local)
            .unwrap_or_else(|| panic!("{local} not found in {:?}", scan.connections))
    };
    let out = find(client.local_addr().unwrap());
    assert_eq!((out.direction, out.side), ("local", Some("client")));
    assert_eq!(out.remote, addr);
    assert_eq!((out.bytes_sent, out.bytes_received), (Some(3000), Some(0)));
    let inc = find(server.local_addr().unwrap());
    assert_eq!(inc.side, Some("server"));
    assert_eq!(inc.bytes_received, Some(3000));
    let u = find(udp.local_addr().unwrap());
    // The eBPF backend counts UDP bytes sent and read since it started: none here.
    assert_eq!(
        (u.protocol, u.direction, u.bytes_sent),
        ("udp", "none", ebpf.then_some(0))
    );
    assert_eq!((u.retransmits, u.rtt_us), (None, None));
    assert!(scan.counts.namespaces >= 1 && scan.counts.listening >= 1);
    assert_eq!(scan.counts.diag_failed, 0);
}
