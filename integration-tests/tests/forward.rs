//! The daemon forwarding to the capture receiver: topology, processes, metrics, traces
//! and health arrive with the API key; an ended process is deleted; TLS is verified
//! unless told otherwise; feature flags stop what they name; an outage with a SIGKILL in
//! the middle loses nothing.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use integration_tests::forwarding::{
    component_ids, forward_sinks, sink_idle, topologies, ForwardSetup, API_KEY as KEY,
};
use integration_tests::receiver::{CaptureReceiver, Endpoint, FailureMode, Lasting, Scope};
use integration_tests::status::collector;
use integration_tests::traces::{ddtrace_env, run_client, ClientRun, Daemon, Sidecar};
use integration_tests::{free_port, wait_for, Guard};
use node_daemon::status::unix_ms_now;
use serde_json::Value;

#[test]
fn everything_arrives_with_the_api_key_and_ended_processes_are_deleted() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let daemon = setup.start_daemon(free_port());
    let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), daemon.port, &[]);
    let mut sleeper = Guard::spawn(Command::new("/bin/sleep").arg("3633"));
    let pid = sleeper.pid();

    // The process shows in the processes topology.
    let process_urn = wait_for(Duration::from_secs(20), || {
        topologies(&receiver, "ecs-processes").iter().find_map(|t| {
            t["components"]
                .as_array()?
                .iter()
                .find(|c| c["data"]["pid"] == pid)
                .map(|c| c["externalId"].as_str().unwrap().to_string())
        })
    })
    .expect("started process forwarded");
    assert!(process_urn.starts_with("urn:process:/"), "{process_urn}");

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

    // The process ends: a later update deletes it (delete_ids, or a complete snapshot without it).
    sleeper
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(2))
        .unwrap();
    let seen_before = topologies(&receiver, "ecs-processes").len();
    let deleted = wait_for(Duration::from_secs(20), || {
        topologies(&receiver, "ecs-processes")
            .iter()
            .skip(seen_before)
            .find(|t| {
                let in_deletes = t["delete_ids"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|id| id == process_urn.as_str()));
                let full_without =
                    t["start_snapshot"] == true && !component_ids(t).contains(&process_urn);
                in_deletes || full_without
            })
            .map(|_| ())
    });
    assert!(deleted.is_some(), "ended process not deleted");

    // Host topology, metrics, health; every request carries the key.
    let node = topologies(&receiver, "ecs-node");
    assert!(node.iter().any(|t| component_ids(t)
        .iter()
        .any(|id| id.starts_with("urn:host:/"))));
    assert!(
        node[0]["start_snapshot"] == true && node[0]["stop_snapshot"] == true,
        "first update is complete"
    );
    let messages = receiver.intake_messages();
    assert!(messages.iter().any(|m| m["metrics"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|x| x[0] == "system.cpu.user"))));
    assert!(messages.iter().any(|m| m["metrics"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|x| x[0] == "process.mem.rss"))));
    // The sleeper's gauges are tagged with its URN, once prefixed.
    let urn_tag = Value::String(process_urn.clone());
    assert!(messages
        .iter()
        .any(|m| m["metrics"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|x| x[0] == "process.mem.rss"
                && x[3]["tags"]
                    .as_array()
                    .is_some_and(|t| t.contains(&urn_tag))))));
    assert!(messages.iter().all(|m| !m.to_string().contains("urn:urn:")));
    // The sidecar's gRPC stream to the daemon is a connection between two processes of
    // this host: a `connects-to` relation and its traffic metrics.
    let connects = wait_for(Duration::from_secs(20), || {
        topologies(&receiver, "ecs-processes")
            .iter()
            .flat_map(|t| t["relations"].as_array().cloned().unwrap_or_default())
            .find(|r| r["type"]["name"] == "connects-to")
    })
    .expect("a connects-to relation forwarded");
    let relation_tag = format!("relation:{}", connects["externalId"].as_str().unwrap());
    let traffic = wait_for(Duration::from_secs(20), || {
        receiver
            .intake_messages()
            .iter()
            .flat_map(|m| m["metrics"].as_array().cloned().unwrap_or_default())
            .find(|x| {
                x[0] == "connection.bytes_sent"
                    && x[3]["tags"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| *t == relation_tag.as_str()))
            })
    });
    assert!(traffic.is_some(), "traffic metrics of {relation_tag}");
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
        assert!(r.header("x-sts-batch-id").is_some());
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
    let daemon = strict.start_daemon(free_port());
    let error = wait_for(Duration::from_secs(20), || {
        let status = daemon.status()?;
        let sink = collector(&status, "forward.topology")?.clone();
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
    let _daemon = lax.start_daemon(free_port());
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
        let daemon = setup.start_daemon(free_port());
        let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), daemon.port, &[]);
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
    let _daemon = setup.start_daemon(free_port());
    assert!(receiver.wait_for(|r| r.len() >= 12, Duration::from_secs(20)));
    for t in topologies(&receiver, "ecs-processes") {
        assert!(component_ids(&t).is_empty(), "process sent: {t}");
    }
    for t in topologies(&receiver, "ecs-node") {
        assert!(
            component_ids(&t)
                .iter()
                .all(|id| !id.starts_with("urn:container:")),
            "container sent"
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
    let port = free_port();
    let mut daemon = setup.start_daemon(port);
    let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), port, &[]);
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
    let _daemon = setup.start_daemon(port);
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
