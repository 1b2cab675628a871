//! The network tracer against real sockets: a client and a server over loopback, over a veth
//! pair between two network namespaces, between two Docker containers, and UDP.
//!
//! Every test runs twice: `<test>::ebpf` with the default backend (the eBPF programs; with
//! STS_TEST_STRICT set, as CI sets it, falling back to polling fails the test) and
//! `<test>::proc` with the polling backend forced. Each prints one line naming the backend
//! that ran. Byte counts are exact while a connection is open: no SYN or FIN is counted.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use integration_tests::docker::{self, Container};
use integration_tests::net_peer::Peer;
use integration_tests::status::collector;
use integration_tests::traces::{Daemon, DaemonPorts};
use integration_tests::{free_port, node_daemon, wait_for};
use serde_json::Value;

const N: u64 = 12_345;
const M: u64 = 6_789;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ebpf,
    Proc,
}

impl Backend {
    fn env(self) -> [(&'static str, &'static str); 2] {
        let backend = match self {
            Backend::Ebpf => "auto",
            Backend::Proc => "proc",
        };
        // Every process reported (the default blacklist would hide `python`, `nc` ...).
        [
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^$never"),
            ("STS_NETWORK_BACKEND", backend),
        ]
    }

    /// Prints the line naming the backend that ran, and returns it. Asked for eBPF, the
    /// fallback is allowed only outside CI (STS_TEST_STRICT unset).
    fn announce(self, test: &str, described: &str) -> Backend {
        println!("{test}: network backend {described}");
        let ran = if described.starts_with("ebpf:") {
            Backend::Ebpf
        } else {
            Backend::Proc
        };
        if self == Backend::Ebpf && ran == Backend::Proc {
            assert!(
                std::env::var_os("STS_TEST_STRICT").is_none(),
                "{test}: the eBPF backend must run on this machine"
            );
            println!("SKIPPED the eBPF half of {test}: polling instead");
        }
        ran
    }
}

/// Runs a test once per backend: `<name>::ebpf` and `<name>::proc`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn ebpf() {
                super::$name(super::Backend::Ebpf, concat!(stringify!($name), "::ebpf"));
            }
            #[test]
            fn proc() {
                super::$name(super::Backend::Proc, concat!(stringify!($name), "::proc"));
            }
        }
    )*};
}

on_both_backends!(
    loopback_tcp_both_ends_bytes_and_relation,
    loopback_tcp_over_ipv6,
    tcp_between_two_namespaces_over_veth,
    tcp_between_two_containers_is_container_to_container,
    connections_while_the_daemon_runs,
    udp_sockets_and_their_traffic,
    published_ports_link_the_client_to_the_container,
);

