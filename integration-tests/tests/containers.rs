//! The container collector against the real Docker engine: ECS labels, pause containers,
//! network modes, processes mapped into containers, and a running daemon that sees a new
//! container within a second and forgets a removed one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::docker::{self, Container};
use integration_tests::status::collector;
use integration_tests::{binary, free_port, node_daemon, snapshot_json, wait_for, Guard};
use serde_json::Value;

const TASK: &str =
    "arn:aws:ecs:us-west-2:012345678910:task/it-cluster/0123456789abcdef0123456789abcdef";

fn ecs_labels(container_name: &str) -> Vec<String> {
    [
        ("com.amazonaws.ecs.task-arn", TASK),
        ("com.amazonaws.ecs.container-name", container_name),
        ("com.amazonaws.ecs.task-definition-family", "it-family"),
        ("com.amazonaws.ecs.task-definition-version", "42"),
        ("com.amazonaws.ecs.cluster", "it-cluster"),
    ]
    .iter()
    .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
    .collect()
}

fn run(extra: &[&str], labels: &[String], command: &[&str]) -> Container {
    let mut args: Vec<&str> = labels.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Container::run(&args, command)
}

fn container<'a>(snapshot: &'a Value, id: &str) -> Option<&'a Value> {
    snapshot["containers"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)
}

