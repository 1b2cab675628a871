//! What forwarding costs: CPU time (this thread) and bytes on the wire after compression,
//! per 10,000 spans as they come from the relay (split, group, protobuf, gzip, queue on
//! disk, read back and POSTed over HTTPS; uniform spans, and mixed traces as a Java service
//! makes them), and per cycle of a snapshot of 2,000 processes and 10,000 connections: the
//! process agent protocol's messages (protobuf, zstd, queue, POST) beside the intake
//! topology and metrics that carried the same before (its peer, `support/intake_peer.rs`).
//! Targets: under 5 ms CPU per 10,000 spans; a process agent cycle under 20 ms and no more
//! than its peer. The receiver is the capture
//! receiver on loopback, on threads of its own; the client runs on a current-thread runtime
//! on this thread, so the connection's work is counted (and loopback's receiving side,
//! which the kernel does on the sender's CPU). Run with
//! `cargo bench -p integration-tests --bench forward_cost` (add `-- process-agent` for the
//! process agent cycle only).

#[path = "support/intake_peer.rs"]
mod intake_peer;

use std::time::Duration;

use bench_support::thread_cpu;
use bytes::Bytes;
use integration_tests::receiver::{
    content_decode, decode, CaptureReceiver, Decoded, Endpoint, ReceiverOptions, TraceDetail,
};
use node_daemon::forward::client::{endpoint, ReceiverClient};
use node_daemon::forward::encode::diff::TopologyDiff;
use node_daemon::forward::encode::intake::{self, INTAKE_PATH};
use node_daemon::forward::encode::traces::{self, TRACES_PATH};
use node_daemon::forward::encode::{gzip, gzip_headers, gzip_json};
use node_daemon::forward::pipelines::metrics::snapshot_metrics;
use node_daemon::forward::pipelines::process_agent::{
    self, EnvelopeWriter, Features, MessageType, ProcessAgent, Settings,
};
use node_daemon::forward::queue::DiskQueue;
use node_daemon::forward::sink::batch::{push_batches, Batch};
use node_daemon::join::connects_to;
use node_daemon::model::{Connection, Host, HostTelemetry, Process, Relation, Snapshot};
use node_daemon::span::CorrelatedSpan;
use prost::Message;
use sts_proto::daemon::v1::Span;
use tokio::runtime::Runtime;
use trace_sidecar::relay::BatchLimits;
use url::Url;

/// The relay encoding of `n` spans, and where each is in `buffer` with the fields the
/// relay reads from it.
struct Template {
    buffer: Vec<u8>,
    spans: Vec<Placed>,
}

struct Placed {
    bytes: std::ops::Range<usize>,
    trace_id: u64,
    start: i64,
    duration: i64,
}

impl Placed {
    fn new(bytes: std::ops::Range<usize>, span: &Span) -> Self {
        Self {
            bytes,
            trace_id: span.trace_id,
            start: span.start,
            duration: span.duration,
        }
    }
}

