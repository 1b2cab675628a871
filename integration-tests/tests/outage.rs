//! A five-minute receiver outage under a sustained 10,000 spans/s, the daemon SIGKILLed
//! and restarted on the same queue half-way through: once the receiver is back every span
//! the sidecar accepted arrives exactly once, no batch id is accepted twice, the metrics
//! and process agent messages of every cycle of both daemons arrive in order, the sidecar drops nothing,
//! and neither daemon's RSS passes a cap derived from its memory bounds.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::forwarding::{sink_idle, ForwardSetup};
use integration_tests::load::PacedLoad;
use integration_tests::receiver::{
    CaptureReceiver, Captured, Endpoint, FailureMode, Lasting, ReceiverOptions, Scope, TraceDetail,
};
use integration_tests::status::collector;
use integration_tests::traces::{Daemon, DaemonPorts, Sidecar};
use integration_tests::{free_port, wait_for, RssSampler};

const OUTAGE: Duration = Duration::from_secs(300);
const SPANS_PER_S: f64 = 10_000.0;
/// Each request: 20 traces of 5 spans, so 100 requests a second.
const TRACES: usize = 20;
const SPANS: usize = 5;
const DRAIN_WITHIN: Duration = Duration::from_secs(150);
/// Largest gap between the timestamps of consecutive messages of one pipeline of one
/// daemon (the interval is 1 s; a cycle may run late on a busy machine).
const MAX_CYCLE_GAP_S: u64 = 5;

/// The daemon's RSS cap, from its memory bounds with the settings of this test (disk
/// queue; no recent-span window, `STS_TRACE_RECENT_SPANS=0`, the default with a receiver):
/// - the daemon itself: 22 MB measured in release (docs/BENCHMARKS.md, `bench/daemon-rss.sh`); this
///   debug build holds about 42 MB steadily at 10,000 spans/s with the receiver away;
/// - queued batches stay on disk (`STS_QUEUE_DIR`; not the 32 MiB memory queue of each
///   pipeline without it), and the sender reads one record at a time: a traces batch is at
///   most 5,000 spans or 3 MiB encoded, twice that with its copy;
/// - the relay: the sidecar's batches are at most 5,000 spans and 4 MiB (8 in flight,
///   mostly in socket buffers: the daemon's HTTP/2 windows let 4 MiB a connection in); one
///   is taken (decoded, correlated, encoded, compressed: about 10 MiB of spans at its
///   largest) while the next is decoded: about 20 MiB;
/// - what is kept per sidecar and per relay batch id is bounded (4,096 of each).
///
/// About 70 MB at worst. 150 MB leaves room for allocator slack (one glibc arena, large
/// blocks reused rather than returned), and is a small part of what a daemon holding the
/// outage's 3 million spans in memory would take (several GB).
const RSS_CAP: u64 = 150 << 20;

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// One accepted request's `X-Sts-Batch-Id`: `<host>/<pipeline>/<daemon start ms>/<seq>`.
struct BatchId {
    pipeline: String,
    daemon_start_ms: u64,
    seq: u64,
}

fn batch_id(request: &Captured) -> BatchId {
    let id = request.header("x-sts-batch-id").expect("a batch id");
    let parts: Vec<&str> = id.rsplitn(4, '/').collect();
    let number = |s: &str| s.parse().unwrap_or_else(|_| panic!("batch id {id}"));
    BatchId {
        seq: number(parts[0]),
        daemon_start_ms: number(parts[1]),
        pipeline: parts[2].to_string(),
    }
}

/// The pipelines the daemon sends a message on every cycle (the process agent's every
/// second here, `ForwardSetup`; there is no ECS topology off ECS).
const CYCLE_PIPELINES: [&str; 3] = ["process-agent", "metrics", "health"];

/// When an accepted request's message was made (s): the intake's collection timestamp,
/// the process agent envelope's.
fn made_at_s(request: &Captured) -> Option<u64> {
    if let Some(m) = request.intake_json() {
        return m["collection_timestamp"].as_u64();
    }
    let ms = request.collector()?.envelope.timestamp_be?;
    u64::try_from(ms / 1000).ok()
}

/// The `forward.traces` sink's queue is empty (nothing is added to it once the load has
/// stopped).
fn traces_queue_empty(daemon: &Daemon) -> bool {
    daemon
        .status()
        .is_some_and(|status| collector(&status, "forward.traces").is_some_and(sink_idle))
}

/// Whether every per-cycle pipeline has delivered a message collected at or after
/// `since_s`. Each queue is sent oldest first, so what it held before (the outage's
/// backlog of both daemons) is through then. Each sink retries on its own backoff (up to
/// 30 s, jittered), so these can come well after the traces; and what arrived is checked
/// at the receiver, where a queue read empty in status would leave the request in flight
/// unchecked.
fn cycle_backlogs_through(requests: &[Captured], since_s: u64) -> bool {
    CYCLE_PIPELINES.iter().all(|&pipeline| {
        requests.iter().any(|r| {
            r.accepted()
                && r.endpoint != Endpoint::Traces
                && r.endpoint != Endpoint::Features
                && batch_id(r).pipeline == pipeline
                && made_at_s(r).is_some_and(|t| t >= since_s)
        })
    })
}

