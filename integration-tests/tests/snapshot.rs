//! `node-daemon snapshot --json` against processes these tests start.

use std::process::Command;

use integration_tests::{process, snapshot_json, Guard};

/// A long-running process that no default blacklist pattern matches.
fn idle(args: &[&str]) -> Guard {
    Guard::spawn(Command::new("/bin/sleep").arg("3600").args(args))
}

#[test]
fn lists_a_started_process_with_its_fields() {
    let child = idle(&[]);
    let snap = snapshot_json(&[]);
    for key in [
        "host",
        "processes",
        "containers",
        "connections",
        "relations",
    ] {
        assert!(snap.get(key).is_some(), "top-level key {key} missing");
    }
    let p = process(&snap, child.pid()).expect("started process listed");
    for key in [
        "pid",
        "ppid",
        "create_time_ms",
        "name",
        "exe",
        "cmdline",
        "user",
        "cpu_pct",
        "rss_bytes",
        "vms_bytes",
        "read_bytes",
        "write_bytes",
        "threads",
        "open_fds",
        "container_id",
    ] {
        assert!(p.get(key).is_some(), "process field {key} missing: {p}");
    }
    assert_eq!(p["ppid"], std::process::id());
    assert_eq!(p["name"], "sleep");
    assert_eq!(p["exe"], "/usr/bin/sleep");
    assert_eq!(p["cmdline"], serde_json::json!(["/bin/sleep", "3600"]));
    assert_eq!(p["user"], "root");
    assert_eq!(p["threads"], 1);
    assert!(p["cpu_pct"].as_f64().unwrap() < 5.0);
    assert!(p["rss_bytes"].as_u64().unwrap() > 0);
    assert!(p["container_id"].is_null());
    let host = &snap["host"];
    assert!(host["cpu_count"].as_u64().unwrap() >= 1);
    assert!(host["telemetry"]["network"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["interface"] == "lo"));
}

#[test]
fn default_blacklist_hides_and_patterns_replace_it() {
    // `sleep ...` (no path) matches the default pattern `^sleep`.
    let hidden = Guard::spawn(Command::new("sleep").arg("3601"));
    let shown = idle(&[]);
    let snap = snapshot_json(&[]);
    assert!(
        process(&snap, hidden.pid()).is_none(),
        "blacklisted process reported"
    );
    assert!(process(&snap, shown.pid()).is_some());

    let snap = snapshot_json(&[("STS_PROCESS_BLACKLIST_PATTERNS", r#"["^/bin/sleep 3600$"]"#)]);
    assert!(
        process(&snap, hidden.pid()).is_some(),
        "default list still applied"
    );
    assert!(
        process(&snap, shown.pid()).is_none(),
        "custom pattern not applied"
    );
}

#[test]
fn busy_blacklisted_process_is_readmitted_by_cpu_threshold() {
    let busy = Guard::spawn(Command::new("/bin/sh").args(["-c", "while :; do :; done"]));
    let env = [("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD", "30")];
    let snap = snapshot_json(&env);
    let p = process(&snap, busy.pid()).expect("busy shell readmitted");
    assert_eq!(p["readmitted"], true);
    assert!(p["cpu_pct"].as_f64().unwrap() > 30.0, "{p}");
    let snap = snapshot_json(&[]);
    assert!(
        process(&snap, busy.pid()).is_none(),
        "shell reported without inclusion"
    );
}

#[test]
fn top_mem_readmits_the_heaviest() {
    // Blacklist everything, re-admit the single heaviest process by memory.
    let env = [
        ("STS_PROCESS_BLACKLIST_PATTERNS", ".*"),
        ("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", "1"),
    ];
    let snap = snapshot_json(&env);
    let procs = snap["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0]["readmitted"], true);
}

#[test]
fn secrets_in_command_lines_are_scrubbed() {
    let child = Guard::spawn(Command::new("python3").args([
        "-c",
        "import time; time.sleep(3600)",
        "--password",
        "hunter2",
        "api_key=abcdef123",
        "postgres://u:pw0rd@db/x",
    ]));
    let out = integration_tests::node_daemon(
        &[("STS_PROCESS_BLACKLIST_PATTERNS", "^nothing$")],
        &["snapshot", "--json", "--interval", "0.2"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for secret in ["hunter2", "abcdef123", "pw0rd"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    let snap: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = process(&snap, child.pid()).expect("process listed");
    let args: Vec<&str> = p["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"api_key=********"), "{args:?}");
    assert!(args.contains(&"postgres://u:********@db/x"), "{args:?}");
}

#[test]
fn table_output_by_default() {
    let child = idle(&[]);
    let out = integration_tests::node_daemon(&[], &["snapshot", "--interval", "0.2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("host "), "{text}");
    assert!(text.contains("PID"));
    assert!(text
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{} ", child.pid()))));
}

#[test]
fn process_collection_can_be_disabled() {
    let snap = snapshot_json(&[("STS_PROCESS_AGENT_ENABLED", "false")]);
    assert!(snap["processes"].as_array().unwrap().is_empty());
    assert!(snap["host"]["hostname"].is_string());
}

#[test]
fn network_tracing_can_be_disabled() {
    // A connection exists (this test's own listener and client) in both runs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _server = listener.accept().unwrap();
    let on = snapshot_json(&[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    assert!(
        !on["connections"].as_array().unwrap().is_empty(),
        "tracer on sees connections"
    );
    let off = snapshot_json(&[
        ("STS_PROCESS_BLACKLIST_PATTERNS", "^$never"),
        ("STS_NETWORK_TRACING_ENABLED", "false"),
    ]);
    assert!(
        off["connections"].as_array().unwrap().is_empty(),
        "connections collected with tracing off"
    );
    assert!(
        !off["processes"].as_array().unwrap().is_empty(),
        "processes still collected"
    );
}