/// `node-daemon snapshot --json` (connections opened before it started), and the backend.
fn snapshot(test: &str, backend: Backend) -> (Value, Backend) {
    let out = node_daemon(&backend.env(), &["snapshot", "--json", "--interval", "0.5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "snapshot failed: {stderr}");
    let described = stderr
        .lines()
        .find_map(|l| l.strip_prefix("node-daemon: network backend "))
        .expect("snapshot names the network backend");
    let ran = backend.announce(test, described);
    (serde_json::from_slice(&out.stdout).expect("JSON"), ran)
}

/// A daemon collecting every second, started before the traffic, and its backend.
fn daemon(test: &str, backend: Backend) -> (Daemon, Backend) {
    let daemon = Daemon::start_with_interval(DaemonPorts::free(), "1", &backend.env());
    let described = wait_for(Duration::from_secs(20), || {
        let status = daemon.status()?;
        let network = collector(&status, "network")?;
        Some(network["detail"].as_str()?.to_string())
    })
    .expect("status shows the network collector");
    let ran = backend.announce(test, &described);
    (daemon, ran)
}

/// The daemon's latest snapshot.
fn daemon_snapshot(daemon: &Daemon) -> Option<Value> {
    let addr = format!("127.0.0.1:{}", daemon.port);
    let out = node_daemon(&[], &["snapshot", "--from-daemon", "--addr", &addr]);
    serde_json::from_slice(&out.stdout).ok()
}

fn connections(snap: &Value) -> &Vec<Value> {
    snap["connections"].as_array().expect("connections array")
}

fn connection(snap: &Value, pid: u32, local_port: u16) -> Option<&Value> {
    find_connection(snap, pid, local_port, false)
}

fn find_connection(snap: &Value, pid: u32, local_port: u16, closed: bool) -> Option<&Value> {
    connections(snap).iter().find(|c| {
        c["pid"] == pid
            && c["closed"] == closed
            && c["local"]
                .as_str()
                .is_some_and(|l| l.ends_with(&format!(":{local_port}")))
    })
}

fn process_urn(snap: &Value, pid: u32) -> String {
    integration_tests::process(snap, pid).unwrap_or_else(|| panic!("process {pid} reported"))["urn"]
        .as_str()
        .unwrap()
        .to_string()
}

fn relation<'a>(snap: &'a Value, source: &str, target: &str) -> Option<&'a Value> {
    snap["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "connects-to" && r["source"] == source && r["target"] == target)
}

/// Client and server ends of one TCP exchange of N bytes up and M down, checked in a
/// snapshot taken after the connection was opened (so also: found although it existed
/// before the collector started).
fn check_exchange(snap: &Value, client: &Peer, server: &Peer, server_port: u16) {
    check_ends(snap, client, server, server_port);
    let c = connection(snap, client.pid(), client.number()).unwrap();
    assert!(
        c["start_time_ms"].is_null(),
        "opened before the collector started: its start is unknown"
    );
    assert_eq!(
        c["bytes_sent_per_sec"].as_f64(),
        Some(0.0),
        "idle in the interval"
    );
}

/// Both ends of the exchange, their directions, bytes and the relation between them.
fn check_ends(snap: &Value, client: &Peer, server: &Peer, server_port: u16) {
    let client_port = client.number();
    let c = connection(snap, client.pid(), client_port)
        .unwrap_or_else(|| panic!("client end missing: {:#?}", connections(snap)));
    let s = connection(snap, server.pid(), server_port).expect("server end listed");
    assert_eq!(c["protocol"], "tcp");
    assert_eq!(c["state"], "established");
    // Both ends are on this host: `local`; who opened it is in `side`.
    assert_eq!(
        (&c["direction"], &c["side"]),
        (&"local".into(), &"client".into())
    );
    assert_eq!(
        (&s["direction"], &s["side"]),
        (&"local".into(), &"server".into())
    );
    assert!(c["remote"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{server_port}")));
    assert_eq!(c["remote"], s["local"]);
    assert_eq!(c["local"], s["remote"]);
    assert_eq!(
        (c["bytes_sent"].as_u64(), c["bytes_received"].as_u64()),
        (Some(N), Some(M))
    );
    assert_eq!(
        (s["bytes_sent"].as_u64(), s["bytes_received"].as_u64()),
        (Some(M), Some(N))
    );
    assert!(c["rtt_us"].as_u64().is_some() && c["retransmits"].as_u64().is_some());

    let from = process_urn(snap, client.pid());
    let to = process_urn(snap, server.pid());
    let r = relation(snap, &from, &to).expect("connects-to client -> server");
    assert_eq!(r["traffic"]["connections"], 1);
    assert_eq!(r["traffic"]["bytes_sent"].as_u64(), Some(N));
    assert_eq!(r["traffic"]["bytes_received"].as_u64(), Some(M));
    assert!(
        relation(snap, &to, &from).is_none(),
        "one relation, client to server"
    );
}

fn exchange(
    prefix_server: &[&str],
    prefix_client: &[&str],
    listen: &str,
    connect: &str,
) -> (Peer, Peer, u16) {
    exchange_then(prefix_server, prefix_client, listen, connect, "keep")
}

/// The exchange; `then` = `close` closes the connection before the peers report done.
fn exchange_then(
    prefix_server: &[&str],
    prefix_client: &[&str],
    listen: &str,
    connect: &str,
    then: &str,
) -> (Peer, Peer, u16) {
    let port = free_port();
    let (p, n, m) = (port.to_string(), N.to_string(), M.to_string());
    let server = Peer::start(prefix_server, &["server", listen, &p, &n, &m, then]);
    let client = Peer::start(prefix_client, &["client", connect, &p, &n, &m, then]);
    assert_eq!(server.next_line(), "done");
    (client, server, port)
}

fn loopback_tcp_both_ends_bytes_and_relation(backend: Backend, test: &str) {
    let (client, server, port) = exchange(&[], &[], "127.0.0.1", "127.0.0.1");
    let (snap, _) = snapshot(test, backend);
    check_exchange(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    let own_netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_eq!(c["netns"], own_netns);
    assert!(c["container_id"].is_null());
}

fn loopback_tcp_over_ipv6(backend: Backend, test: &str) {
    if !std::path::Path::new("/proc/net/tcp6").exists() {
        println!("SKIPPED {test}: no IPv6 in this kernel");
        return;
    }
    let (client, server, port) = exchange(&[], &[], "::1", "::1");
    let (snap, _) = snapshot(test, backend);
    check_exchange(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    assert_eq!(c["ip_version"], 6);
    assert!(c["local"].as_str().unwrap().starts_with("[::1]:"));
}

/// Two network namespaces joined by a veth pair; removed on drop.
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    /// Names unique to this test process and backend (both run at once).
    fn create(backend: Backend) -> Option<Self> {
        let id = std::process::id() % 100_000;
        let tag = if backend == Backend::Ebpf { 'e' } else { 'p' };
        let pair = Self {
            a: format!("sts-nt-a{id}{tag}"),
            b: format!("sts-nt-b{id}{tag}"),
        };
        let (va, vb) = (format!("stsva{id}{tag}"), format!("stsvb{id}{tag}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &pair.a],
            vec!["netns", "add", &pair.b],
            vec!["link", "add", &va, "type", "veth", "peer", "name", &vb],
            vec!["link", "set", &va, "netns", &pair.a],
            vec!["link", "set", &vb, "netns", &pair.b],
            vec!["-n", &pair.a, "addr", "add", "10.231.0.1/24", "dev", &va],
            vec!["-n", &pair.b, "addr", "add", "10.231.0.2/24", "dev", &vb],
            vec!["-n", &pair.a, "link", "set", &va, "up"],
            vec!["-n", &pair.b, "link", "set", &vb, "up"],
            vec!["-n", &pair.a, "link", "set", "lo", "up"],
            vec!["-n", &pair.b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = Command::new("ip").args(&step).output().ok()?;
            if !out.status.success() {
                println!(
                    "SKIPPED veth test: `ip {}` failed: {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
        }
        Some(pair)
    }

    fn inode(name: &str) -> u64 {
        std::fs::metadata(format!("/run/netns/{name}"))
            .unwrap()
            .ino()
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn tcp_between_two_namespaces_over_veth(backend: Backend, test: &str) {
    if Command::new("ip").arg("-V").output().is_err() {
        println!("SKIPPED {test}: no `ip` command");
        return;
    }
    let Some(pair) = VethPair::create(backend) else {
        return;
    };
    let (client, server, port) = exchange(
        &["ip", "netns", "exec", &pair.b],
        &["ip", "netns", "exec", &pair.a],
        "10.231.0.2",
        "10.231.0.2",
    );
    let (snap, _) = snapshot(test, backend);
    check_exchange(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    let s = connection(&snap, server.pid(), port).unwrap();
    assert_eq!(c["netns"], VethPair::inode(&pair.a));
    assert_eq!(s["netns"], VethPair::inode(&pair.b));
    assert_eq!(c["local"], format!("10.231.0.1:{}", client.number()));
    drop((client, server));
}

fn tcp_between_two_containers_is_container_to_container(backend: Backend, test: &str) {
    if !docker::available(test) {
        return;
    }
    docker::ensure_test_image();
    let server = Container::run(
        &["--network", "bridge"],
        &["sh", "-c", "sleep 3600 | nc -l -p 5000"],
    );
    let ip = String::from_utf8_lossy(
        &docker::docker(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            &server.id,
        ])
        .stdout,
    )
    .trim()
    .to_string();
    assert!(!ip.is_empty(), "server container has a bridge address");
    std::thread::sleep(Duration::from_millis(300));
    let client = Container::run(
        &["--network", "bridge"],
        &[
            "sh",
            "-c",
            &format!("(echo hello-from-client; sleep 3600) | nc {ip} 5000"),
        ],
    );
    let (snap, c, s) = wait_for(Duration::from_secs(20), || {
        let (snap, _) = snapshot(test, backend);
        let find = |id: &str, port_side: &str| {
            connections(&snap)
                .iter()
                .find(|c| c["container_id"] == id && c["side"] == port_side && c["closed"] == false)
                .cloned()
        };
        let c = find(&client.id, "client")?;
        let s = find(&server.id, "server")?;
        Some((snap, c, s))
    })
    .expect("both container ends seen");
    assert_eq!(c["remote"], format!("{ip}:5000"));
    assert_eq!(c["remote"], s["local"]);
    assert_eq!(c["direction"], "local");
    assert_eq!(c["bytes_sent"].as_u64(), Some(18), "`hello-from-client\\n`");
    assert_eq!(s["bytes_received"].as_u64(), Some(18));
    assert_ne!(c["netns"], s["netns"]);
    let urn = |id: &str| {
        snap["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("container {id} listed"))["urn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = relation(&snap, &urn(&client.id), &urn(&server.id))
        .expect("container-to-container connects-to");
    assert_eq!(r["traffic"]["bytes_sent"].as_u64(), Some(18));
    let pc = c["pid"].as_u64().unwrap() as u32;
    let ps = s["pid"].as_u64().unwrap() as u32;
    assert!(relation(&snap, &process_urn(&snap, pc), &process_urn(&snap, ps)).is_some());
}

/// Connections opened while the daemon runs: exact bytes on both ends; with eBPF also
/// when they opened, and a connection that opened and closed within one cycle is reported
/// closed with its final counters (the polling backend cannot see it: docs/NETWORK.md).
fn connections_while_the_daemon_runs(backend: Backend, test: &str) {
    let (daemon, ran) = daemon(test, backend);
    holds_only_the_runtime_capabilities(daemon.guard.pid());
    let started_ms = now_ms();
    let (client, server, port) = exchange(&[], &[], "127.0.0.1", "127.0.0.1");
    let snap = wait_for(Duration::from_secs(20), || {
        let snap = daemon_snapshot(&daemon)?;
        let c = connection(&snap, client.pid(), client.number())?;
        (c["bytes_received"].as_u64() == Some(M)).then_some(snap)
    })
    .expect("the daemon reports the connection");
    check_ends(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    let s = connection(&snap, server.pid(), port).unwrap();
    if ran == Backend::Proc {
        assert!(c["start_time_ms"].is_null(), "polling cannot know it");
        return;
    }
    for end in [c, s] {
        let start = end["start_time_ms"].as_u64().expect("start time");
        // Boot time is known to the second: the start may read up to 1 s early.
        assert!(start + 1500 >= started_ms && start <= now_ms(), "{end}");
    }

    let (client, server, _) = exchange_then(&[], &[], "127.0.0.1", "127.0.0.1", "close");
    let (c, s) = wait_for(Duration::from_secs(20), || {
        let snap = daemon_snapshot(&daemon)?;
        let c = find_connection(&snap, client.pid(), client.number(), true)?.clone();
        let s = connections(&snap)
            .iter()
            .find(|x| x["pid"] == server.pid() && x["closed"] == true)?
            .clone();
        Some((c, s))
    })
    .expect("the closed connection is reported");
    assert_eq!(
        (c["state"].as_str(), s["state"].as_str()),
        (Some("closed"), Some("closed"))
    );
    assert_eq!(
        (c["bytes_sent"].as_u64(), c["bytes_received"].as_u64()),
        (Some(N), Some(M)),
        "final counters, the FIN not counted"
    );
    assert_eq!(
        (s["bytes_sent"].as_u64(), s["bytes_received"].as_u64()),
        (Some(M), Some(N))
    );
    assert_eq!(c["remote"], s["local"]);
}

/// Every thread of the daemon (as root, it started with every capability) now holds at
/// most the capabilities its cycles use, none inheritable or ambient, no way back through
/// execve; the bounding set is narrowed to the runtime set too when the daemon could.
fn holds_only_the_runtime_capabilities(pid: u32) {
    let runtime = node_daemon::privilege::runtime_mask();
    let mine = status_mask("/proc/self/status", "CapEff:");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("daemon threads");
    let mut threads = 0;
    for task in tasks {
        let status = task.unwrap().path().join("status");
        let field = |name| status_mask(&status, name);
        assert_eq!(field("CapPrm:") & !runtime, 0, "{status:?} permitted");
        assert_eq!(field("CapEff:") & !runtime, 0, "{status:?} effective");
        assert_eq!(field("CapInh:"), 0, "{status:?} inheritable");
        assert_eq!(field("CapAmb:"), 0, "{status:?} ambient");
        assert_eq!(field("NoNewPrivs:"), 1, "{status:?} no_new_privs");
        if mine & (1 << 8) != 0 {
            // The eBPF ring-buffer reader keeps none at all.
            assert_eq!(
                field("CapBnd:") & !runtime,
                0,
                "{status:?} bounding set (had SETPCAP)"
            );
        }
        threads += 1;
    }
    assert!(threads >= 1);
    println!("node-daemon: {threads} threads, each with at most the runtime capabilities");
}

/// A `/proc/<pid>/status` field: the capability masks are hex, NoNewPrivs decimal.
fn status_mask(path: impl AsRef<std::path::Path>, name: &str) -> u64 {
    let text = std::fs::read_to_string(path).expect("status readable");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name}"))
        .trim();
    u64::from_str_radix(value, 16).expect("a number")
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

/// UDP sockets with and without a peer; with eBPF the datagrams sent and read while the
/// daemon runs are counted (the polling backend has no UDP byte counters: docs/NETWORK.md).
fn udp_sockets_and_their_traffic(backend: Backend, test: &str) {
    let (daemon, ran) = daemon(test, backend);
    let server = Peer::start(&[], &["udp-server", "127.0.0.1", "read"]);
    let port = server.number();
    let client = Peer::start(&[], &["udp-client", "127.0.0.1", &port.to_string(), "300"]);
    assert_eq!(server.next_line(), "got 300");
    let expected = (ran == Backend::Ebpf).then_some(300);
    let snap = wait_for(Duration::from_secs(20), || {
        let snap = daemon_snapshot(&daemon)?;
        let c = connection(&snap, client.pid(), client.number())?;
        let s = connection(&snap, server.pid(), port)?;
        let counted =
            c["bytes_sent"].as_u64() == expected && s["bytes_received"].as_u64() == expected;
        counted.then_some(snap)
    })
    .unwrap_or_else(|| panic!("both UDP sockets reported, bytes {expected:?}"));
    let s = connection(&snap, server.pid(), port).unwrap();
    assert_eq!(
        (&s["protocol"], &s["direction"], &s["state"]),
        (&"udp".into(), &"none".into(), &"unconnected".into())
    );
    assert_eq!(s["remote"], "0.0.0.0:0");
    assert!(s["rtt_us"].is_null() && s["retransmits"].is_null());
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    assert_eq!(
        (&c["direction"], &c["state"]),
        (&"local".into(), &"connected".into())
    );
    assert_eq!(c["remote"], format!("127.0.0.1:{port}"));
}

/// The host's first global IPv4 address that is not Docker's bridge.
fn host_ip() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let device = words.nth(1)?;
        let addr = words.nth(1)?.split('/').next()?;
        (!device.starts_with("docker") && !device.starts_with("br-")).then(|| addr.to_string())
    })
}

/// A host process reaches a container through a published port: over 127.0.0.1 through
/// Docker's userland proxy, over the host's own address through destination NAT. Either
/// way the client process is linked to the container's server process.
fn published_ports_link_the_client_to_the_container(backend: Backend, test: &str) {
    if !docker::available(test) {
        return;
    }
    docker::ensure_test_image();
    let Some(host_ip) = host_ip() else {
        panic!("{test}: this host has no global IPv4 address to publish on");
    };
    let mut legs = Vec::new();
    for (via, connect_to) in [("docker-proxy", "127.0.0.1"), ("NAT", host_ip.as_str())] {
        let port = free_port();
        let server = Container::run(
            &["-p", &format!("{port}:5000")],
            &["sh", "-c", "sleep 3600 | nc -l -p 5000"],
        );
        let client = wait_for(Duration::from_secs(10), || {
            let peer = std::panic::catch_unwind(|| {
                Peer::start(&[], &["client", connect_to, &port.to_string(), "100", "0"])
            });
            peer.ok()
        })
        .unwrap_or_else(|| panic!("{test}: {connect_to}:{port} never answered"));
        legs.push((via, server, client));
    }
    let found = wait_for(Duration::from_secs(20), || {
        let (snap, _) = snapshot(test, backend);
        let linked = legs.iter().all(|(_, server, client)| {
            let Some(s) = connections(&snap)
                .iter()
                .find(|c| c["container_id"] == server.id.as_str() && c["side"] == "server")
            else {
                return false;
            };
            let server_pid = s["pid"].as_u64().unwrap() as u32;
            let from = process_urn(&snap, client.pid());
            let to = process_urn(&snap, server_pid);
            relation(&snap, &from, &to).is_some()
        });
        linked.then_some(())
    });
    if found.is_none() {
        // What the last snapshot saw of each leg, to tell a missing end from a missing link.
        let (snap, _) = snapshot(test, backend);
        for (via, server, client) in &legs {
            let ends: Vec<&Value> = connections(&snap)
                .iter()
                .filter(|c| c["pid"] == client.pid() || c["container_id"] == server.id.as_str())
                .collect();
            println!("{test}: {via} leg, client pid {}: {ends:#?}", client.pid());
        }
        let vias: Vec<&str> = legs.iter().map(|(via, ..)| *via).collect();
        panic!("{test}: client not linked to the container via {vias:?}");
    }
}