fn has_relation(snapshot: &Value, kind: &str, source: &str, target: &str) -> bool {
    snapshot["relations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["type"] == kind && r["source"] == source && r["target"] == target)
}

#[test]
fn ecs_containers_with_tasks_roles_and_processes() {
    if !docker::available("ecs_containers_with_tasks_roles_and_processes") {
        return;
    }
    docker::ensure_test_image();
    let pause = run(
        &["--network", "bridge"],
        &ecs_labels("~internal~ecs~pause"),
        &["sleep", "3600"],
    );
    let app = run(
        &["--network", &format!("container:{}", pause.id)],
        &ecs_labels("app"),
        &["sleep", "3601"],
    );
    let on_host = run(
        &["--network", "host"],
        &ecs_labels("sidecar"),
        &["sleep", "3602"],
    );
    let plain = run(&["--network", "none"], &[], &["sleep", "3603"]);
    // A process started inside the app container after it started.
    let exec = docker::docker(&["exec", "-d", &app.id, "sleep", "3604"]);
    assert!(exec.status.success());
    std::thread::sleep(Duration::from_millis(300));

    let snap = snapshot_json(&[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let host_urn = snap["host"]["urn"].as_str().unwrap().to_string();

    let p = container(&snap, &pause.id).expect("pause container listed");
    assert_eq!(p["id"].as_str().unwrap().len(), 64);
    assert_eq!(p["role"], "ecs-pause");
    assert_eq!(p["state"], "running");
    assert_eq!(p["network_mode"], "bridge");
    assert!(!p["ip_addresses"].as_array().unwrap().is_empty(), "{p}");
    assert_eq!(p["image"], docker::TEST_IMAGE);

    let a = container(&snap, &app.id).expect("app container listed");
    assert_eq!(a["ecs"]["task_arn"], TASK);
    assert_eq!(a["ecs"]["family"], "it-family");
    assert_eq!(a["ecs"]["revision"], "42");
    assert_eq!(a["ecs"]["container_name"], "app");
    assert_eq!(a["ecs"]["cluster"], "it-cluster");
    assert!(a["role"].is_null());
    assert_eq!(a["network_mode"], format!("container:{}", pause.id));
    assert_eq!(a["pid"], app.pid());
    let t = &a["telemetry"];
    assert!(t["memory_usage_bytes"].as_u64().unwrap() > 0, "{t}");
    assert!(t["cpu_usage_seconds"].as_f64().is_some(), "{t}");
    assert!(t["cpu_pct"].as_f64().is_some(), "{t}");
    assert!(t["network_rx_bytes"].as_u64().is_some(), "{t}");

    let h = container(&snap, &on_host.id).expect("host-network container listed");
    assert_eq!(h["network_mode"], "host");
    assert!(
        h["telemetry"]["network_rx_bytes"].is_null(),
        "host network counters are the host's"
    );
    let n = container(&snap, &plain.id).expect("plain container listed");
    assert!(n["ecs"].is_null());

    // The process exec'd into the app container maps to it and, through it, to the task.
    let processes = snap["processes"].as_array().unwrap();
    let exec_proc = processes
        .iter()
        .find(|p| p["cmdline"] == serde_json::json!(["sleep", "3604"]))
        .expect("exec'd process listed");
    assert_eq!(exec_proc["container_id"], app.id);
    assert_eq!(exec_proc["ecs_task_arn"], TASK);
    let main_proc = processes.iter().find(|p| p["pid"] == app.pid()).unwrap();
    assert_eq!(main_proc["container_id"], app.id);

    let proc_urn = exec_proc["urn"].as_str().unwrap();
    let app_urn = a["urn"].as_str().unwrap();
    assert!(has_relation(&snap, "runs-in", proc_urn, app_urn));
    assert!(has_relation(&snap, "part-of", app_urn, TASK));
    assert!(has_relation(&snap, "runs-on", app_urn, &host_urn));
    assert!(has_relation(&snap, "runs-on", proc_urn, &host_urn));
    assert!(!has_relation(
        &snap,
        "part-of",
        n["urn"].as_str().unwrap(),
        TASK
    ));
}

#[test]
fn daemon_sees_a_new_container_within_a_second_and_forgets_it() {
    if !docker::available("daemon_sees_a_new_container_within_a_second_and_forgets_it") {
        return;
    }
    docker::ensure_test_image();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // A long interval: only the Docker events can make the container show this fast.
    let _daemon = Guard::spawn(
        Command::new(binary("node-daemon"))
            .args(["run", "--interval", "60"])
            .env("STS_GRPC_ADDR", &addr)
            .env("STS_RELAY_ADDR", format!("127.0.0.1:{}", free_port()))
            .stderr(Stdio::null()),
    );
    let daemon_snapshot = || -> Option<Value> {
        let out = node_daemon(&[], &["snapshot", "--from-daemon", "--addr", &addr]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    };
    let has = |id: &str| daemon_snapshot().is_some_and(|s| container(&s, id).is_some());
    wait_for(Duration::from_secs(20), || {
        let status = node_daemon(&[], &["status", "--json", "--addr", &addr]);
        let v: Value = serde_json::from_slice(&status.stdout).ok()?;
        let c = collector(&v, "containers")?;
        (c["state"] == "ok").then_some(())
    })
    .expect("daemon connected to Docker");

    let c = run(&[], &ecs_labels("late"), &["sleep", "3605"]);
    // `docker run -d` has returned: the container is started.
    let started = Instant::now();
    let id = c.id.clone();
    wait_for(Duration::from_secs(5), || has(&id).then_some(())).expect("new container appears");
    let seen_after = started.elapsed();
    println!("new container in the daemon's snapshot {seen_after:?} after `docker run` returned");
    assert!(
        seen_after < Duration::from_secs(1),
        "appeared after {seen_after:?}"
    );

    c.remove();
    wait_for(Duration::from_secs(5), || (!has(&id)).then_some(()))
        .expect("removed container disappears");
}

#[test]
fn snapshot_without_docker_is_clear_not_fatal() {
    let out = node_daemon(
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        &["snapshot", "--json", "--interval", "0.1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no containers"), "{stderr}");
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(snap["containers"].as_array().unwrap().is_empty());
}

#[test]
fn daemon_without_docker_reports_unavailable_and_stays_healthy() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let _daemon = Guard::spawn(
        Command::new(binary("node-daemon"))
            .args(["run", "--interval", "0.5"])
            .env("STS_GRPC_ADDR", &addr)
            .env("STS_RELAY_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .stderr(Stdio::null()),
    );
    let (code, containers) = wait_for(Duration::from_secs(20), || {
        let status = node_daemon(&[], &["status", "--json", "--addr", &addr]);
        let v: Value = serde_json::from_slice(&status.stdout).ok()?;
        let c = collector(&v, "containers")?;
        (c["state"] == "unavailable").then_some((status.status.code(), c.clone()))
    })
    .expect("containers collector reported unavailable");
    assert_eq!(
        code,
        Some(0),
        "an absent Docker engine must not fail the health check"
    );
    assert!(
        containers["last_error"]
            .as_str()
            .unwrap()
            .contains("Docker"),
        "{containers}"
    );
}
