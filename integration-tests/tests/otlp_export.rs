//! The daemon's OTLP export, alone (no `STS_STS_URL`), over gRPC and over HTTP, to a
//! receiver that decodes with the official `opentelemetry-proto` classes
//! (python/otlp_receiver.py) and refuses its first requests, so the export must retry,
//! then answers each traces request with a partial success refusing one span, which
//! status counts among the drops.
//! Spans come from the real OpenTelemetry SDK through a sidecar; a container with ECS
//! labels runs beside. python/otlp_check.py then checks the resources, spans and metrics
//! against psutil and Docker, and the test checks that the bearer token reached the
//! receiver but no log line or status value. Over TLS a self-signed endpoint is refused
//! unless `STS_OTLP_SKIP_SSL_VALIDATION` is set.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::docker::{self, Container};
use integration_tests::receiver::{CaptureReceiver, Endpoint};
use integration_tests::status::collector;
use integration_tests::traces::{Daemon, DaemonPorts, Sidecar};
use integration_tests::{binary, free_port, python, wait_for, workspace_root, Guard};
use serde_json::Value;

const TOKEN: &str = "otlp-t0ken-8f3a";
const PASSWORD: &str = "hunter2-otlp";
const TRACES: usize = 20;
const SPANS: usize = 5;

struct Receiver {
    _guard: Guard,
    grpc: u16,
    http: u16,
    out: std::path::PathBuf,
}

impl Receiver {
    fn start(dir: &std::path::Path) -> Self {
        let (grpc, http) = (free_port(), free_port());
        let out = dir.join("received.jsonl");
        let mut command = Command::new(python());
        command
            .arg(workspace_root().join("integration-tests/python/otlp_receiver.py"))
            .env("GRPC_PORT", grpc.to_string())
            .env("HTTP_PORT", http.to_string())
            .env("OUT", &out)
            .env("REFUSE_FIRST", "2")
            .env("REJECT_SPANS", "1")
            .stdout(Stdio::piped());
        let mut guard = Guard::spawn(&mut command);
        let mut ready = String::new();
        let stdout = guard.0.stdout.take().expect("stdout is piped");
        BufReader::new(stdout).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the receiver did not start");
        Self {
            _guard: guard,
            grpc,
            http,
            out,
        }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The traces requests it took.
    fn traces_requests(&self) -> u64 {
        self.lines()
            .iter()
            .filter(|l| l["signal"] == "traces")
            .count() as u64
    }

    /// The spans of `service` it holds.
    fn spans_of(&self, service: &str) -> usize {
        let mut count = 0;
        for line in self.lines().iter().filter(|l| l["signal"] == "traces") {
            for rs in line["request"]["resource_spans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let named = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kv| {
                        kv["key"] == "service.name" && kv["value"]["string_value"] == service
                    });
                if named {
                    for ss in rs["scope_spans"].as_array().into_iter().flatten() {
                        count += ss["spans"].as_array().map_or(0, Vec::len);
                    }
                }
            }
        }
        count
    }

    /// The metrics requests with a resource whose attribute `key` is `value` (as
    /// `MessageToDict` writes it: an int64 as a string).
    fn metrics_of(&self, key: &str, value: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l["signal"] == "metrics")
            .filter(|line| {
                line["request"]["resource_metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rm| {
                        rm["resource"]["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|kv| {
                                kv["key"] == key
                                    && (kv["value"]["string_value"] == *value
                                        || kv["value"]["int_value"] == *value)
                            })
                    })
            })
            .count()
    }
}

fn daemon_status(port: u16) -> Option<Value> {
    let out = integration_tests::node_daemon(
        &[],
        &["status", "--json", "--addr", &format!("127.0.0.1:{port}")],
    );
    serde_json::from_slice(&out.stdout).ok()
}

