//! The daemon forwarding to the capture receiver: processes, connections, metrics, traces
//! and health arrive with the API key; an ended process is left out; TLS is verified
//! unless told otherwise; feature flags stop what they name; an outage with a SIGKILL in
//! the middle loses nothing.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use integration_tests::forwarding::{
    collector_procs, forward_sinks, reported_connections, reported_processes, sink_idle,
    ForwardSetup, API_KEY as KEY,
};
use integration_tests::receiver::{CaptureReceiver, Endpoint, FailureMode, Lasting, Scope};
use integration_tests::status::collector;
use integration_tests::traces::{ddtrace_env, run_client, ClientRun, Daemon, DaemonPorts, Sidecar};
use integration_tests::{free_port, wait_for, Guard};
use node_daemon::clock::unix_ms_now;
use serde_json::Value;

#[test]
fn everything_arrives_with_the_api_key_and_ended_processes_are_deleted() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let daemon = setup.start_daemon(DaemonPorts::free());
    let sidecar = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        daemon.relay_port,
        &[],
    );
    let mut sleeper = Guard::spawn(Command::new("/bin/sleep").arg("3633"));
    let pid = sleeper.pid();

    // The process shows in the process agent's messages.
    let reported = |pid: u32| {
        reported_processes(&receiver)
            .iter()
            .any(|p| p.pid == pid as i32)
    };
    wait_for(Duration::from_secs(20), || reported(pid).then_some(()))
        .expect("started process forwarded");

    // Traces, correlated, with the API key in the header.
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    let mut env = ddtrace_env(&url, "v0.4", "it-forward", 10, 3);
    env.insert("LINGER".into(), "2.5".into());
    let run = run_client(&env);
    let spans = receiver.wait_spans(run.spans, Duration::from_secs(20));
    let ours: Vec<_> = spans.iter().filter(|s| s.service == "it-forward").collect();
    assert_eq!(ours.len(), run.spans, "every span forwarded once");
    assert!(ours
        .iter()
        .all(|s| s.meta.get("span.pid") == Some(&run.pid.to_string())));

    // The process ends: a later complete group of full messages leaves it out (the
    // receiver gives no incremental-topology feature here).
    sleeper
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(2))
        .unwrap();
    let seen_before = collector_procs(&receiver).len();
    let left_out = wait_for(Duration::from_secs(20), || {
        let procs = collector_procs(&receiver);
        let later = &procs[seen_before.min(procs.len())..];
        let group = later.first()?.group_id;
        let group: Vec<_> = later.iter().filter(|p| p.group_id == group).collect();
        (group.len() == group[0].group_size as usize).then(|| {
            group
                .iter()
                .all(|p| p.processes.iter().all(|x| x.pid != pid as i32))
        })
    });
    assert_eq!(left_out, Some(true), "ended process still reported");

    // Metrics, health; every request carries the key.
    let messages = receiver.intake_messages();
    let gauges: Vec<Value> = messages
        .iter()
        .flat_map(|m| m["metrics"].as_array().cloned().unwrap_or_default())
        .collect();
    let gauge = |name: &str| gauges.iter().find(|g| g[0] == name);
    assert!(gauge("system.cpu.user").is_some());
    // Memory in MB, as the core agent sends it; used = total - free.
    let total_mb = gauge("system.mem.total").expect("system.mem.total")[2]
        .as_f64()
        .unwrap();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!((total_mb - kb / 1024.0).abs() < 1.0, "{total_mb} MB");
    let used = gauge("system.mem.used").unwrap()[2].as_f64().unwrap();
    let free = gauge("system.mem.free").unwrap()[2].as_f64().unwrap();
    assert!(
        (used + free - total_mb).abs() < 0.01,
        "{used} + {free} != {total_mb}"
    );
    assert!(
        gauge("process.mem.rss").is_none(),
        "process gauges left the intake"
    );
    assert!(messages.iter().all(|m| !m.to_string().contains("urn:urn:")));
    // The sidecar's gRPC stream to the daemon is a connection between two processes of
    // this host: an outgoing connection of the sidecar, an incoming one of the daemon.
    let (sidecar_pid, daemon_pid) = (sidecar.guard.pid(), daemon.guard.pid());
    let ends = wait_for(Duration::from_secs(20), || {
        let cs = reported_connections(&receiver);
        let out = cs.iter().find(|c| {
            c.pid == sidecar_pid as i32
                && c.raddr
                    .as_ref()
                    .is_some_and(|a| a.port == i32::from(daemon.relay_port))
        })?;
        let inc = cs
            .iter()
            .find(|c| c.pid == daemon_pid as i32 && c.raddr == out.laddr)?;
        Some((out.direction, inc.direction))
    })
    .expect("the sidecar's stream as two connections");
    assert_eq!(ends, (1, 2), "outgoing and incoming");
    assert!(messages.iter().any(|m| m["service_checks"]
        .as_array()
        .is_some_and(|c| c.iter().any(|x| x["check"] == "stackstate.node_daemon.up"))));
    let all = receiver.all_requests();
    assert!(all.len() > 5);
    for r in &all {
        assert_eq!(
            r.api_key.as_deref(),
            Some(KEY),
            "{} without the API key",
            r.path
        );
        if r.endpoint != Endpoint::Features {
            assert!(r.header("x-sts-batch-id").is_some(), "{}", r.path);
        }
    }
    let status = daemon.status().unwrap().to_string();
    assert!(!status.contains(KEY), "API key in status");

    // With the receiver up, status shows every sink ok with nothing left queued.
    let sinks_idle = wait_for(Duration::from_secs(20), || {
        let status = daemon.status()?;
        let sinks = forward_sinks(&status);
        (sinks.len() == 5 && sinks.into_iter().all(sink_idle)).then_some(())
    });
    assert!(
        sinks_idle.is_some(),
        "sinks not ok and empty: {}",
        daemon.status().unwrap_or_default()["collectors"]
    );
}

