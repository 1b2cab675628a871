//! `node-daemon run` end to end: gRPC Status, grpc.health.v1, reflection, the `status`
//! command as a health check, secrets kept out, and a clean stop on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::status::{collector, collectors};
use integration_tests::{binary, free_port, node_daemon, wait_for, Guard, Logs};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const API_KEY: &str = "it-secret-api-key-4711";

fn start_daemon(port: u16) -> (Guard, Logs) {
    Guard::spawn_with_logs(
        Command::new(binary("node-daemon"))
            .args(["run", "--interval", "1"])
            .env("STS_GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env("STS_RELAY_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("STS_API_KEY", API_KEY)
            .env("STS_LOG_LEVEL", "debug"),
    )
}

fn status(port: u16, json: bool) -> std::process::Output {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["status", "--addr", &addr];
    if json {
        args.push("--json");
    }
    node_daemon(&[], &args)
}

/// Waits until both collectors have run once.
fn wait_ready(port: u16) -> serde_json::Value {
    wait_for(Duration::from_secs(20), || {
        let out = status(port, true);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let all_ran =
            v["collectors"].is_array() && collectors(&v).iter().all(|c| c["state"] == "ok");
        all_ran.then_some(v)
    })
    .expect("daemon became ready")
}

#[test]
fn status_health_reflection_and_shutdown() {
    let port = free_port();
    let (mut daemon, logs) = start_daemon(port);
    let status_json = wait_ready(port);

    assert_eq!(status_json["healthy"], true);
    assert_eq!(status_json["version"], env!("CARGO_PKG_VERSION"));
    let processes = collector(&status_json, "processes").expect("processes collector");
    assert!(processes["counts"]["reported"].as_u64().unwrap() > 0);
    assert!(processes["counts"]["kernel_threads"].as_u64().unwrap() > 0);
    assert_eq!(status_json["config"]["STS_API_KEY"], "<set, redacted>");
    assert_eq!(
        status_json["config"]["STS_GRPC_ADDR"],
        format!("127.0.0.1:{port}")
    );

    let text = status(port, false);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("healthy") && text.contains("processes  ok"),
        "{text}"
    );
    assert!(!text.contains(API_KEY));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let calls = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for service in ["", "sts.daemon.v1.Status"] {
            let reply = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                reply.status,
                ServingStatus::Serving as i32,
                "health of `{service}`"
            );
        }
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("unexpected reflection reply");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for expected in ["sts.daemon.v1.Status", "grpc.health.v1.Health"] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} not in {names:?}"
            );
        }
    };
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), calls).await })
        .expect("health and reflection answer within 20 s");

    let started = Instant::now();
    let exit = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(2))
        .expect("daemon stopped within 2 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let logs = logs.after_exit(Duration::from_secs(5));
    assert!(logs.contains("cycle"), "one summary line per cycle: {logs}");
    assert!(!logs.contains(API_KEY), "API key in the logs");

    let after = status(port, false);
    assert_eq!(
        after.status.code(),
        Some(2),
        "unreachable daemon must fail the health check"
    );
    assert!(String::from_utf8_lossy(&after.stderr).contains("not reachable"));
}

#[test]
fn sigint_also_stops_cleanly() {
    let port = free_port();
    let (mut daemon, _logs) = start_daemon(port);
    wait_ready(port);
    let exit = daemon
        .signal_and_wait(libc::SIGINT, Duration::from_secs(2))
        .expect("daemon stopped within 2 s of SIGINT");
    assert!(exit.success());
}

#[test]
fn port_in_use_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (var, other) in [
        ("STS_GRPC_ADDR", "STS_RELAY_ADDR"),
        ("STS_RELAY_ADDR", "STS_GRPC_ADDR"),
    ] {
        let out = node_daemon(&[(var, &addr), (other, &free)], &["run"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var) && stderr.contains(&addr), "{stderr}");
    }
}