fn export(protocol: &str) {
    let test = format!("otlp_export_over_{protocol}");
    if !docker::available(&test) {
        return;
    }
    docker::ensure_test_image();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path());
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", receiver.grpc),
        _ => format!("http://127.0.0.1:{}", receiver.http),
    };
    let labels = [
        "com.amazonaws.ecs.task-arn=arn:aws:ecs:us-west-2:012345678910:task/it-cluster/0123456789abcdef0123456789abcdef",
        "com.amazonaws.ecs.container-name=app",
        "com.amazonaws.ecs.task-definition-family=it-family",
        "com.amazonaws.ecs.task-definition-version=7",
        "com.amazonaws.ecs.cluster=it-cluster",
    ];
    let mut args = vec![];
    for label in &labels {
        args.extend(["--label", label]);
    }
    let container = Container::run(&args, &["sleep", "600"]);

    let (grpc_port, relay_port) = (free_port(), free_port());
    let queue = dir.path().join("queue");
    let mut command = Command::new(binary("node-daemon"));
    command
        .arg("run")
        .env("STS_COLLECTION_INTERVAL", "1")
        .env("STS_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("STS_RELAY_ADDR", format!("127.0.0.1:{relay_port}"))
        .env("STS_QUEUE_DIR", &queue)
        .env("STS_PROCESS_AGENT_ENABLED", "true")
        .env("STS_NETWORK_TRACING_ENABLED", "false")
        .env("STS_OTLP_ENDPOINT", &endpoint)
        .env(
            "STS_OTLP_PROTOCOL",
            if protocol == "grpc" {
                "grpc"
            } else {
                "http/protobuf"
            },
        )
        .env(
            "STS_OTLP_HEADERS",
            format!("authorization=Bearer%20{TOKEN}"),
        )
        .env_remove("STS_STS_URL");
    let (daemon, logs) = Guard::spawn_with_logs(&mut command);
    wait_for(Duration::from_secs(20), || daemon_status(grpc_port)).expect("daemon answers");
    let sidecar_otlp = free_port();
    let _sidecar = Sidecar::start(
        &format!("127.0.0.1:{}", free_port()),
        relay_port,
        &[("STS_OTLP_GRPC_ADDR", &format!("127.0.0.1:{sidecar_otlp}"))],
    );

    // The client lingers so that the checks find it alive; a password on its command line
    // must not leave the host.
    let service = format!("export-{protocol}");
    let client = Guard::spawn(
        Command::new(python())
            .arg(workspace_root().join("integration-tests/python/otlp_client.py"))
            .arg(format!("--password={PASSWORD}"))
            .env("PROTOCOL", "grpc")
            .env("ENDPOINT", format!("http://127.0.0.1:{sidecar_otlp}"))
            .env("SERVICE", &service)
            .env("TRACES", TRACES.to_string())
            .env("SPANS", SPANS.to_string())
            .env("SET_PID", "1")
            .env("LINGER", "120")
            .stdout(Stdio::null()),
    );
    let client_pid = client.pid();
    let arrived = wait_for(Duration::from_secs(40), || {
        let all = receiver.spans_of(&service) >= TRACES * SPANS;
        let metrics = receiver.metrics_of("process.pid", &client_pid.to_string()) > 0
            && receiver.metrics_of("container.id", &container.id) > 0;
        (all && metrics).then_some(())
    });
    assert!(
        arrived.is_some(),
        "spans of {service}: {} of {}; daemon logs:\n{}",
        receiver.spans_of(&service),
        TRACES * SPANS,
        logs.text()
    );

    // The client's memory grows until its spans are out: the check compares psutil with
    // the metrics of two cycles later, when the client only lingers.
    let pid = client_pid.to_string();
    let seen = receiver.metrics_of("process.pid", &pid);
    let settled = wait_for(Duration::from_secs(20), || {
        (receiver.metrics_of("process.pid", &pid) >= seen + 2).then_some(())
    });
    assert!(
        settled.is_some(),
        "no metrics of the client after its spans"
    );

    let check = Command::new(python())
        .arg(workspace_root().join("integration-tests/python/otlp_check.py"))
        .env("OUT", &receiver.out)
        .env("PID", client_pid.to_string())
        .env("SERVICE", &service)
        .env("SPANS", (TRACES * SPANS).to_string())
        .env("CONTAINER", &container.id)
        .env("TOKEN", TOKEN)
        .env("PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "otlp_check.py: {report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["spans"], TRACES * SPANS);

    let status = daemon_status(grpc_port).expect("status");
    let text = status.to_string();
    assert!(!text.contains(TOKEN), "the token is in status");
    assert!(
        text.contains("authorization (values redacted)"),
        "status names the header"
    );
    let traces = collector(&status, "forward.otlp.traces")
        .unwrap_or_else(|| panic!("no forward.otlp.traces in {text}"));
    assert_eq!(traces["counts"]["sent_spans"], TRACES * SPANS, "{traces}");
    let retries: u64 = ["forward.otlp.traces", "forward.otlp.metrics"]
        .iter()
        .filter_map(|name| collector(&status, name)?["counts"]["retries"].as_u64())
        .sum();
    assert!(
        retries >= 2,
        "the two refused requests were retried: {text}"
    );
    // Each traces request it took refused one span; the daemon counts the answer once it
    // has read it.
    let refused = wait_for(Duration::from_secs(10), || {
        let status = daemon_status(grpc_port)?;
        let counted = &collector(&status, "forward.otlp.traces")?["counts"]["rejected_spans"];
        let dropped = &status["drops"]["forward.otlp.traces.rejected_spans"];
        let taken = receiver.traces_requests();
        (counted.as_u64() == Some(taken) && dropped.as_u64() == Some(taken)).then_some(taken)
    });
    assert!(
        refused.is_some_and(|n| n > 0),
        "partial successes not counted: {} requests taken; {}",
        receiver.traces_requests(),
        daemon_status(grpc_port).unwrap_or_default()
    );
    assert!(
        collector(&status, "forward.traces").is_none(),
        "no StackState pipeline runs without STS_STS_URL"
    );

    // Checked: the client need not linger on.
    drop(client);
    drop(daemon);
    let logs = logs.after_exit(Duration::from_secs(10));
    assert!(!logs.contains(TOKEN), "the token is in the logs");
    assert!(
        logs.contains("exporting traces and metrics over OTLP"),
        "{logs}"
    );
}

#[test]
fn export_over_grpc_decodes_with_the_official_classes() {
    export("grpc");
}

#[test]
fn export_over_http_decodes_with_the_official_classes() {
    export("http");
}

#[test]
fn a_self_signed_endpoint_is_refused_unless_validation_is_skipped() {
    let receiver = CaptureReceiver::https();
    let endpoint = receiver.url().replace(Endpoint::PREFIX, "");
    let env = |skip: &'static str| {
        vec![
            ("STS_OTLP_ENDPOINT", endpoint.clone()),
            ("STS_OTLP_SKIP_SSL_VALIDATION", skip.to_string()),
            ("STS_QUEUE_DIR", String::new()),
        ]
    };
    let start = |env: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Daemon::start_with_interval(DaemonPorts::free(), "1", &env)
    };
    let strict = start(&env("false"));
    let error = wait_for(Duration::from_secs(20), || {
        let status = strict.status()?;
        let sink = collector(&status, "forward.otlp.metrics")?.clone();
        (sink["state"] == "unavailable").then(|| sink["last_error"].to_string())
    })
    .expect("the refused endpoint is reported");
    assert!(
        error.to_lowercase().contains("certificate"),
        "unclear error: {error}"
    );
    assert!(
        receiver.all_requests().is_empty(),
        "sent to an unverified endpoint"
    );
    drop(strict);

    let _lax = start(&env("true"));
    assert!(receiver.wait_for(
        |r| r.iter().any(|r| r.tls && r.path == "/v1/metrics"),
        Duration::from_secs(20)
    ));
}