/// Appends `span`'s encoding, then its meta entries and metrics in the order given (a
/// message's encodings put together are one message).
fn append(
    buffer: &mut Vec<u8>,
    span: &Span,
    meta: impl IntoIterator<Item = (String, String)>,
    metrics: impl IntoIterator<Item = (&'static str, f64)>,
) {
    span.encode(buffer).expect("a Vec grows");
    for entry in meta {
        let meta = [entry].into();
        let entry = Span {
            meta,
            ..Span::default()
        };
        entry.encode(buffer).expect("a Vec grows");
    }
    for (key, value) in metrics {
        let metrics = [(key.to_string(), value)].into();
        let entry = Span {
            metrics,
            ..Span::default()
        };
        entry.encode(buffer).expect("a Vec grows");
    }
}

/// Spans of 12 meta entries and 3 metrics each, the entries in one order as a client
/// writes them (the sidecar keeps the order it was given; prost would write a `HashMap`
/// in an order of its own for each span).
fn template(n: u64) -> Template {
    let mut buffer = Vec::new();
    let spans = (0..n)
        .map(|i| {
            let span = Span {
                service: "checkout".into(),
                name: "http.request".into(),
                resource: format!("GET /item/{}", i % 50),
                trace_id: 1_000_000 + i / 10,
                span_id: 5_000_000 + i,
                parent_id: if i % 10 == 0 { 0 } else { 5_000_000 + i - 1 },
                start: 1_795_000_000_000_000_000 + i as i64 * 1000,
                duration: 120_000,
                error: 0,
                r#type: "web".into(),
                ..Span::default()
            };
            let start = buffer.len();
            let meta = (0..10)
                .map(|k| (format!("tag.{k}"), format!("value-{k}-{}", i % 97)))
                .chain([
                    ("span.pid".to_string(), "4242".to_string()),
                    (
                        "span.serviceURN".to_string(),
                        "urn:service:/checkout".to_string(),
                    ),
                ]);
            let metrics = [
                ("_sampling_priority_v1", 1.0),
                ("_dd.measured", 1.0),
                ("db.rows", i as f64),
            ];
            append(&mut buffer, &span, meta, metrics);
            Placed::new(start..buffer.len(), &span)
        })
        .collect();
    Template { buffer, spans }
}

/// Traces as a Java service makes them: a server span (10 meta entries), three database
/// spans (an SQL statement each) and two internal spans, random 64-bit ids, one span in 20
/// failed with a message and a stack.
fn mixed_template(n: u64) -> Template {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut buffer = Vec::new();
    let mut spans = Vec::new();
    let mut trace_id = 0;
    let mut root = 0;
    for i in 0..n {
        let kind = i % 6;
        if kind == 0 {
            trace_id = random();
            root = random();
        }
        let start_ns = 1_795_000_000_000_000_000 + i as i64 * 37_000 + (random() % 5_000) as i64;
        let (name, resource, meta): (&str, String, Vec<(String, String)>) = match kind {
            0 => (
                "servlet.request",
                format!("GET /api/orders/{}", random() % 10_000),
                vec![
                    ("component".into(), "tomcat-server".into()),
                    ("span.kind".into(), "server".into()),
                    ("http.method".into(), "GET".into()),
                    (
                        "http.url".into(),
                        format!("http://orders:8080/api/orders/{}", random() % 10_000),
                    ),
                    ("http.status_code".into(), "200".into()),
                    (
                        "peer.ipv4".into(),
                        format!("10.0.{}.{}", random() % 4, random() % 250),
                    ),
                    (
                        "thread.name".into(),
                        format!("http-nio-8080-exec-{}", random() % 10),
                    ),
                    ("language".into(), "jvm".into()),
                    (
                        "runtime-id".into(),
                        "8f6e4a2c-1b3d-4e5f-9a8b-7c6d5e4f3a2b".into(),
                    ),
                    ("env".into(), "production".into()),
                ],
            ),
            1..=3 => (
                "postgresql.query",
                format!(
                    "SELECT * FROM orders WHERE customer_id = ? AND status = '{}'",
                    ["open", "paid", "shipped"][(random() % 3) as usize]
                ),
                vec![
                    ("component".into(), "java-jdbc-prepared_statement".into()),
                    ("span.kind".into(), "client".into()),
                    ("db.type".into(), "postgresql".into()),
                    ("db.instance".into(), "orders".into()),
                    ("peer.hostname".into(), "orders-db.internal".into()),
                ],
            ),
            _ => (
                "spring.handler",
                "OrderController.get".into(),
                vec![
                    ("component".into(), "spring-web-controller".into()),
                    (
                        "thread.name".into(),
                        format!("http-nio-8080-exec-{}", random() % 10),
                    ),
                ],
            ),
        };
        let error = i % 20 == 7;
        let span = Span {
            service: if kind == 1 || kind == 2 || kind == 3 {
                "orders-postgresql".into()
            } else {
                "orders".into()
            },
            name: name.into(),
            resource,
            trace_id,
            span_id: if kind == 0 { root } else { random() },
            parent_id: if kind == 0 { 0 } else { root },
            start: start_ns,
            duration: (random() % 2_000_000) as i64,
            error: i32::from(error),
            r#type: if kind == 0 {
                "web".into()
            } else if kind <= 3 {
                "sql".into()
            } else {
                String::new()
            },
            ..Span::default()
        };
        let start = buffer.len();
        let mut meta = meta;
        if error {
            meta.push(("error.msg".into(), "connection reset by peer".into()));
            meta.push(("error.stack".into(), "java.net.SocketException: Connection reset\n\tat java.net.SocketInputStream.read(SocketInputStream.java:186)\n\tat org.postgresql.core.PGStream.receiveChar(PGStream.java:290)\n\tat org.postgresql.core.v3.QueryExecutorImpl.processResults(QueryExecutorImpl.java:1943)".into()));
        }
        let metrics = [
            ("_sampling_priority_v1", 1.0),
            ("_dd.measured", 1.0),
            ("thread.id", (random() % 200) as f64),
        ];
        append(&mut buffer, &span, meta, metrics);
        spans.push(Placed::new(start..buffer.len(), &span));
    }
    Template { buffer, spans }
}

