//! The trace pipeline end to end with the real ddtrace client: sidecar decode, gRPC
//! relay, daemon PID correlation; Datadog's test agent in front; containers; faults.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::Duration;

use integration_tests::docker::{self, Container};
use integration_tests::traces::{
    assert_identity, ddtrace_env, parse_client, run_client, stack, ClientRun, Daemon, DaemonPorts,
    Sidecar,
};
use integration_tests::{free_port, python, wait_for, workspace_root, Guard};
use sts_proto::daemon::v1::Span;

fn assert_correlated(spans: &[Span], run: &ClientRun, hostname: &str) {
    assert_eq!(spans.len(), run.spans, "every span arrived once");
    let ids: HashSet<(u64, u64)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(ids.len(), spans.len(), "no span twice");
    for s in spans {
        assert_identity(&s.service, &s.meta, run, hostname);
    }
    assert!(spans.iter().any(|s| s.error == 1), "error flag kept");
    assert!(
        spans.iter().any(|s| s.meta.contains_key("_dd.p.tid")),
        "128-bit trace id kept"
    );
    assert!(spans.iter().any(|s| s.parent_id != 0) && spans.iter().any(|s| s.parent_id == 0));
}

/// Keeps the client alive a moment after its flush, as an application is, so the daemon
/// finds it in /proc when the spans arrive (the relay batches for up to 1 s).
fn linger(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.insert("LINGER".into(), "2.5".into());
    env
}

#[test]
fn ddtrace_v04_and_v05_spans_arrive_correlated() {
    let (daemon, sidecar) = stack();
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    for version in ["v0.4", "v0.5"] {
        let service = format!("it-{}", version.replace('.', ""));
        let run = run_client(&linger(ddtrace_env(&url, version, &service, 20, 4)));
        let spans = daemon.wait_spans(&service, run.spans, Duration::from_secs(15));
        assert_correlated(&spans, &run, &daemon.hostname());
    }
    let health = sidecar.health().unwrap();
    assert_eq!(health["spans_received"], 160);
    assert_eq!(health["spans_relayed"], 160);
    assert_eq!(health["spans_dropped"], 0);
    let status = daemon.status().unwrap();
    assert_eq!(status["spans_received_total"], 160);
    let sidecars = status["sidecars"].as_array().unwrap();
    assert_eq!(sidecars.len(), 1);
    assert_eq!(sidecars[0]["spans_received"], 160);
    assert_eq!(sidecars[0]["connected"], true);
}

/// A client that exits as soon as its flush is answered: the sidecar read its start and
/// cgroup when it connected, so its spans keep their process identity.
#[test]
fn a_client_that_exits_right_after_sending_keeps_its_identity() {
    let (daemon, sidecar) = stack();
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    let run = run_client(&ddtrace_env(&url, "v0.4", "it-exits", 10, 5));
    assert_eq!(run.spans, 50);
    assert!(
        wait_for(Duration::from_secs(5), || {
            (!std::path::Path::new(&format!("/proc/{}", run.pid)).exists()).then_some(())
        })
        .is_some(),
        "the client is gone"
    );
    let spans = daemon.wait_spans("it-exits", run.spans, Duration::from_secs(15));
    assert_correlated(&spans, &run, &daemon.hostname());
}