/// Compares what the sidecar accepted with what arrived (both sorted): (missing, extra,
/// arrived more than once).
fn compare(sent: &[(u64, u64)], arrived: &[(u64, u64)]) -> (usize, usize, usize) {
    let twice = arrived.windows(2).filter(|w| w[0] == w[1]).count();
    let (mut missing, mut extra) = (0, 0);
    let (mut i, mut j) = (0, 0);
    while i < sent.len() || j < arrived.len() {
        match (sent.get(i), arrived.get(j)) {
            (Some(s), Some(a)) if s == a => {
                i += 1;
                while arrived.get(j) == Some(s) {
                    j += 1;
                }
            }
            (Some(s), Some(a)) if s < a => {
                missing += 1;
                i += 1;
            }
            (Some(_), None) => {
                missing += 1;
                i += 1;
            }
            _ => {
                extra += 1;
                j += 1;
            }
        }
    }
    (missing, extra, twice)
}

/// Checks one pipeline of one daemon instance: its messages arrived in the order they
/// were made, one for every cycle from its start until `until_s` (no gap in their
/// timestamps).
fn check_cycles(requests: &[(BatchId, u64)], pipeline: &str, daemon_start_ms: u64, until_s: u64) {
    let mine: Vec<(u64, u64)> = requests
        .iter()
        .filter(|(id, _)| id.pipeline == pipeline && id.daemon_start_ms == daemon_start_ms)
        .map(|(id, at)| (id.seq, *at))
        .collect();
    let what = format!("{pipeline} of the daemon started at {daemon_start_ms}");
    assert!(!mine.is_empty(), "no {what} arrived");
    assert!(
        mine.windows(2).all(|w| w[0].0 < w[1].0),
        "{what} arrived out of order"
    );
    let stamps: Vec<u64> = mine.iter().map(|(_, at)| *at).collect();
    let started = daemon_start_ms / 1000;
    let mut last = started;
    for &t in stamps.iter().filter(|&&t| t <= until_s) {
        assert!(
            t <= last + MAX_CYCLE_GAP_S,
            "{what}: no cycle between {last} and {t}"
        );
        last = t;
    }
    assert!(
        last + MAX_CYCLE_GAP_S >= until_s,
        "{what}: the last cycle before {until_s} is {last}"
    );
}