/// Correlated spans as the relay keeps them: slices of one buffer, fresh as a relay batch
/// that has just arrived (made outside the timed part, and without the template's many
/// small allocations, whose freeing glibc would charge to the next large allocation).
fn spans(template: &Template) -> Vec<CorrelatedSpan> {
    let buffer = Bytes::copy_from_slice(&template.buffer);
    template
        .spans
        .iter()
        .map(|p| CorrelatedSpan {
            common: Bytes::new(),
            raw: buffer.slice(p.bytes.clone()),
            extra: Bytes::new(),
            trace_id: p.trace_id,
            start: p.start,
            duration: p.duration,
        })
        .collect()
}

fn process(pid: u32) -> Process {
    let create_time_ms = 1_795_000_000_000 + u64::from(pid);
    Process {
        pid,
        ppid: 1,
        create_time_ms,
        urn: format!("urn:process:/bench-host:{pid}:{create_time_ms}"),
        name: "java".into(),
        exe: Some("/usr/bin/java".into()),
        cmdline: vec![
            "java".into(),
            "-Xmx512m".into(),
            "-jar".into(),
            format!("/app/service-{pid}.jar"),
        ],
        user: "app".into(),
        uid: Some(1000),
        cwd: Some("/app".into()),
        state: 'S',
        cpu_pct: Some(1.5),
        cpu_user_pct: Some(1.0),
        cpu_system_pct: Some(0.5),
        cpu_user_seconds: 12.0,
        cpu_system_seconds: 3.0,
        rss_bytes: 200 << 20,
        vms_bytes: 2 << 30,
        read_bytes: Some(4096),
        write_bytes: Some(8192),
        read_bytes_per_sec: Some(10.0),
        write_bytes_per_sec: Some(20.0),
        read_ops_per_sec: Some(5.0),
        write_ops_per_sec: Some(2.0),
        threads: 40,
        open_fds: Some(120),
        container_id: None,
        ecs_task_arn: None,
        readmitted: false,
    }
}

/// One end of a TCP connection between two processes of this host.
fn end(p: &Process, local: u16, remote: u16, side: &'static str, sent: u64) -> Connection {
    Connection {
        pid: p.pid,
        process_create_time_ms: p.create_time_ms,
        container_id: None,
        netns: 4_026_531_840,
        protocol: "tcp",
        ip_version: 4,
        local: ([10, 0, 1, 5], local).into(),
        remote: ([10, 0, 1, 5], remote).into(),
        direction: "local",
        side: Some(side),
        state: "established",
        bytes_sent: Some(sent),
        bytes_received: Some(sent / 3),
        bytes_sent_per_sec: Some(sent as f64 / 10.0),
        bytes_received_per_sec: Some(sent as f64 / 30.0),
        retransmits: Some(0),
        rtt_us: Some(120),
        tx_queue: 0,
        rx_queue: 0,
        inode: u64::from(local) << 16 | u64::from(remote),
        start_time_ms: None,
        closed: false,
    }
}