#[test]
fn datadog_test_agent_checks_pass_through_the_sidecar() {
    let (daemon, sidecar) = stack();
    let port = free_port();
    let bin = python().parent().unwrap().join("ddapm-test-agent");
    let _agent = Guard::spawn(
        Command::new(bin)
            .args(["--port", &port.to_string()])
            .args([
                "--otlp-http-port",
                &free_port().to_string(),
                "--otlp-grpc-port",
                &free_port().to_string(),
            ])
            .args(["--agent-url", &format!("http://127.0.0.1:{}", sidecar.port)])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let agent = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .expect("test agent listening");
    for version in ["v0.4", "v0.5"] {
        let service = format!("it-agent-{}", version.replace('.', ""));
        let run = run_client(&ddtrace_env(&agent, version, &service, 10, 3));
        let spans = daemon.wait_spans(&service, run.spans, Duration::from_secs(15));
        assert_eq!(
            spans.len(),
            run.spans,
            "{version}: spans reached the daemon through the test agent"
        );
    }
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("{agent}/test/trace_check/failures"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end().ends_with("200"),
        "test agent trace checks failed: {text}"
    );
}

#[test]
fn two_clients_in_two_containers_are_told_apart() {
    if !docker::available("two_clients_in_two_containers_are_told_apart") {
        return;
    }
    docker::ensure_test_image();
    let daemon = Daemon::start(DaemonPorts::free(), &[]);
    // On all addresses, so containers reach it through the bridge gateway.
    let sidecar = Sidecar::start(&format!("0.0.0.0:{}", free_port()), daemon.relay_port, &[]);
    let gateway = docker::bridge_gateway();
    let url = format!("http://{gateway}:{}", sidecar.port);
    // The host's Python and ddtrace, mounted read-only into the busybox image.
    let clients: Vec<(String, Container, u32)> = ["it-ctr-a", "it-ctr-b"]
        .iter()
        .map(|service| {
            let mut env = ddtrace_env(&url, "v0.5", service, 15, 3);
            env.insert("LINGER".into(), "3".into());
            let container = docker::run_python("trace_client.py", &env, &[]);
            let pid = container.pid();
            (service.to_string(), container, pid)
        })
        .collect();
    for (service, container, pid) in &clients {
        let spans = daemon.wait_spans(service, 45, Duration::from_secs(40));
        let logs = docker::docker(&["logs", &container.id]);
        assert_eq!(
            spans.len(),
            45,
            "{service}: {}",
            String::from_utf8_lossy(&logs.stderr)
                .lines()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
                .join(" / ")
        );
        for s in &spans {
            assert_eq!(
                s.meta["container.id"], container.id,
                "{service}: span from the wrong container"
            );
            assert_eq!(s.meta["span.pid"], pid.to_string(), "{service}: wrong pid");
        }
        let out = wait_for(Duration::from_secs(40), || {
            let logs = docker::docker(&["logs", &container.id]);
            (!logs.stdout.is_empty()).then_some(logs.stdout)
        })
        .expect("client finished");
        let run = parse_client(&out);
        assert_eq!(
            run.pid, *pid,
            "ddtrace's pid is the host pid under pidMode host"
        );
    }
}

#[test]
fn wrong_relay_token_is_refused_and_counted() {
    // The daemon and the good sidecar read the token from files, as ECS secrets can be.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("relay-token");
    std::fs::write(&token_file, "right-token\n").unwrap();
    let token_file = token_file.display().to_string();
    let daemon = Daemon::start(
        DaemonPorts::free(),
        &[("STS_RELAY_TOKEN_FILE", token_file.as_str())],
    );
    for (n, env) in [vec![("STS_RELAY_TOKEN", "wrong-token")], vec![]]
        .into_iter()
        .enumerate()
    {
        let sidecar = Sidecar::start(
            &format!("127.0.0.1:{}", free_port()),
            daemon.relay_port,
            &env,
        );
        let url = format!("http://127.0.0.1:{}", sidecar.port);
        let run = run_client(&ddtrace_env(&url, "v0.4", "it-token", 5, 2));
        let health = wait_for(Duration::from_secs(15), || {
            sidecar
                .health()
                .filter(|h| h["spans_dropped"].as_u64() == Some(run.spans as u64))
        })
        .unwrap_or_else(|| panic!("refused spans counted as dropped ({env:?})"));
        assert_eq!(health["spans_relayed"], 0);
        let status = daemon.status().unwrap();
        assert_eq!(status["spans_received_total"], 0);
        assert!(
            status["relay_refused_total"].as_u64() > Some(n as u64),
            "refusals counted: {}",
            status["relay_refused_total"]
        );
        assert!(
            !status.to_string().contains("right-token"),
            "token shown in status"
        );
    }

    let good = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        daemon.relay_port,
        &[("STS_RELAY_TOKEN_FILE", token_file.as_str())],
    );
    let run = run_client(&ddtrace_env(
        &format!("http://127.0.0.1:{}", good.port),
        "v0.4",
        "it-token-ok",
        5,
        2,
    ));
    assert_eq!(
        daemon
            .wait_spans("it-token-ok", run.spans, Duration::from_secs(15))
            .len(),
        run.spans
    );
}

