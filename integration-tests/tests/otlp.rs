//! OTLP end to end with the real OpenTelemetry Python SDK: 500 spans over OTLP/gRPC and 500
//! over OTLP/HTTP through a sidecar to a real daemon, correlated with the client process
//! (from the resource's `process.pid` over gRPC, from the TCP peer over HTTP); malformed
//! bodies answered 400 while the sidecar keeps serving; the same with the exporters
//! compressing (gzip), and a gzip bomb answered 413.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;

use integration_tests::traces::{parse_client, ClientRun, Daemon, DaemonPorts, Sidecar};
use integration_tests::{free_port, python, workspace_root};
use sts_proto::daemon::v1::Span;

const TRACES: usize = 50;
const SPANS: usize = 10;

/// Starts the OpenTelemetry client sending over `protocol` to `endpoint`, its requests
/// compressed with `compression` (`none` or `gzip`).
fn start_client(
    protocol: &str,
    endpoint: &str,
    service: &str,
    set_pid: bool,
    compression: &str,
) -> Child {
    let env: BTreeMap<&str, String> = [
        ("PROTOCOL", protocol.to_string()),
        ("ENDPOINT", endpoint.to_string()),
        ("SERVICE", service.to_string()),
        ("TRACES", TRACES.to_string()),
        ("SPANS", SPANS.to_string()),
        ("SET_PID", if set_pid { "1" } else { "0" }.to_string()),
        ("COMPRESSION", compression.to_string()),
        ("LINGER", "2.5".to_string()),
    ]
    .into_iter()
    .collect();
    Command::new(python())
        .arg(workspace_root().join("integration-tests/python/otlp_client.py"))
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs")
}

fn finish(client: Child) -> ClientRun {
    let out = client.wait_with_output().expect("client ends");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_client(&out.stdout)
}

fn assert_correlated(spans: &[Span], run: &ClientRun, service: &str) {
    assert_eq!(spans.len(), run.spans, "every span arrived once");
    let ids: HashSet<(u64, u64)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(ids.len(), spans.len(), "no span twice");
    let traces: HashSet<u64> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), TRACES);
    for s in spans {
        assert_eq!(s.service, service);
        assert_eq!(s.meta["span.pid"], run.pid.to_string(), "{:?}", s.meta);
        assert_eq!(s.meta["span.serviceName"], service);
        assert_eq!(
            s.meta["_dd.p.tid"].len(),
            16,
            "the high 64 bits of the trace id"
        );
        assert!(s.start > 0 && s.duration >= 0);
    }
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_id == 0).collect();
    assert_eq!(roots.len(), TRACES);
    assert!(roots.iter().all(|s| s.meta["span.kind"] == "server"));
    assert!(roots.iter().all(|s| s.resource.starts_with("GET /item/")));
    assert!(roots.iter().all(|s| s.metrics.contains_key("it.value")));
    let errors: Vec<&Span> = spans.iter().filter(|s| s.error == 1).collect();
    assert_eq!(
        errors.len(),
        TRACES / 5,
        "one failed query every fifth trace"
    );
    for e in errors {
        assert_eq!(e.meta["span.kind"], "client");
        assert_eq!(e.meta["error.msg"], "bad row");
        assert_eq!(e.meta["error.type"], "ValueError");
        assert!(e.meta["events"].contains("\"exception\""));
    }
}

/// POSTs `body` to `/v1/traces` as `content_type`; the status line's code.
fn post(port: u16, content_type: &str, body: &[u8]) -> u16 {
    post_declaring(port, content_type, body.len(), body, "")
}

/// POSTs `body` gzip'd (`Content-Encoding: gzip`); the status line's code.
fn post_gzipd(port: u16, content_type: &str, body: &[u8]) -> u16 {
    let extra = "Content-Encoding: gzip\r\n";
    post_declaring(port, content_type, body.len(), body, extra)
}

/// POSTs `body`, declaring `declared` bytes, with the `extra` header lines; the status
/// line's code.
fn post_declaring(port: u16, content_type: &str, declared: usize, body: &[u8], extra: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: sidecar\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A daemon (with `daemon_env`) and a sidecar serving OTLP/gRPC and OTLP/HTTP on free
/// ports: the two and those ports.
fn start_stack(daemon_env: &[(&str, &str)]) -> (Daemon, Sidecar, u16, u16) {
    let daemon = Daemon::start(DaemonPorts::free(), daemon_env);
    let (grpc, http) = (free_port(), free_port());
    let sidecar = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        daemon.relay_port,
        &[
            ("STS_OTLP_GRPC_ADDR", &format!("127.0.0.1:{grpc}")),
            ("STS_OTLP_HTTP_ADDR", &format!("127.0.0.1:{http}")),
        ],
    );
    (daemon, sidecar, grpc, http)
}