#[test]
fn five_minute_outage_at_10k_spans_a_second_with_a_sigkill_loses_and_repeats_nothing() {
    let test_started = Instant::now();
    let receiver = CaptureReceiver::spawn(ReceiverOptions {
        traces: TraceDetail::IdsOnly,
        ..ReceiverOptions::http()
    });
    let setup = ForwardSetup::new(
        &receiver,
        &[("STS_TRACE_RECENT_SPANS", "0"), ("STS_LOG_LEVEL", "warn")],
    );
    let ports = DaemonPorts::free();
    let mut daemon = setup.start_daemon(ports);
    let sidecar = Sidecar::start(&format!("127.0.0.1:{}", free_port()), ports.relay, &[]);
    let rss = RssSampler::start(Duration::from_secs(1));
    rss.watch("daemon 1", daemon.guard.pid());
    rss.watch("sidecar", sidecar.guard.pid());
    assert!(
        receiver.wait_for(
            |r| r
                .iter()
                .any(|c| c.endpoint == Endpoint::Intake && c.accepted()),
            Duration::from_secs(20)
        ),
        "the daemon sends nothing"
    );

    // The receiver goes away (connections refused) while the spans flow ...
    receiver.fail(Scope::All, FailureMode::Refuse, Lasting::Forever);
    let outage = Instant::now();
    let load = PacedLoad::start(sidecar.port, SPANS_PER_S, TRACES, SPANS);
    // ... the daemon is killed half-way and started again on the same queue ...
    sleep_until(outage + OUTAGE / 2);
    daemon
        .guard
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(5))
        .expect("daemon killed");
    let killed_s = unix_s();
    let daemon = setup.start_daemon(ports);
    rss.watch("daemon 2", daemon.guard.pid());
    sleep_until(outage + OUTAGE);
    // ... and the receiver comes back as the load stops.
    let load = load.stop();
    receiver.clear_failure();
    let recovered = Instant::now();
    let recovered_s = unix_s();
    let sent = load.sent.len();
    let drain = wait_for(DRAIN_WITHIN, || {
        (receiver.span_count() >= sent).then(|| recovered.elapsed())
    });
    // Anything sent twice would come by the time the traces queue is empty; the topology
    // and metrics of the outage by the time a cycle's made since the recovery arrive.
    let settled = wait_for(Duration::from_secs(90), || {
        traces_queue_empty(&daemon).then_some(())
    })
    .is_some()
        && receiver.wait_for(
            |r| cycle_backlogs_through(r, recovered_s + 1),
            Duration::from_secs(90),
        );
    let settled_after = recovered.elapsed();
    let rss = rss.finish();
    let health = sidecar.health().expect("sidecar health");
    let drops = daemon
        .status()
        .map(|s| s["drops"].clone())
        .unwrap_or_default();
    let checked_s = unix_s();

    let mut arrived = receiver.span_ids();
    arrived.sort_unstable();
    let (missing, extra, twice) = compare(&load.sent, &arrived);
    let rss_of = |label: &str| {
        rss.iter()
            .find(|r| r.label == label)
            .unwrap_or_else(|| panic!("no RSS of {label}"))
            .clone()
    };
    let (rss1, rss2, rss_sidecar) = (rss_of("daemon 1"), rss_of("daemon 2"), rss_of("sidecar"));
    let requests = receiver.all_requests();
    let accepted: Vec<&Captured> = requests.iter().filter(|r| r.accepted()).collect();
    let cycles: Vec<(BatchId, u64)> = accepted
        .iter()
        .filter(|r| r.endpoint != Endpoint::Traces && r.endpoint != Endpoint::Features)
        .filter_map(|r| Some((batch_id(r), made_at_s(r)?)))
        .collect();
    let starts: BTreeSet<u64> = cycles.iter().map(|(id, _)| id.daemon_start_ms).collect();
    let starts: Vec<u64> = starts.into_iter().collect();
    let process_agent_counts: Vec<usize> = starts
        .iter()
        .map(|&start| {
            cycles
                .iter()
                .filter(|(id, _)| id.pipeline == "process-agent" && id.daemon_start_ms == start)
                .count()
        })
        .collect();
    println!(
        "outage {} s at {SPANS_PER_S} spans/s: spans sent {sent}, arrived {} ({} distinct; \
         missing {missing}, extra {extra}, twice {twice}); max RSS daemon 1 {:.1} MB \
         ({} samples), daemon 2 {:.1} MB ({} samples), sidecar {:.1} MB (cap {:.0} MB); \
         drained {} after recovery, every queue through after {:.1} s; process agent messages \
         per daemon {process_agent_counts:?}; sending at most {:.0} ms behind schedule; test wall time \
         {:.0} s",
        OUTAGE.as_secs(),
        arrived.len(),
        arrived.len() - twice,
        mb(rss1.max_bytes),
        rss1.samples,
        mb(rss2.max_bytes),
        rss2.samples,
        mb(rss_sidecar.max_bytes),
        mb(RSS_CAP),
        drain.map_or("NOT".to_string(), |d| format!(
            "in {:.1} s",
            d.as_secs_f64()
        )),
        settled_after.as_secs_f64(),
        load.behind_max.as_secs_f64() * 1e3,
        test_started.elapsed().as_secs_f64(),
    );

    // The load ran as asked and the sidecar took and relayed all of it.
    assert_eq!(load.failed, 0, "requests failed: {:?}", load.first_error);
    assert!(
        sent as f64 >= 0.95 * SPANS_PER_S * OUTAGE.as_secs_f64(),
        "only {sent} spans sent in {:?}",
        load.elapsed
    );
    assert_eq!(health["spans_received"], sent, "sidecar: {health}");
    assert_eq!(
        health["spans_dropped"], 0,
        "sidecar dropped spans: {health}"
    );
    assert_eq!(health["spans_relayed"], sent, "sidecar: {health}");

    // Every span once.
    assert_eq!(
        receiver.counters().dropped,
        0,
        "the receiver forgot requests"
    );
    assert!(drain.is_some(), "not drained within {DRAIN_WITHIN:?}");
    assert!(
        settled,
        "the forwarding queues were not through within 90 s of the drain"
    );
    assert_eq!(
        (missing, extra, twice),
        (0, 0, 0),
        "spans missing, unknown, or twice"
    );

    // No batch id accepted twice.
    let mut ids = HashSet::new();
    for r in &accepted {
        let id = r.header("x-sts-batch-id").expect("a batch id");
        assert!(ids.insert(id), "batch {id} accepted twice");
    }

    // The messages of every cycle of both daemons arrived, in order: those of the outage
    // (over the kill) and those made since the recovery.
    assert_eq!(starts.len(), 2, "batches of {} daemons", starts.len());
    let forward_drops = drops.as_object().is_some_and(|d| {
        d.iter()
            .any(|(k, v)| k.starts_with("forward.") && v.as_u64() != Some(0))
    });
    assert!(!forward_drops, "the daemon dropped batches: {drops}");
    for pipeline in ["process-agent", "metrics"] {
        check_cycles(&cycles, pipeline, starts[0], killed_s);
        check_cycles(&cycles, pipeline, starts[1], checked_s);
    }

    // Memory.
    for r in [&rss1, &rss2] {
        assert!(
            r.max_bytes <= RSS_CAP,
            "{} RSS {:.1} MB over the cap",
            r.label,
            mb(r.max_bytes)
        );
    }
}