#[test]
fn daemon_killed_and_restarted_while_10000_spans_flow() {
    let ports = DaemonPorts::free();
    let mut daemon = Daemon::start(ports, &[]);
    let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), ports.relay, &[]);
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    let script = workspace_root().join("integration-tests/python/trace_client.py");
    let mut env: BTreeMap<String, String> = ddtrace_env(&url, "v0.4", "it-restart", 2500, 4);
    env.insert("DD_TRACE_PARTIAL_FLUSH_ENABLED".into(), "false".into());
    // Spans flow for 2.5 s or more, flushed every 50 ms: the kill lands while they do (sent
    // at once, they are all relayed and acknowledged within milliseconds).
    env.insert("TRACE_INTERVAL".into(), "0.001".into());
    env.insert("DD_TRACE_WRITER_INTERVAL_SECONDS".into(), "0.05".into());
    let mut client = Command::new(python())
        .arg(script)
        .envs(&env)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the daemon while spans flow, once it has acknowledged some; the sidecar buffers
    // and resends after the restart.
    wait_for(Duration::from_secs(30), || {
        sidecar
            .health()
            .filter(|h| h["spans_relayed"].as_u64() > Some(0))
            .map(|_| ())
    })
    .expect("spans flowing");
    daemon
        .guard
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(2))
        .expect("daemon killed");
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start(ports, &[]);
    assert!(client.wait().unwrap().success());
    let health = wait_for(Duration::from_secs(30), || {
        sidecar
            .health()
            .filter(|h| h["spans_buffered"] == 0 && h["spans_received"] == 10_000)
    })
    .expect("sidecar drained");
    assert_eq!(health["spans_dropped"], 0, "nothing dropped: {health}");
    assert_eq!(
        health["spans_relayed"], 10_000,
        "every span acknowledged by a daemon: {health}"
    );
    // What reached the restarted daemon came exactly once.
    let spans = daemon.wait_spans("it-restart", 1, Duration::from_secs(5));
    let unique: HashSet<(u64, u64)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(
        unique.len(),
        spans.len(),
        "a span reached the restarted daemon twice"
    );
    assert!(!spans.is_empty() && spans.len() <= 10_000);
}

#[test]
fn daemon_down_longer_than_the_buffer_holds_counts_drops() {
    // No daemon at all: a 1 MiB buffer fills and the oldest spans are dropped and counted.
    let sidecar = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        free_port(),
        &[("STS_TRACE_BUFFER_BYTES", "1048576")],
    );
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    let run = run_client(&ddtrace_env(&url, "v0.5", "it-overflow", 2000, 5));
    let health = wait_for(Duration::from_secs(20), || {
        sidecar
            .health()
            .filter(|h| h["spans_received"].as_u64() == Some(run.spans as u64))
    })
    .expect("all payloads taken");
    let dropped = health["spans_dropped"].as_u64().unwrap();
    let buffered = health["spans_buffered"].as_u64().unwrap();
    assert!(dropped > 0, "{health}");
    assert_eq!(
        dropped + buffered,
        run.spans as u64,
        "every span is buffered or counted: {health}"
    );
    assert!(health["buffer_bytes"].as_u64().unwrap() <= 1 << 20);
    assert_eq!(health["daemon_connected"], false);
    // The sidecar's memory stays bounded (buffer cap plus the process itself).
    let status = std::fs::read_to_string(format!("/proc/{}/status", sidecar.guard.pid())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    println!("sidecar RSS with a full 1 MiB buffer: {} KiB", rss_kb);
    assert!(rss_kb < 40 * 1024, "RSS {rss_kb} KiB");
}
