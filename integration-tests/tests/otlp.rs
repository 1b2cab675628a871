//! OTLP end to end with the real OpenTelemetry Python SDK: 500 spans over OTLP/gRPC and 500
//! over OTLP/HTTP through a sidecar to a real daemon, correlated with the client process
//! (from the resource's `process.pid` over gRPC, from the TCP peer over HTTP) and forwarded
//! to the capture receiver as the daemon correlated them; malformed bodies answered 400
//! while the sidecar keeps serving; the same with the exporters compressing (gzip), and a
//! gzip bomb answered 413; clients in ECS-labelled containers get their container and task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;

use integration_tests::docker;
use integration_tests::forwarding::ForwardSetup;
use integration_tests::receiver::{CaptureReceiver, Span as ForwardedSpan};
use integration_tests::traces::{
    assert_identity, parse_client, ClientRun, Daemon, DaemonPorts, Sidecar,
};
use integration_tests::{free_port, python, wait_for, workspace_root};
use sts_proto::daemon::v1::Span;

const TRACES: usize = 50;
const SPANS: usize = 10;

/// One run of the OpenTelemetry client (`integration-tests/python/otlp_client.py`): TRACES
/// traces of SPANS spans of `service` over `protocol` (`grpc`, `http`) to `endpoint`,
/// compressed with `compression` (`none`, `gzip`), `process.pid` in the resource if
/// `set_pid`.
struct OtlpClient<'a> {
    protocol: &'a str,
    endpoint: String,
    service: &'a str,
    set_pid: bool,
    compression: &'a str,
}

