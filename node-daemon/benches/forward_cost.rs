//! What forwarding costs: CPU time (this thread) and bytes on the wire after compression,
//! per 10,000 spans (group, protobuf, gzip, queue on disk) and per 1,000-process snapshot
//! (topology diff, intake JSON, metrics, gzip, queue on disk). Target: under 5 ms CPU per
//! 10,000 spans. Run with `cargo bench -p node-daemon --bench forward_cost`.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use node_daemon::forward::batch::Batch;
use node_daemon::forward::diff::TopologyDiff;
use node_daemon::forward::intake;
use node_daemon::forward::queue::DiskQueue;
use node_daemon::forward::{gzip, gzip_json, traces};
use node_daemon::model::{Host, HostTelemetry, Process, Relation, Snapshot};
use node_daemon::traces::CorrelatedSpan;
use prost::Message;
use sts_proto::daemon::v1::Span;

fn thread_cpu() -> Duration {
    // SAFETY: rusage is plain data; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Correlated spans as the relay keeps them (outside the timed part): slices of the one
/// buffer their batch arrived in.
fn spans(n: u64) -> Vec<CorrelatedSpan> {
    let spans: Vec<Span> = (0..n)
        .map(|i| {
            let meta: HashMap<String, String> = (0..10)
                .map(|k| (format!("tag.{k}"), format!("value-{k}-{}", i % 97)))
                .chain([
                    ("span.pid".to_string(), "4242".to_string()),
                    (
                        "span.serviceURN".to_string(),
                        "urn:service:/checkout".to_string(),
                    ),
                ])
                .collect();
            let metrics: HashMap<String, f64> = [
                ("_sampling_priority_v1", 1.0),
                ("_dd.measured", 1.0),
                ("db.rows", i as f64),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            Span {
                service: "checkout".into(),
                name: "http.request".into(),
                resource: format!("GET /item/{}", i % 50),
                trace_id: 1_000_000 + i / 10,
                span_id: 5_000_000 + i,
                parent_id: if i % 10 == 0 { 0 } else { 5_000_000 + i - 1 },
                start: 1_795_000_000_000_000_000 + i as i64 * 1000,
                duration: 120_000,
                error: 0,
                meta,
                metrics,
                r#type: "web".into(),
            }
        })
        .collect();
    let mut buffer = Vec::new();
    let mut ends = Vec::with_capacity(spans.len());
    for span in &spans {
        span.encode(&mut buffer).expect("a Vec grows");
        ends.push(buffer.len());
    }
    let buffer = Bytes::from(buffer);
    let starts = std::iter::once(0).chain(ends.iter().copied());
    spans
        .iter()
        .zip(starts.zip(ends.iter().copied()))
        .map(|(span, (start, end))| CorrelatedSpan {
            raw: buffer.slice(start..end),
            extra: Bytes::new(),
            trace_id: span.trace_id,
            start: span.start,
            duration: span.duration,
        })
        .collect()
}

fn snapshot(processes: u32) -> Snapshot {
    let host_urn = "urn:host:/bench-host".to_string();
    let processes: Vec<Process> = (0..processes)
        .map(|pid| Process {
            pid: 1000 + pid,
            ppid: 1,
            create_time_ms: 1_795_000_000_000 + u64::from(pid),
            urn: format!(
                "urn:process:/bench-host:{}:{}",
                1000 + pid,
                1_795_000_000_000 + u64::from(pid)
            ),
            name: "java".into(),
            exe: Some("/usr/bin/java".into()),
            cmdline: vec![
                "java".into(),
                "-Xmx512m".into(),
                "-jar".into(),
                format!("/app/service-{pid}.jar"),
            ],
            user: "app".into(),
            cpu_pct: Some(1.5),
            cpu_user_seconds: 12.0,
            cpu_system_seconds: 3.0,
            rss_bytes: 200 << 20,
            vms_bytes: 2 << 30,
            read_bytes: Some(4096),
            write_bytes: Some(8192),
            threads: 40,
            open_fds: Some(120),
            container_id: None,
            ecs_task_arn: None,
            readmitted: false,
        })
        .collect();
    let relations = processes
        .iter()
        .map(|p| Relation {
            kind: "runs-on",
            source: p.urn.clone(),
            target: host_urn.clone(),
            traffic: None,
        })
        .collect();
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
        connections: Vec::new(),
        relations,
    }
}

fn batch(body: Vec<u8>) -> Batch {
    Batch {
        id: "bench/1/1".into(),
        path: "/intake".into(),
        headers: Vec::new(),
        spans: 0,
        relay: None,
        body: body.into(),
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut raw)
        .expect("the bench's own gzip");
    raw
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = DiskQueue::open(dir.path(), 1 << 30).unwrap();

    // 10,000 spans: encode + gzip + queue on disk.
    let mut cpu = Vec::new();
    let mut wire = 0;
    for _ in 0..15 {
        let input = spans(10_000);
        let start = thread_cpu();
        let body = traces::encode("bench-host", input);
        wire = body.len();
        queue.push(&batch(body).to_record()).unwrap();
        cpu.push((thread_cpu() - start).as_secs_f64() * 1000.0);
    }
    let spans_ms = median(cpu);
    // Where the time goes: the queue's fsync alone.
    let body = traces::encode("bench-host", spans(10_000));
    let start = thread_cpu();
    for _ in 0..15 {
        queue.push(&batch(body.clone()).to_record()).unwrap();
    }
    println!(
        "  of which queueing on disk: {:.2} ms CPU",
        (thread_cpu() - start).as_secs_f64() * 1000.0 / 15.0
    );
    // The floor: gzip alone of the same protobuf, at deflate's fastest level.
    let raw = gunzip(&body);
    let start = thread_cpu();
    for _ in 0..15 {
        std::hint::black_box(gzip::gzip(&raw));
    }
    println!(
        "  of which gzip alone of its {} protobuf bytes ({:.0} a span): {:.2} ms CPU",
        raw.len(),
        raw.len() as f64 / 10_000.0,
        (thread_cpu() - start).as_secs_f64() * 1000.0 / 15.0
    );
    println!(
        "10,000 spans: {spans_ms:.2} ms CPU (target < 5 ms: {}), {} bytes on the wire ({:.1} bytes/span)",
        if spans_ms < 5.0 { "PASS" } else { "FAIL" },
        wire,
        wire as f64 / 10_000.0
    );

    // 1,000-process snapshot: complete topology, then an unchanged one (changes only).
    let snap = snapshot(1000);
    let mut full_cpu = Vec::new();
    let mut delta_cpu = Vec::new();
    let (mut full_bytes, mut delta_bytes, mut metric_bytes) = (0, 0, 0);
    for _ in 0..9 {
        let mut diff = TopologyDiff::new(6);
        for round in 0..2 {
            let start = thread_cpu();
            let update = diff.update(intake::process_elements(&snap));
            let topo = gzip_json(&intake::topology_message(
                "bench-host",
                "ecs-processes",
                &update.elements,
                &update.delete_ids,
                update.full,
                0,
            ));
            let metrics = gzip_json(&intake::metrics_message(
                "bench-host",
                &intake::snapshot_metrics(&snap, 0),
                0,
            ));
            let topo_len = topo.len();
            queue.push(&batch(topo.to_vec()).to_record()).unwrap();
            queue.push(&batch(metrics.to_vec()).to_record()).unwrap();
            let ms = (thread_cpu() - start).as_secs_f64() * 1000.0;
            metric_bytes = metrics.len();
            if round == 0 {
                full_cpu.push(ms);
                full_bytes = topo_len;
            } else {
                delta_cpu.push(ms);
                delta_bytes = topo_len;
            }
        }
    }
    println!(
        "1,000-process snapshot: complete {:.2} ms CPU, {full_bytes} bytes topology + {metric_bytes} bytes metrics; unchanged cycle {:.2} ms CPU, {delta_bytes} bytes topology",
        median(full_cpu),
        median(delta_cpu)
    );
}
