//! The network tracer against real sockets: a client and a server over loopback, over a veth
//! pair between two network namespaces, between two Docker containers, and UDP.
//!
//! The backend here is the polling one (/proc and sock_diag); each test prints one line
//! naming it. Byte counts come from sock_diag's `tcp_info` and are exact while the
//! connection is open (no SYN or FIN counted in `bytes_sent`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use integration_tests::docker::{self, Container};
use integration_tests::{free_port, python, snapshot_json, wait_for, workspace_root, Guard};
use serde_json::Value;

const N: u64 = 12_345;
const M: u64 = 6_789;
/// Every process reported (the default blacklist would hide `python`, `nc` ...).
const ENV: &[(&str, &str)] = &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")];

/// A peer process, its first line, and the rest of its output.
struct Peer {
    guard: Guard,
    line: String,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `prefix... python net_peer.py args...` and waits for its first line.
    fn start(prefix: &[&str], args: &[&str]) -> Self {
        let script = workspace_root().join("integration-tests/python/net_peer.py");
        let python = python();
        let mut all: Vec<&str> = prefix.to_vec();
        all.extend([python.to_str().unwrap(), "-u", script.to_str().unwrap()]);
        all.extend_from_slice(args);
        let mut command = Command::new(all[0]);
        command.args(&all[1..]).stdout(Stdio::piped());
        let mut guard = Guard::spawn(&mut command);
        let stdout = guard.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{all:?} printed nothing"));
        Self { guard, line, lines }
    }

    fn pid(&self) -> u32 {
        self.guard.pid()
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("peer finished its exchange")
    }

    /// The number after the word in the first line, e.g. the port of `done 43210`.
    fn number(&self) -> u16 {
        self.line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn connections(snap: &Value) -> &Vec<Value> {
    snap["connections"].as_array().expect("connections array")
}

fn connection(snap: &Value, pid: u32, local_port: u16) -> Option<&Value> {
    connections(snap).iter().find(|c| {
        c["pid"] == pid
            && c["closed"] == false
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

fn backend_line(test: &str, env: &[(&str, &str)]) {
    let forced = env.iter().any(|(k, _)| *k == "STS_NETWORK_BACKEND");
    println!(
        "{test}: network backend proc (/proc + sock_diag){}",
        if forced {
            ", forced by STS_NETWORK_BACKEND=proc"
        } else {
            ", eBPF backend not built yet"
        }
    );
}

/// Client and server ends of one TCP exchange of N bytes up and M down, checked in a
/// snapshot taken after the connection was opened (so also: found although it existed
/// before the collector started).
fn check_exchange(snap: &Value, client: &Peer, server: &Peer, server_port: u16) {
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
    assert!(
        c["start_time_ms"].is_null(),
        "the polling backend cannot know it"
    );
    assert_eq!(
        c["bytes_sent_per_sec"].as_f64(),
        Some(0.0),
        "idle in the interval"
    );

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
    let port = free_port();
    let (p, n, m) = (port.to_string(), N.to_string(), M.to_string());
    let server = Peer::start(prefix_server, &["server", listen, &p, &n, &m]);
    let client = Peer::start(prefix_client, &["client", connect, &p, &n, &m]);
    assert_eq!(server.next_line(), "done");
    (client, server, port)
}

#[test]
fn loopback_tcp_both_ends_bytes_and_relation() {
    backend_line("loopback_tcp_both_ends_bytes_and_relation", ENV);
    let (client, server, port) = exchange(&[], &[], "127.0.0.1", "127.0.0.1");
    let snap = snapshot_json(ENV);
    check_exchange(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    let own_netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_eq!(c["netns"], own_netns);
    assert!(c["container_id"].is_null());
}

#[test]
fn the_forced_polling_backend_sees_the_same_over_ipv6() {
    let env = [ENV[0], ("STS_NETWORK_BACKEND", "proc")];
    backend_line("the_forced_polling_backend_sees_the_same_over_ipv6", &env);
    if !std::path::Path::new("/proc/net/tcp6").exists() {
        println!(
            "SKIPPED the_forced_polling_backend_sees_the_same_over_ipv6: no IPv6 in this kernel"
        );
        return;
    }
    let (client, server, port) = exchange(&[], &[], "::1", "::1");
    let snap = snapshot_json(&env);
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
    fn create() -> Option<Self> {
        let id = std::process::id() % 100_000;
        let pair = Self {
            a: format!("sts-nt-a{id}"),
            b: format!("sts-nt-b{id}"),
        };
        let (va, vb) = (format!("stsva{id}"), format!("stsvb{id}"));
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

#[test]
fn tcp_between_two_namespaces_over_veth() {
    backend_line("tcp_between_two_namespaces_over_veth", ENV);
    if Command::new("ip").arg("-V").output().is_err() {
        println!("SKIPPED tcp_between_two_namespaces_over_veth: no `ip` command");
        return;
    }
    let Some(pair) = VethPair::create() else {
        return;
    };
    let (client, server, port) = exchange(
        &["ip", "netns", "exec", &pair.b],
        &["ip", "netns", "exec", &pair.a],
        "10.231.0.2",
        "10.231.0.2",
    );
    let snap = snapshot_json(ENV);
    check_exchange(&snap, &client, &server, port);
    let c = connection(&snap, client.pid(), client.number()).unwrap();
    let s = connection(&snap, server.pid(), port).unwrap();
    assert_eq!(c["netns"], VethPair::inode(&pair.a));
    assert_eq!(s["netns"], VethPair::inode(&pair.b));
    assert_eq!(c["local"], format!("10.231.0.1:{}", client.number()));
    drop((client, server));
}

#[test]
fn tcp_between_two_containers_is_container_to_container() {
    let test = "tcp_between_two_containers_is_container_to_container";
    backend_line(test, ENV);
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
        let snap = snapshot_json(ENV);
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

#[test]
fn udp_sockets_with_and_without_a_peer() {
    backend_line("udp_sockets_with_and_without_a_peer", ENV);
    let server = Peer::start(&[], &["udp-server", "127.0.0.1"]);
    let port = server.number();
    let client = Peer::start(&[], &["udp-client", "127.0.0.1", &port.to_string(), "300"]);
    let snap = snapshot_json(ENV);
    let s = connection(&snap, server.pid(), port).expect("unconnected UDP socket listed");
    assert_eq!(
        (&s["protocol"], &s["direction"], &s["state"]),
        (&"udp".into(), &"none".into(), &"unconnected".into())
    );
    assert_eq!(s["remote"], "0.0.0.0:0");
    assert!(
        s["rx_queue"].as_u64().unwrap() >= 300,
        "the unread datagram is queued: {s}"
    );
    assert!(
        s["bytes_received"].is_null(),
        "no UDP byte counters in this backend"
    );
    let c = connection(&snap, client.pid(), client.number()).expect("connected UDP socket listed");
    assert_eq!(
        (&c["direction"], &c["state"]),
        (&"local".into(), &"connected".into())
    );
    assert_eq!(c["remote"], format!("127.0.0.1:{port}"));
}