impl OtlpClient<'_> {
    fn env(&self) -> BTreeMap<String, String> {
        [
            ("PROTOCOL", self.protocol.to_string()),
            ("ENDPOINT", self.endpoint.clone()),
            ("SERVICE", self.service.to_string()),
            ("TRACES", TRACES.to_string()),
            ("SPANS", SPANS.to_string()),
            ("SET_PID", if self.set_pid { "1" } else { "0" }.to_string()),
            ("COMPRESSION", self.compression.to_string()),
            ("LINGER", "2.5".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The client on this host.
    fn start(&self) -> Child {
        Command::new(python())
            .arg(workspace_root().join("integration-tests/python/otlp_client.py"))
            .envs(self.env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs")
    }
}

/// The two clients of a sidecar's OTLP ports on `host`: over gRPC naming its pid, over
/// HTTP leaving it to the sidecar; services `<prefix>-grpc` and `<prefix>-http`.
fn both_clients<'a>(
    host: &str,
    (grpc, http): (u16, u16),
    services: [&'a str; 2],
    compression: &'a str,
) -> [OtlpClient<'a>; 2] {
    [
        OtlpClient {
            protocol: "grpc",
            endpoint: format!("http://{host}:{grpc}"),
            service: services[0],
            set_pid: true,
            compression,
        },
        OtlpClient {
            protocol: "http",
            endpoint: format!("http://{host}:{http}/v1/traces"),
            service: services[1],
            set_pid: false,
            compression,
        },
    ]
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

/// The spans of `run` as the daemon correlated them: every one once, with its process's
/// identity on `hostname`, and the OTLP mapping (ids, kinds, resources, errors, events).
fn assert_correlated(spans: &[Span], run: &ClientRun, service: &str, hostname: &str) {
    assert_eq!(spans.len(), run.spans, "every span arrived once");
    let ids: HashSet<(u64, u64)> = spans.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert_eq!(ids.len(), spans.len(), "no span twice");
    let traces: HashSet<u64> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), TRACES);
    for s in spans {
        assert_eq!(s.service, service);
        assert_identity(service, &s.meta, run, hostname);
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

/// The `correlated` spans of `service` reached the receiver once each, as the daemon
/// correlated them: same fields, same meta and metrics.
fn assert_forwarded(forwarded: &[ForwardedSpan], correlated: &[Span], service: &str) {
    let ours: Vec<&ForwardedSpan> = forwarded.iter().filter(|s| s.service == service).collect();
    assert_eq!(
        ours.len(),
        correlated.len(),
        "{service}: every span forwarded once"
    );
    let by_id: HashMap<(u64, u64), &ForwardedSpan> =
        ours.iter().map(|s| ((s.trace_id, s.span_id), *s)).collect();
    assert_eq!(
        by_id.len(),
        ours.len(),
        "{service}: no span forwarded twice"
    );
    for s in correlated {
        let f = by_id
            .get(&(s.trace_id, s.span_id))
            .unwrap_or_else(|| panic!("{service}: span {:x} not forwarded", s.span_id));
        assert_eq!(
            (
                &f.name,
                &f.resource,
                &f.r#type,
                f.parent_id,
                f.start,
                f.duration,
                f.error
            ),
            (
                &s.name,
                &s.resource,
                &s.r#type,
                s.parent_id,
                s.start,
                s.duration,
                s.error
            ),
            "{service}: span {:x}",
            s.span_id
        );
        assert_eq!(f.meta, s.meta, "{service}: span {:x}'s meta", s.span_id);
        assert_eq!(
            f.metrics, s.metrics,
            "{service}: span {:x}'s metrics",
            s.span_id
        );
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
/// ports of `host`: the two and those ports.
fn start_stack(host: &str, daemon_env: &[(&str, &str)]) -> (Daemon, Sidecar, (u16, u16)) {
    let daemon = Daemon::start(DaemonPorts::free(), daemon_env);
    let (grpc, http) = (free_port(), free_port());
    let sidecar = Sidecar::start(
        &format!("{host}:{}", free_port()),
        daemon.relay_port,
        &[
            ("STS_OTLP_GRPC_ADDR", &format!("{host}:{grpc}")),
            ("STS_OTLP_HTTP_ADDR", &format!("{host}:{http}")),
        ],
    );
    (daemon, sidecar, (grpc, http))
}

#[test]
fn opentelemetry_sdk_spans_over_grpc_and_http_arrive_correlated_and_are_forwarded() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[]);
    let (daemon, sidecar, ports) = start_stack("127.0.0.1", &setup.vars());
    let http = ports.1;

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

    let services = ["otlp-grpc", "otlp-http"];
    let clients = both_clients("127.0.0.1", ports, services, "none");
    let started: Vec<Child> = clients.iter().map(OtlpClient::start).collect();
    let runs: Vec<ClientRun> = started.into_iter().map(finish).collect();
    assert_ne!(runs[0].pid, runs[1].pid);

    let hostname = daemon.hostname();
    let forwarded = receiver.wait_spans(2 * TRACES * SPANS, Duration::from_secs(30));
    assert_eq!(forwarded.len(), 2 * TRACES * SPANS, "spans forwarded");
    for (service, run) in services.iter().zip(&runs) {
        let spans = daemon.wait_spans(service, run.spans, Duration::from_secs(30));
        assert_correlated(&spans, run, service, &hostname);
        assert_forwarded(&forwarded, &spans, service);
    }

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
    let (daemon, sidecar, ports) = start_stack("127.0.0.1", &[]);
    let http = ports.1;
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

    // The SDK's exporters compressing: each of their requests comes gzip'd. Neither names
    // its pid: over gRPC too the sidecar finds it from the connection.
    let hostname = daemon.hostname();
    let services = ["otlp-grpc-gzip", "otlp-http-gzip"];
    for mut client in both_clients("127.0.0.1", ports, services, "gzip") {
        client.set_pid = false;
        let before = gzipd();
        let run = finish(client.start());
        let spans = daemon.wait_spans(client.service, run.spans, Duration::from_secs(30));
        assert_correlated(&spans, &run, client.service, &hostname);
        assert!(
            gzipd() > before,
            "{}: no request came gzip'd",
            client.protocol
        );
    }

    let health = sidecar.health().expect("sidecar answers /health");
    assert_eq!(
        health["otlp_spans_received"],
        2 * TRACES * SPANS,
        "{health}"
    );
    assert_eq!(health["otlp_requests_rejected"], 2, "{health}");
}

const TASK: &str =
    "arn:aws:ecs:us-west-2:012345678910:task/it-otlp-cluster/0123456789abcdef0123456789abcdef";

#[test]
fn otlp_clients_in_an_ecs_task_get_their_container_and_task() {
    let test = "otlp_clients_in_an_ecs_task_get_their_container_and_task";
    if !docker::available(test) {
        return;
    }
    docker::ensure_test_image();
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[]);
    // On all addresses, so containers reach the sidecar through the bridge gateway.
    let (daemon, _sidecar, ports) = start_stack("0.0.0.0", &setup.vars());
    let services = ["otlp-ctr-grpc", "otlp-ctr-http"];
    let clients = both_clients(&docker::bridge_gateway(), ports, services, "none");
    // Two containers of one ECS task, in the host's pid namespace as the task's are.
    let containers: Vec<(docker::Container, u32, &str)> = clients
        .iter()
        .zip(["api", "worker"])
        .map(|(client, name)| {
            let labels = [
                ("com.amazonaws.ecs.task-arn", TASK),
                ("com.amazonaws.ecs.container-name", name),
                ("com.amazonaws.ecs.task-definition-family", "it-otlp-family"),
                ("com.amazonaws.ecs.task-definition-version", "3"),
                ("com.amazonaws.ecs.cluster", "it-otlp-cluster"),
            ];
            let args: Vec<String> = labels
                .iter()
                .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
                .collect();
            let container = docker::run_python("otlp_client.py", &client.env(), &args);
            let pid = container.pid();
            (container, pid, name)
        })
        .collect();

    let hostname = daemon.hostname();
    let forwarded = receiver.wait_spans(2 * TRACES * SPANS, Duration::from_secs(60));
    for ((container, pid, name), service) in containers.iter().zip(services) {
        let out = wait_for(Duration::from_secs(60), || {
            let logs = docker::docker(&["logs", &container.id]);
            (!logs.stdout.is_empty()).then_some(logs.stdout)
        })
        .unwrap_or_else(|| {
            let logs = docker::docker(&["logs", &container.id]);
            panic!("{service}: {}", String::from_utf8_lossy(&logs.stderr))
        });
        let run = parse_client(&out);
        assert_eq!(run.pid, *pid, "the host pid under pidMode host");
        let spans = daemon.wait_spans(service, run.spans, Duration::from_secs(30));
        assert_correlated(&spans, &run, service, &hostname);
        for s in &spans {
            for (key, value) in [
                ("container.id", container.id.as_str()),
                ("ecs.task_arn", TASK),
                ("ecs.task_family", "it-otlp-family"),
                ("ecs.task_revision", "3"),
                ("ecs.container_name", *name),
            ] {
                assert_eq!(
                    s.meta.get(key).map(String::as_str),
                    Some(value),
                    "{service}: {key}"
                );
            }
        }
        assert_forwarded(&forwarded, &spans, service);
    }
}
