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
                && local.is_none_or(|p| port(&c["local"]) == Some(p))
                && remote.is_none_or(|p| port(&c["remote"]) == Some(p))
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

    let server = end(&r, r.peer("tcp_server"), Some(7000), None, false);
    let client = end(&r, r.peer("tcp_client"), None, Some(7000), false);
    assert_eq!(
        bytes(&client),
        (Some(777_777), Some(4_242)),
        "{}: client end",
        r.package
    );
    assert_eq!(
        bytes(&server),
        (Some(4_242), Some(777_777)),
        "{}: server end",
        r.package
    );
    assert_eq!(client["remote"], server["local"]);

    let server = end(&r, r.peer("short_server"), Some(7001), None, true);
    let client = end(&r, r.peer("short_client"), None, Some(7001), true);
    assert_eq!(
        bytes(&client),
        (Some(11_111), Some(2_222)),
        "{}: the closed client end's final counters",
        r.package
    );
    assert_eq!(
        bytes(&server),
        (Some(2_222), Some(11_111)),
        "{}: the closed server end, with its owner, and its final counters",
        r.package
    );
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
    println!("{test}: kernels cached in {}", vm::cache_dir().display());
}

#[test]
fn linux_6_1() {
    network_acceptance("6.1");
}

#[test]
fn linux_6_12() {
    network_acceptance("6.12");
}