#[test]
fn self_signed_receiver_is_refused_unless_validation_is_skipped() {
    let receiver = CaptureReceiver::https();
    let strict = ForwardSetup::new(&receiver, &[]);
    let daemon = strict.start_daemon(DaemonPorts::free());
    let error = wait_for(Duration::from_secs(20), || {
        let status = daemon.status()?;
        let sink = collector(&status, "forward.metrics")?.clone();
        (sink["state"] == "unavailable")
            .then(|| sink["last_error"].as_str().unwrap_or("").to_string())
    })
    .expect("refused receiver reported");
    assert!(
        error.to_lowercase().contains("certificate"),
        "unclear error: {error}"
    );
    assert!(
        receiver.all_requests().is_empty(),
        "sent to an unverified receiver"
    );
    drop(daemon);

    let lax = ForwardSetup::new(&receiver, &[("STS_SKIP_SSL_VALIDATION", "true")]);
    let _daemon = lax.start_daemon(DaemonPorts::free());
    assert!(receiver.wait_for(
        |r| r.iter().any(|r| r.endpoint == Endpoint::Intake && r.tls),
        Duration::from_secs(20)
    ));
}

/// A daemon sending to a capture receiver, with a sidecar in front, and a ddtrace client
/// that has sent 10 spans of one service through them (v0.4).
struct TracedRun {
    run: ClientRun,
    sidecar: Sidecar,
    daemon: Daemon,
    _setup: ForwardSetup,
    receiver: CaptureReceiver,
}

impl TracedRun {
    fn start(extra: &[(&str, &str)], service: &str) -> Self {
        let receiver = CaptureReceiver::http();
        let setup = ForwardSetup::new(&receiver, extra);
        let daemon = setup.start_daemon(DaemonPorts::free());
        let sidecar = Sidecar::start(
            &format!("127.0.0.1:{}", free_port()),
            daemon.relay_port,
            &[],
        );
        let url = format!("http://127.0.0.1:{}", sidecar.port);
        let run = run_client(&ddtrace_env(&url, "v0.4", service, 5, 2));
        Self {
            run,
            sidecar,
            daemon,
            _setup: setup,
            receiver,
        }
    }
}