/// `processes` processes, and `connections` connection ends: half clients, half the
/// servers they reach, each client process talking to a few others; the relations are
/// what the join makes of them (`runs-on` each process, `connects-to` each pair).
fn snapshot(processes: u32, connections: u32) -> Snapshot {
    let host_urn = "urn:host:/bench-host".to_string();
    let processes: Vec<Process> = (1000..1000 + processes).map(process).collect();
    let n = processes.len();
    let mut ends = Vec::with_capacity(connections as usize);
    for k in 0..connections / 2 {
        let client = &processes[k as usize % n];
        let server_index = (k as usize * 7 + 1) % n;
        let server = &processes[server_index];
        let server_port = 9000 + server_index as u16;
        let client_port = 20_000 + k as u16;
        let sent = 1000 + u64::from(k);
        ends.push(end(client, client_port, server_port, "client", sent));
        ends.push(end(server, server_port, client_port, "server", sent / 3));
    }
    let mut relations: Vec<Relation> = processes
        .iter()
        .map(|p| Relation {
            kind: "runs-on",
            source: p.urn.clone(),
            target: host_urn.clone(),
            traffic: None,
        })
        .collect();
    relations.extend(connects_to(&ends, &[], &processes, &[]));
    Snapshot {
        host: Host {
            hostname: "bench-host".into(),
            urn: host_urn,
            os: "Amazon Linux 2023".into(),
            kernel: "6.1".into(),
            cpu_count: 4,
            memory_total_bytes: 16 << 30,
            boot_time_ms: 1_795_000_000_000,
            uptime_seconds: 1000.0,
            telemetry: HostTelemetry::default(),
            ecs: None,
        },
        processes,
        containers: Vec::new(),
        connections: ends,
        relations,
        translations: Vec::new(),
    }
}

/// A batch as the forwarder makes them for `path`.
fn batch(path: &str, content_type: &str, body: Vec<u8>) -> Batch {
    Batch {
        id: "bench/1/1".into(),
        path: path.into(),
        headers: gzip_headers(content_type),
        spans: 0,
        relay: None,
        body: body.into(),
    }
}

fn traces_batch(body: Vec<u8>) -> Batch {
    batch(TRACES_PATH, "application/x-protobuf", body)
}

/// What happens to a batch once made: the disk queue, then the sender, which reads it
/// back, POSTs it over HTTPS and takes it off the queue.
struct Delivery {
    queue: DiskQueue,
    runtime: Runtime,
    client: ReceiverClient,
    base: Url,
}

impl Delivery {
    fn new(queue: DiskQueue, receiver: &CaptureReceiver) -> Self {
        Self {
            queue,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: ReceiverClient::new(true).expect("a client accepting any certificate"),
            base: Url::parse(&receiver.url()).unwrap(),
        }
    }

    fn queue(&mut self, batch: &Batch) {
        self.queue
            .push_parts(&[&batch.record_head(), &batch.body])
            .unwrap();
    }

    /// As the process agent pipeline queues a cycle's messages: with one sync.
    fn queue_all(&mut self, batches: &[Batch]) {
        for outcome in push_batches(&mut self.queue, batches) {
            outcome.unwrap();
        }
    }

