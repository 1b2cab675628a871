//! The network tracer on the kernels ECS hosts run, each booted under qemu (TCG) from
//! Debian's packages: 6.1 (Amazon Linux 2023, Bottlerocket) and 6.12. Inside each VM
//! (integration-tests/vm/init) node-daemon runs with the eBPF backend while vm-traffic
//! makes a held TCP connection (777,777 bytes one way, 4,242 back), a short one that opens
//! and closes between two cycles (11,111 / 2,222), and a UDP exchange (30,000 bytes). The
//! assertions run here, on what the VM reported.

use integration_tests::vm::{self, VmReport};
use serde_json::Value;

fn port(addr: &Value) -> Option<u16> {
    addr.as_str()?.rsplit(':').next()?.parse().ok()
}

/// The first record, over all snapshots, of `pid`'s end whose local (or remote) port is
/// `port`, open or closed.
fn end(
    report: &VmReport,
    pid: u32,
    local: Option<u16>,
    remote: Option<u16>,
    closed: bool,
) -> Value {
    report
        .snapshots()
        .iter()
        .rev()
        .flat_map(|s| s["connections"].as_array().cloned().unwrap_or_default())
        .find(|c| {
            c["pid"] == pid
                && c["closed"] == closed
                && local.map_or(true, |p| port(&c["local"]) == Some(p))
                && remote.map_or(true, |p| port(&c["remote"]) == Some(p))
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: no {} end of pid {pid} (local {local:?}, remote {remote:?})",
                report.package,
                if closed { "closed" } else { "open" }
            )
        })
}

fn bytes(c: &Value) -> (Option<u64>, Option<u64>) {
    (c["bytes_sent"].as_u64(), c["bytes_received"].as_u64())
}

/// Both ends of the TCP exchange of peers `<name>_client` and `<name>_server` on `port`:
/// the client sent `sent.0` bytes and read `sent.1`, each end owned by its peer process.
fn tcp_exchange(
    r: &VmReport,
    name: &str,
    port: u16,
    closed: bool,
    sent: (u64, u64),
) -> (Value, Value) {
    let client = end(
        r,
        r.peer(&format!("{name}_client")),
        None,
        Some(port),
        closed,
    );
    let server = end(
        r,
        r.peer(&format!("{name}_server")),
        Some(port),
        None,
        closed,
    );
    let what = if closed { "final counters" } else { "counters" };
    assert_eq!(
        bytes(&client),
        (Some(sent.0), Some(sent.1)),
        "{}: the {name} client end's {what}",
        r.package
    );
    assert_eq!(
        bytes(&server),
        (Some(sent.1), Some(sent.0)),
        "{}: the {name} server end's {what}",
        r.package
    );
    assert_eq!(client["remote"], server["local"]);
    (client, server)
}

fn network_acceptance(line: &str) {
    let test = format!("kernel_matrix_{}", line.replace('.', "_"));
    if let Some(why) = vm::unavailable() {
        integration_tests::skip(&test, &why);
        return;
    }
    let r = vm::boot(line);
    let kernel = r.section("kernel").unwrap_or_default().to_string();
    let status = r.json("status");
    let network = status["collectors"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "network"))
        .unwrap_or_else(|| panic!("{}: no network collector in status", r.package))
        .clone();
    let detail = network["detail"].as_str().unwrap_or_default();
    println!("{test}: {} (uname {kernel}): {detail}", r.package);
    assert_eq!(
        r.section("daemon"),
        Some("alive"),
        "{}: the daemon stayed up",
        r.package
    );
    assert!(
        detail.starts_with("ebpf:"),
        "{}: eBPF backend: {detail}",
        r.package
    );
    assert!(
        detail.contains("closed TCP connections from") && detail.contains("UDP bytes sent from"),
        "{}: every feature attached: {detail}",
        r.package
    );

    tcp_exchange(&r, "tcp", 7000, false, (777_777, 4_242));
    let (client, server) = tcp_exchange(&r, "short", 7001, true, (11_111, 2_222));
    assert_eq!(
        (&client["state"], &server["state"]),
        (&"closed".into(), &"closed".into())
    );

    let server = end(&r, r.peer("udp_server"), Some(7002), None, false);
    let client = end(&r, r.peer("udp_client"), None, Some(7002), false);
    assert_eq!(client["protocol"], "udp");
    assert_eq!(
        client["bytes_sent"].as_u64(),
        Some(30_000),
        "{}: UDP sent",
        r.package
    );
    assert_eq!(
        server["bytes_received"].as_u64(),
        Some(30_000),
        "{}: UDP read",
        r.package
    );
}

#[test]
fn linux_6_1() {
    network_acceptance("6.1");
}

#[test]
fn linux_6_12() {
    network_acceptance("6.12");
}