#[test]
fn status_counts_what_was_sent_since_the_last_cycle() {
    // One cycle at start and none for an hour: counts read only at cycles would stay 0.
    let started_ms = unix_ms_now();
    let t = TracedRun::start(&[("STS_COLLECTION_INTERVAL", "3600")], "it-live-status");
    let arrived = t.receiver.wait_spans(t.run.spans, Duration::from_secs(20));
    assert_eq!(arrived.len(), t.run.spans, "spans forwarded");
    let traces = wait_for(Duration::from_secs(5), || {
        let status = t.daemon.status()?;
        let traces = collector(&status, "forward.traces")?;
        (traces["counts"]["sent_spans"] == t.run.spans).then(|| traces.clone())
    });
    let Some(traces) = traces else {
        panic!(
            "forward.traces does not count the {} spans sent: {}",
            t.run.spans,
            t.daemon.status().unwrap_or_default()["collectors"]
        )
    };
    // Its last run is the last batch the receiver took, and how long that took.
    let last = traces["last_run_unix_ms"].as_i64().unwrap_or(0);
    assert!(
        (started_ms..=unix_ms_now()).contains(&last),
        "last send at {last}, test ran from {started_ms}: {traces}"
    );
    assert!(
        traces["last_duration_us"].as_u64().unwrap_or(0) > 0,
        "{traces}"
    );
}

#[test]
fn process_agent_disabled_sends_no_processes_or_containers() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_AGENT_ENABLED", "false")]);
    let _daemon = setup.start_daemon(DaemonPorts::free());
    assert!(receiver.wait_for(|r| r.len() >= 12, Duration::from_secs(20)));
    for endpoint in [Endpoint::Collector, Endpoint::Connections] {
        assert!(
            receiver.requests(endpoint).is_empty(),
            "process agent messages sent"
        );
    }
    let metrics: Vec<Value> = receiver
        .intake_messages()
        .iter()
        .flat_map(|m| m["metrics"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        metrics.iter().any(|m| m[0] == "system.cpu.user"),
        "host metrics still sent"
    );
    assert!(metrics
        .iter()
        .all(|m| !m[0].as_str().unwrap_or("").starts_with("process.")));
}

#[test]
fn apm_disabled_refuses_sidecars_which_keep_buffering() {
    let t = TracedRun::start(&[("STS_APM_ENABLED", "false")], "it-apm-off");
    let health = wait_for(Duration::from_secs(15), || {
        t.sidecar.health().filter(|h| {
            h["spans_received"].as_u64() == Some(t.run.spans as u64) && h["daemon_error"] != ""
        })
    })
    .expect("sidecar told");
    assert_eq!(
        health["spans_buffered"], t.run.spans,
        "sidecar keeps the spans: {health}"
    );
    assert_eq!(health["spans_dropped"], 0);
    assert_eq!(
        t.daemon.status().unwrap()["trace_relay"],
        "disabled (STS_APM_ENABLED=false)"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        t.receiver.spans().is_empty(),
        "spans forwarded with APM disabled"
    );
}

#[test]
fn outage_with_a_sigkill_loses_nothing_and_sends_no_batch_twice() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[]);
    let ports = DaemonPorts::free();
    let mut daemon = setup.start_daemon(ports);
    let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), ports.relay, &[]);
    assert!(receiver.wait_for(|r| !r.is_empty(), Duration::from_secs(20)));
    // The receiver goes away: connections refused.
    receiver.fail(Scope::All, FailureMode::Refuse, Lasting::Forever);
    let url = format!("http://127.0.0.1:{}", sidecar.port);
    let run = run_client(&ddtrace_env(&url, "v0.5", "it-outage", 2500, 4));
    assert_eq!(run.spans, 10_000);
    // Everything reached the daemon (and its disk queue) ...
    wait_for(Duration::from_secs(30), || {
        sidecar
            .health()
            .filter(|h| h["spans_relayed"] == 10_000)
            .map(|_| ())
    })
    .expect("sidecar relayed all spans");
    std::thread::sleep(Duration::from_secs(3));
    // ... which is killed in the middle of the outage and started again.
    daemon
        .guard
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(2))
        .expect("killed");
    let _daemon = setup.start_daemon(ports);
    std::thread::sleep(Duration::from_secs(2));
    receiver.clear_failure();
    let spans = receiver.wait_spans(10_000, Duration::from_secs(60));
    let ours: Vec<_> = spans.iter().filter(|s| s.service == "it-outage").collect();
    let unique: HashSet<(u64, u64)> = ours.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(unique.len(), 10_000, "every span after recovery");
    let accepted: Vec<String> = receiver
        .all_requests()
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.header("x-sts-batch-id").map(String::from))
        .collect();
    let distinct: HashSet<&String> = accepted.iter().collect();
    assert_eq!(distinct.len(), accepted.len(), "a batch id accepted twice");
    assert_eq!(ours.len(), 10_000, "a span forwarded twice");
}