#[test]
fn opentelemetry_sdk_spans_over_grpc_and_http_arrive_correlated() {
    let (daemon, sidecar, grpc, http) = start_stack(&[]);

    // Malformed bodies first: refused with 400, and the sidecar serves on.
    assert_eq!(
        post(http, "application/x-protobuf", b"\xff\xff\xff\xff"),
        400
    );
    assert_eq!(
        post(http, "application/json", b"{\"resourceSpans\": 3}"),
        400
    );
    assert_eq!(post(http, "text/plain", b"hello"), 415);
    let too_large = trace_sidecar::otlp::MAX_REQUEST_BYTES + 1;
    assert_eq!(
        post_declaring(http, "application/x-protobuf", too_large, b"", ""),
        413
    );
    assert_eq!(
        post(http, "application/json", b"{}"),
        200,
        "an empty export"
    );

    let over_grpc = start_client(
        "grpc",
        &format!("http://127.0.0.1:{grpc}"),
        "otlp-grpc",
        true,
        "none",
    );
    let over_http = start_client(
        "http",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        "otlp-http",
        false,
        "none",
    );
    let (grpc_run, http_run) = (finish(over_grpc), finish(over_http));
    assert_ne!(grpc_run.pid, http_run.pid);

    let within = Duration::from_secs(30);
    let spans = daemon.wait_spans("otlp-grpc", grpc_run.spans, within);
    assert_correlated(&spans, &grpc_run, "otlp-grpc");
    let spans = daemon.wait_spans("otlp-http", http_run.spans, within);
    assert_correlated(&spans, &http_run, "otlp-http");

    let health = sidecar.health().expect("sidecar answers /health");
    assert_eq!(
        health["otlp_spans_received"],
        2 * TRACES * SPANS,
        "{health}"
    );
    assert_eq!(health["otlp_spans_rejected"], 0, "{health}");
    assert_eq!(health["otlp_requests_rejected"], 4, "{health}");
    assert_eq!(health["spans_dropped"], 0, "{health}");
}

#[test]
fn gzipd_exports_are_inflated_and_gzip_bombs_refused() {
    let (daemon, sidecar, grpc, http) = start_stack(&[]);
    let gzipd = || {
        sidecar.health().expect("sidecar answers /health")["otlp_requests_gzip"]
            .as_u64()
            .unwrap()
    };

    // 4 MiB and a byte of zeroes are 4 KB gzip'd: over the limit once inflated, 413.
    let bomb = gzip(&vec![0; trace_sidecar::otlp::MAX_REQUEST_BYTES + 1]);
    assert!(bomb.len() < 64 << 10);
    assert_eq!(post_gzipd(http, "application/x-protobuf", &bomb), 413);
    let corrupt = b"\x1f\x8b\x08\x00 not quite gzip";
    assert_eq!(post_gzipd(http, "application/json", corrupt), 400);
    assert_eq!(post_gzipd(http, "application/json", &gzip(b"{}")), 200);
    assert_eq!(gzipd(), 3);

    // The SDK's exporters compressing: each of their requests comes gzip'd.
    let clients = [
        (
            "grpc",
            format!("http://127.0.0.1:{grpc}"),
            "otlp-grpc-gzip",
            true,
        ),
        (
            "http",
            format!("http://127.0.0.1:{http}/v1/traces"),
            "otlp-http-gzip",
            false,
        ),
    ];
    for (protocol, endpoint, service, set_pid) in clients {
        let before = gzipd();
        let run = finish(start_client(protocol, &endpoint, service, set_pid, "gzip"));
        let spans = daemon.wait_spans(service, run.spans, Duration::from_secs(30));
        assert_correlated(&spans, &run, service);
        assert!(gzipd() > before, "{protocol}: no request came gzip'd");
    }

    let health = sidecar.health().expect("sidecar answers /health");
    assert_eq!(
        health["otlp_spans_received"],
        2 * TRACES * SPANS,
        "{health}"
    );
    assert_eq!(health["otlp_requests_rejected"], 2, "{health}");
}
