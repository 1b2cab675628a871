//! Bad configuration refuses to start, naming the variable and the reason.

use integration_tests::node_daemon;

fn refused(env: &[(&str, &str)], expect: &[&str]) {
    let out = node_daemon(env, &["snapshot", "--interval", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "exit code; stderr: {stderr}");
    for needle in expect {
        assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    }
}

#[test]
fn url_without_scheme() {
    refused(
        &[("STS_STS_URL", "sts.example.com/stsAgent")],
        &["STS_STS_URL", "no scheme"],
    );
    refused(
        &[("STS_APM_URL", "localhost:7077")],
        &["STS_APM_URL", "scheme"],
    );
}

#[test]
fn negative_threshold() {
    refused(
        &[("STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD", "-1")],
        &["STS_PROCESS_BLACKLIST_INCLUSIONS_MEM_THRESHOLD", "negative"],
    );
}

#[test]
fn bad_regex_and_boolean() {
    refused(
        &[("STS_PROCESS_BLACKLIST_PATTERNS", "^ok,^(bad")],
        &["STS_PROCESS_BLACKLIST_PATTERNS", "^(bad"],
    );
    refused(
        &[("STS_NETWORK_TRACING_ENABLED", "sometimes")],
        &["STS_NETWORK_TRACING_ENABLED"],
    );
}

#[test]
fn yaml_file_errors_name_the_file_and_env_wins() {
    let dir = std::env::temp_dir().join(format!("sts-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "process_blacklist_patternz: [x]\n").unwrap();
    let out = node_daemon(
        &[],
        &[
            "--config",
            bad.to_str().unwrap(),
            "snapshot",
            "--interval",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"));

    let good = dir.join("good.yaml");
    std::fs::write(&good, "process_agent_enabled: false\nsts_url: not-a-url\n").unwrap();
    // The environment's valid URL wins over the file's invalid one.
    let out = node_daemon(
        &[("STS_STS_URL", "https://sts.example/stsAgent")],
        &[
            "--config",
            good.to_str().unwrap(),
            "snapshot",
            "--json",
            "--interval",
            "0",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        snap["processes"].as_array().unwrap().is_empty(),
        "file's flag ignored"
    );
    let _ = std::fs::remove_dir_all(dir);
}