    /// Sends every queued batch, oldest first, as the sender does.
    fn send_all(&mut self) {
        while let Some(record) = self.queue.peek().unwrap() {
            let batch = Batch::from_record(record.payload).unwrap();
            let url = endpoint(&self.base, &batch.path);
            let headers = batch.request_headers();
            self.runtime
                .block_on(self.client.post(&url, &headers, batch.body.clone(), 0))
                .expect("the capture receiver takes every batch");
            self.queue.ack(record.id).unwrap();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// gzip of `raw` by zlib-rs at level 1: mean CPU milliseconds of 15, and the body's size.
fn zlib_rs_fast(raw: &[u8]) -> (f64, usize) {
    use std::io::Write;
    let gzip = || {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(raw).expect("into memory");
        gz.finish().expect("into memory")
    };
    let bytes = gzip().len();
    (cpu_ms(15, || drop(std::hint::black_box(gzip()))), bytes)
}

/// Mean CPU milliseconds of `runs` calls of `f`.
fn cpu_ms(runs: u32, mut f: impl FnMut()) -> f64 {
    let start = thread_cpu();
    for _ in 0..runs {
        f();
    }
    ms_since(start) / f64::from(runs)
}

/// The spans as relay batches arrive: cut before the span that would take a batch past
/// the sidecar's default limits (its `BatchLimits`).
fn relay_batches(spans: Vec<CorrelatedSpan>) -> Vec<Vec<CorrelatedSpan>> {
    let limits = BatchLimits::default();
    let mut batches: Vec<Vec<CorrelatedSpan>> = vec![Vec::new()];
    let mut bytes = 0;
    for span in spans {
        let current = batches.last_mut().expect("never empty");
        if !current.is_empty()
            && (current.len() == limits.max_spans || bytes + span.encoded_len() > limits.max_bytes)
        {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += span.encoded_len();
        batches.last_mut().expect("never empty").push(span);
    }
    batches
}

/// CPU milliseconds of one round of `forward_round`, by phase.
#[derive(Default, Clone, Copy)]
struct Round {
    /// Splitting relay batches, grouping by trace, protobuf and gzip.
    encode: f64,
    /// Writing each batch to the disk queue (and syncing it).
    queue: f64,
    /// Reading each back from the queue, POSTing it over HTTPS, acknowledging it.
    send: f64,
}

impl Round {
    fn total(&self) -> f64 {
        self.encode + self.queue + self.send
    }
}

fn ms_since(start: Duration) -> f64 {
    (thread_cpu() - start).as_secs_f64() * 1000.0
}

/// One round of the spans of `template` through the daemon, as the relay hands them over
/// in relay batches of the sidecar's default size: each batch split at the forwarder's
/// limits, grouped by trace, protobuf, gzip, queued on disk (synced per batch, the
/// queue's default), then read back, sent and acknowledged as the sender does. Returns
/// the CPU time by phase, the forwarded batches and their bytes.
fn forward_round(
    delivery: &mut Delivery,
    encoder: &mut traces::Encoder,
    template: &Template,
) -> (Round, usize, usize) {
    let input = relay_batches(spans(template));
    let (mut round, mut batches, mut wire) = (Round::default(), 0, 0);
    for relay_batch in input {
        let start = thread_cpu();
        let split = traces::split(relay_batch);
        round.encode += ms_since(start);
        for spans in split {
            let start = thread_cpu();
            let body = encoder.encode("bench-host", &spans);
            drop(spans);
            round.encode += ms_since(start);
            batches += 1;
            wire += body.len();
            let start = thread_cpu();
            delivery.queue(&traces_batch(body));
            round.queue += ms_since(start);
        }
    }
    let start = thread_cpu();
    delivery.send_all();
    round.send = ms_since(start);
    (round, batches, wire)
}

/// 15 rounds of `forward_round`: the round of median CPU time, the batches and the bytes
/// of one round.
fn forward_spans(delivery: &mut Delivery, template: &Template) -> (Round, usize, usize) {
    // As the forwarder keeps one from batch to batch.
    let mut encoder = traces::Encoder::default();
    let (mut rounds, mut batches, mut wire) = (Vec::new(), 0, 0);
    for _ in 0..15 {
        let (round, b, w) = forward_round(delivery, &mut encoder, template);
        rounds.push(round);
        (batches, wire) = (b, w);
    }
    rounds.sort_by(|a, b| a.total().total_cmp(&b.total()));
    (rounds[rounds.len() / 2], batches, wire)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = CaptureReceiver::spawn(ReceiverOptions {
        // Only the span ids of what arrives are kept.
        traces: TraceDetail::IdsOnly,
        ..ReceiverOptions::https()
    });
    let queue = DiskQueue::open(dir.path(), 1 << 30).unwrap();
    let mut delivery = Delivery::new(queue, &receiver);

    // `cargo bench ... -- process-agent`: that part only.
    if std::env::args().any(|a| a == "process-agent") {
        process_agent_cycle(&mut delivery);
        return;
    }
    for (what, template) in [
        ("10,000 spans", template(10_000)),
        (
            "10,000 spans of mixed traces (server, SQL and internal spans, random ids)",
            mixed_template(10_000),
        ),
    ] {
        let (round, batches, wire) = forward_spans(&mut delivery, &template);
        let ms = round.total();
        println!(
            "{what}: {ms:.2} ms CPU (target < 5 ms: {}), {batches} batches, {wire} bytes on the wire ({:.1} bytes/span)",
            if ms < 5.0 { "PASS" } else { "FAIL" },
            wire as f64 / 10_000.0
        );
        // Where the time goes, and gzip alone of the same protobuf.
        let body = traces::Encoder::default().encode("bench-host", &spans(&template));
        let raw = content_decode(Some("gzip"), &body).expect("the bench's own gzip");
        let gzip_ms = cpu_ms(15, || {
            std::hint::black_box(gzip::gzip(&raw));
        });
        let (zlib_ms, zlib_bytes) = zlib_rs_fast(&raw);
        println!(
            "  of which encoding {:.2} ms, queueing on disk {:.2} ms, sending {:.2} ms; gzip alone of its {} protobuf bytes ({:.0} a span) {gzip_ms:.2} ms",
            round.encode,
            round.queue,
            round.send,
            raw.len(),
            raw.len() as f64 / 10_000.0,
        );
        println!(
            "  peer, same run: zlib-rs at its fastest level (the gzip before igzip) {zlib_ms:.2} ms, {zlib_bytes} bytes; igzip takes {:.0}% of its time, the whole forwarding {:.0}%",
            100.0 * gzip_ms / zlib_ms,
            100.0 * ms / zlib_ms
        );
    }

    process_agent_cycle(&mut delivery);
}

/// One cycle of the 2,000-process, 10,000-connection snapshot: the process agent's
/// messages (every process and connection reported, as after the first minute), and the
/// peer's intake topology (complete, then unchanged) and metrics. Median CPU of 9 rounds
/// each, queued on disk and POSTed over HTTPS as the senders do.
fn process_agent_cycle(delivery: &mut Delivery) {
    let snap = snapshot(2000, 10_000);
    let settings = Settings {
        short_lived_processes: Duration::ZERO,
        short_lived_connections: Duration::ZERO,
        ..Settings::default()
    };
    let mut agent = ProcessAgent::new(settings, Features::default()).unwrap();
    let headers = process_agent::headers("bench-host");
    let (mut rounds, mut agent_bytes, mut messages) = (Vec::new(), 0, 0);
    for round in 0..9u64 {
        let now_ms = 1_796_000_000_000 + round * 30_000;
        let mut r = Round::default();
        let start = thread_cpu();
        let out = agent.cycle(&snap, now_ms, Duration::from_secs(10)).unwrap();
        r.encode = ms_since(start);
        (agent_bytes, messages) = (0, out.len());
        let start = thread_cpu();
        let batches: Vec<Batch> = out
            .into_iter()
            .map(|m| {
                agent_bytes += m.body.len();
                let mut b = batch(m.path, "application/x-protobuf", m.body);
                b.headers = headers.clone();
                b
            })
            .collect();
        delivery.queue_all(&batches);
        r.queue = ms_since(start);
        let start = thread_cpu();
        delivery.send_all();
        r.send = ms_since(start);
        rounds.push(r);
    }
    rounds.sort_by(|a, b| a.total().total_cmp(&b.total()));
    let agent_round = rounds[rounds.len() / 2];
    let raw = agent_messages(&mut agent, &snap);
    let c = agent.counts();
    assert_eq!((c.processes, c.connections.reported), (2000, 10_000));

    let mut full_cpu = Vec::new();
    let mut delta_cpu = Vec::new();
    let (mut full_bytes, mut delta_bytes, mut metric_bytes) = (0, 0, 0);
    for _ in 0..9 {
        let mut diff = TopologyDiff::new(6);
        for round in 0..2 {
            let start = thread_cpu();
            let update = diff.update(intake_peer::process_elements(&snap));
            let topo = gzip_json(&intake::topology_message(
                "bench-host",
                "bench-host",
                &update.elements,
                &update.delete_ids,
                0,
            ));
            let mut gauges = snapshot_metrics(&snap, 0);
            gauges.extend(intake_peer::gauges(&snap, 0));
            let metrics = gzip_json(&intake::metrics_message("bench-host", &gauges, 0));
            for body in [&topo, &metrics] {
                delivery.queue(&batch(INTAKE_PATH, "application/json", body.to_vec()));
            }
            delivery.send_all();
            let ms = ms_since(start);
            metric_bytes = metrics.len();
            if round == 0 {
                full_cpu.push(ms);
                full_bytes = topo.len();
            } else {
                delta_cpu.push(ms);
                delta_bytes = topo.len();
            }
        }
    }
    let (agent_ms, full_ms, delta_ms) = (agent_round.total(), median(full_cpu), median(delta_cpu));
    println!(
        "process agent cycle, 2,000 processes and 10,000 connections: {agent_ms:.2} ms CPU (target <= 20 ms and <= the peer: {}), {messages} messages, {agent_bytes} bytes on the wire",
        if agent_ms <= 20.0 && agent_ms <= full_ms { "PASS" } else { "FAIL" },
    );
    println!(
        "  of which messages (protobuf, zstd) {:.2} ms, queueing on disk {:.2} ms, sending {:.2} ms",
        agent_round.encode, agent_round.queue, agent_round.send
    );
    let raw_bytes: usize = raw.iter().map(|(_, m)| m.len()).sum();
    let levels: Vec<String> = [1, -1, -3, -7]
        .into_iter()
        .map(|level| {
            let mut writer = EnvelopeWriter::with_level(level).unwrap();
            let mut bytes = 0;
            let ms = cpu_ms(9, || {
                bytes = raw
                    .iter()
                    .map(|(kind, m)| writer.write(*kind, 0, m).unwrap().len())
                    .sum();
            });
            format!("level {level} {ms:.2} ms {bytes} bytes")
        })
        .collect();
    println!(
        "  zstd of its {raw_bytes} protobuf bytes: {}",
        levels.join(", ")
    );
    println!(
        "  peer, same run: intake topology + metrics of the same snapshot, complete {full_ms:.2} ms CPU ({full_bytes} + {metric_bytes} bytes), unchanged {delta_ms:.2} ms CPU ({delta_bytes} + {metric_bytes} bytes); the process agent cycle takes {:.0}% of the complete one, {:.0}% of the unchanged one",
        100.0 * agent_ms / full_ms,
        100.0 * agent_ms / delta_ms,
    );
}

/// The protobuf of one cycle's messages, by type.
fn agent_messages(agent: &mut ProcessAgent, snap: &Snapshot) -> Vec<(MessageType, Vec<u8>)> {
    agent
        .cycle(snap, 1_797_000_000_000, Duration::from_secs(10))
        .unwrap()
        .into_iter()
        .map(|m| {
            let decoded = decode(Endpoint::Collector, None, &m.body).unwrap();
            let Decoded::Collector(c) = decoded else {
                panic!("not a process agent message")
            };
            (m.kind, c.message.expect("zstd the receiver reads"))
        })
        .collect()
}
