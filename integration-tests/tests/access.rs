//! Who may read: the read API (status, snapshot, recent spans, reflection) listens on
//! loopback by default and is refused from the host's other addresses; opened to them, it
//! asks for a token. The relay listens apart, where sidecars reach it.

use std::net::{IpAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use integration_tests::{binary, free_port, node_daemon, skip, wait_for, Guard, Logs};

const READ_TOKEN: &str = "it-read-token-0815";

/// An address of this host that is not loopback: the source address of its default
/// route (a UDP "connect" sends nothing).
fn host_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// [`host_address`], or one line saying `test` skips without one.
fn host_address_or_skip(test: &str) -> Option<IpAddr> {
    let host = host_address();
    if host.is_none() {
        skip(test, "this host has no non-loopback address to try from");
    }
    host
}

fn start(env: &[(&str, String)]) -> (Guard, Logs) {
    let mut command = Command::new(binary("node-daemon"));
    command
        .args(["run", "--interval", "60"])
        .env_remove("STS_GRPC_ADDR")
        .env("STS_LOG_LEVEL", "debug");
    for (k, v) in env {
        command.env(k, v);
    }
    Guard::spawn_with_logs(&mut command)
}

fn snapshot_from(addr: &str, env: &[(&str, &str)]) -> std::process::Output {
    node_daemon(env, &["snapshot", "--from-daemon", "--addr", addr])
}

/// Whether `snapshot --from-daemon` succeeds within 20 s: status answers before the first
/// cycle, the snapshot only after it.
fn first_snapshot(addr: &str, env: &[(&str, &str)]) -> bool {
    wait_for(Duration::from_secs(20), || {
        snapshot_from(addr, env).status.success().then_some(())
    })
    .is_some()
}

#[test]
fn the_read_api_is_served_on_loopback_and_refused_from_the_host_address() {
    let Some(host) = host_address_or_skip("read_api_loopback") else {
        return;
    };
    let relay = free_port();
    // STS_GRPC_ADDR unset: the default, 127.0.0.1:7182.
    let (_daemon, logs) = start(&[("STS_RELAY_ADDR", format!("0.0.0.0:{relay}"))]);
    let status = wait_for(Duration::from_secs(20), || {
        let out = node_daemon(&[], &["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    })
    .unwrap_or_else(|| panic!("status on loopback: {}", logs.text()));
    assert_eq!(status["config"]["STS_GRPC_ADDR"], "127.0.0.1:7182");
    assert_eq!(
        status["trace_relay"],
        format!("listening on 0.0.0.0:{relay}")
    );
    assert!(
        first_snapshot("127.0.0.1:7182", &[]),
        "no snapshot on loopback"
    );

    let out = snapshot_from(&format!("{host}:7182"), &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not reachable"), "{stderr}");
    // The relay is where sidecars reach it, on the host's address too.
    assert!(TcpStream::connect((host, relay)).is_ok(), "relay on {host}");
}

#[test]
fn a_read_api_off_loopback_needs_a_token_and_checks_it() {
    let Some(host) = host_address_or_skip("read_api_token") else {
        return;
    };
    let (port, relay) = (free_port(), free_port());
    let wide = format!("0.0.0.0:{port}");
    let relay_addr = format!("127.0.0.1:{relay}");

    // Without a token the daemon refuses to start, and says why.
    let out = node_daemon(
        &[("STS_GRPC_ADDR", &wide), ("STS_RELAY_ADDR", &relay_addr)],
        &["run"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("STS_GRPC_ADDR") && stderr.contains("STS_GRPC_TOKEN"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("read-token");
    std::fs::write(&token_file, format!("{READ_TOKEN}\n")).unwrap();
    let token_path = token_file.display().to_string();
    let (mut daemon, logs) = start(&[
        ("STS_GRPC_ADDR", wide),
        ("STS_RELAY_ADDR", relay_addr),
        ("STS_GRPC_TOKEN_FILE", token_path.clone()),
    ]);
    let remote = format!("{host}:{port}");
    let with_token = [("STS_GRPC_TOKEN", READ_TOKEN)];
    let status = wait_for(Duration::from_secs(20), || {
        let out = node_daemon(&with_token, &["status", "--json", "--addr", &remote]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
    })
    .unwrap_or_else(|| panic!("status with the token: {}", logs.text()));
    assert_eq!(status["config"]["STS_GRPC_TOKEN"], "<set, redacted>");
    // The CLI reads the token from a file as the daemon does.
    let from_file = [("STS_GRPC_TOKEN_FILE", token_path.as_str())];
    assert!(
        first_snapshot(&remote, &from_file),
        "no snapshot with the token file"
    );

    for env in [vec![], vec![("STS_GRPC_TOKEN", "it-read-token-0816")]] {
        let out = snapshot_from(&remote, &env);
        assert!(!out.status.success(), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("missing or wrong token"),
            "{env:?}: {stderr}"
        );
        assert!(!stderr.contains(READ_TOKEN), "{stderr}");
        let out = node_daemon(&env, &["status", "--addr", &remote]);
        assert_eq!(out.status.code(), Some(2), "{env:?}");
    }
    // Loopback is no exception once a token is set.
    let out = snapshot_from(&format!("127.0.0.1:{port}"), &[]);
    assert!(!out.status.success());

    daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(5))
        .expect("daemon stops");
    let log = logs.after_exit(Duration::from_secs(5));
    assert!(!log.contains(READ_TOKEN), "token in the log");
}
