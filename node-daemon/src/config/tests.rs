use super::*;

fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_pairs(pairs)
}

fn error_of(pairs: &[(&str, &str)]) -> String {
    from_pairs(pairs).unwrap_err().to_string()
}

#[test]
fn defaults_without_any_variable() {
    let config = from_pairs(&[]).unwrap();
    assert!(config.sts_url.is_none());
    assert!(config.api_key.is_none());
    assert!(config.process_agent_enabled && config.apm_enabled && config.network_tracing_enabled);
    assert!(!config.skip_ssl_validation);
    assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:7182");
    assert_eq!(config.relay_addr.to_string(), "0.0.0.0:7183");
    assert!(config.grpc_token.is_none() && config.relay_token.is_none());
    assert_eq!(config.collection_interval, Duration::from_secs(10));
    assert_eq!(
        config.process.blacklist.patterns.len(),
        default_blacklist().len()
    );
    assert!(config.process.blacklist.patterns.len() > 100);
    assert_eq!(config.process.blacklist.cpu_threshold, None);
}

#[test]
fn agent_urls_default_to_the_sts_url() {
    let config = from_pairs(&[("STS_STS_URL", "https://sts.example/stsAgent")]).unwrap();
    assert_eq!(config.process_agent_url, config.sts_url);
    assert_eq!(config.apm_url, config.sts_url);
    let config = from_pairs(&[
        ("STS_STS_URL", "https://sts.example/stsAgent"),
        ("STS_APM_URL", "https://apm.example/stsAgent"),
    ])
    .unwrap();
    assert_eq!(config.apm_url.unwrap().host_str(), Some("apm.example"));
}

#[test]
fn errors_name_the_variable_and_the_reason() {
    let err = error_of(&[("STS_STS_URL", "sts.example/stsAgent")]);
    assert!(
        err.starts_with("STS_STS_URL:") && err.contains("no scheme"),
        "{err}"
    );
    let err = error_of(&[("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD", "-5")]);
    assert!(
        err.starts_with("STS_PROCESS_BLACKLIST_INCLUSIONS_CPU_THRESHOLD:")
            && err.contains("negative"),
        "{err}"
    );
    let err = error_of(&[("STS_PROCESS_BLACKLIST_PATTERNS", "^java,(unclosed")]);
    assert!(
        err.starts_with("STS_PROCESS_BLACKLIST_PATTERNS:") && err.contains("(unclosed"),
        "{err}"
    );
    let err = error_of(&[("STS_APM_ENABLED", "maybe")]);
    assert!(err.starts_with("STS_APM_ENABLED:"), "{err}");
    let err = error_of(&[("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM", "-2")]);
    assert!(
        err.starts_with("STS_PROCESS_BLACKLIST_INCLUSIONS_TOP_MEM:"),
        "{err}"
    );
}

#[test]
fn api_key_is_not_in_errors_or_summary() {
    let config = from_pairs(&[("STS_API_KEY", "s3cr3t-key")]).unwrap();
    let summary = format!("{:?} {:?}", config.summary(), config);
    assert!(!summary.contains("s3cr3t"), "{summary}");
    assert_eq!(config.summary()["STS_API_KEY"], "<set, redacted>");
}

#[test]
fn summary_lists_every_known_key() {
    let summary = from_pairs(&[]).unwrap().summary();
    // A secret read from a file shows as its secret's key.
    for key in keys::KEYS.iter().filter(|k| k.show.is_some()) {
        assert!(summary.contains_key(key.name), "{} missing", key.name);
    }
}

#[test]
fn every_key_is_read_and_nothing_else() {
    let raw = RawValues::default();
    Config::from_raw(&raw).unwrap();
    let asked: Vec<String> = raw.asked.take().into_iter().collect();
    let mut known: Vec<&str> = keys::names().collect();
    known.sort_unstable();
    assert_eq!(asked, known);
}

#[test]
fn yaml_file_with_env_winning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(
        &path,
        "sts_url: https://file.example/stsAgent\nSTS_APM_ENABLED: no\nprocess_blacklist_patterns:\n  - ^java\n  - ^node\nprocess_blacklist_inclusions_top_cpu: 3\n",
    )
    .unwrap();
    let raw = RawValues::load(Some(&path), |key| {
        (key == "STS_STS_URL").then(|| "https://env.example/stsAgent".to_string())
    })
    .unwrap();
    let config = Config::from_raw(&raw).unwrap();
    assert_eq!(config.sts_url.unwrap().host_str(), Some("env.example"));
    assert!(!config.apm_enabled);
    assert_eq!(config.process.blacklist.patterns.len(), 2);
    assert_eq!(config.process.blacklist.top_cpu, 3);
}

#[test]
fn yaml_refuses_unknown_keys_and_bad_shapes() {
    let err = RawValues::from_yaml("sts_urll: x").unwrap_err();
    assert!(err.contains("unknown key `sts_urll`"), "{err}");
    assert!(RawValues::from_yaml("- a\n- b").is_err());
    assert!(RawValues::from_yaml("api_key: {a: 1}").is_err());
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.yaml");
    let err = RawValues::load(Some(&missing), |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("none.yaml"), "{err}");
}

#[test]
fn network_tracer_keys() {
    let config = from_pairs(&[]).unwrap();
    assert_eq!(
        config.network,
        NetworkConfig {
            backend: NetworkBackend::Auto,
            max_connections: 100_000
        }
    );
    let config = from_pairs(&[
        ("STS_NETWORK_BACKEND", "PROC"),
        ("STS_NETWORK_MAX_CONNECTIONS", "500"),
    ])
    .unwrap();
    assert_eq!(config.network.backend, NetworkBackend::Proc);
    assert_eq!(config.summary()["STS_NETWORK_MAX_CONNECTIONS"], "500");
    let err = error_of(&[("STS_NETWORK_BACKEND", "ebpf-please")]);
    assert!(err.starts_with("STS_NETWORK_BACKEND:"), "{err}");
    let err = error_of(&[("STS_NETWORK_MAX_CONNECTIONS", "0")]);
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn a_read_api_off_loopback_needs_a_token() {
    let err = error_of(&[("STS_GRPC_ADDR", "0.0.0.0:7182")]);
    assert!(
        err.contains("STS_GRPC_ADDR") && err.contains("STS_GRPC_TOKEN"),
        "{err}"
    );
    let config = from_pairs(&[
        ("STS_GRPC_ADDR", "0.0.0.0:7182"),
        ("STS_GRPC_TOKEN", "read-secret"),
    ])
    .unwrap();
    assert!(config.grpc_token.unwrap().matches(b"read-secret"));
    let err = error_of(&[("STS_RELAY_ADDR", "127.0.0.1:7182")]);
    assert!(err.contains("STS_RELAY_ADDR"), "{err}");
    // Different addresses on one port are two sockets.
    from_pairs(&[
        ("STS_GRPC_ADDR", "127.0.0.1:7182"),
        ("STS_RELAY_ADDR", "10.0.0.5:7182"),
    ])
    .unwrap();
}

#[test]
fn tokens_come_from_a_file_and_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay-token");
    std::fs::write(&path, "file-secret\n").unwrap();
    let path = path.to_str().unwrap();
    let config = from_pairs(&[("STS_RELAY_TOKEN_FILE", path)]).unwrap();
    let token = config.relay_token.as_ref().unwrap();
    assert!(token.matches(b"file-secret"));
    assert!(!token.matches(b"file-secret\n") && !token.matches(b"file-secreT"));
    let summary = format!("{:?} {:?}", config.summary(), config);
    assert!(!summary.contains("file-secret"), "{summary}");
    assert_eq!(config.summary()["STS_RELAY_TOKEN"], "<set, redacted>");

    let err = error_of(&[("STS_RELAY_TOKEN", "x"), ("STS_RELAY_TOKEN_FILE", path)]);
    assert!(err.contains("both set"), "{err}");
    let err = error_of(&[("STS_RELAY_TOKEN_FILE", "/nonexistent/token")]);
    assert!(
        err.starts_with("STS_RELAY_TOKEN_FILE: cannot read /nonexistent/token"),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let err = error_of(&[("STS_GRPC_TOKEN_FILE", empty.to_str().unwrap())]);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn defaults_that_depend_on_other_keys() {
    let receiver = ("STS_STS_URL", "https://sts.example/stsAgent");
    assert_eq!(from_pairs(&[]).unwrap().trace_recent_spans, 10_000);
    assert_eq!(from_pairs(&[receiver]).unwrap().trace_recent_spans, 0);
    let given = from_pairs(&[receiver, ("STS_TRACE_RECENT_SPANS", "5")]).unwrap();
    assert_eq!(given.trace_recent_spans, 5);

    let queue_dir = from_pairs(&[]).unwrap().queue_dir.unwrap();
    assert_eq!(
        queue_dir,
        Path::new("/var/lib/stackstate-node-daemon/queue")
    );
    assert!(from_pairs(&[("STS_QUEUE_DIR", " ")])
        .unwrap()
        .queue_dir
        .is_none());
}

#[test]
fn otlp_export_is_off_by_default_and_runs_alone() {
    assert!(from_pairs(&[]).unwrap().otlp.is_none());
    let config = from_pairs(&[
        ("STS_OTLP_ENDPOINT", "https://otlp.example:4318"),
        ("STS_OTLP_HEADERS", "authorization=Bearer%20s3cret"),
    ])
    .unwrap();
    assert!(config.sts_url.is_none());
    assert_eq!(config.trace_recent_spans, 0, "the spans go to the endpoint");
    let otlp = config.otlp.as_ref().unwrap();
    assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(otlp.headers[0].1.expose(), "Bearer s3cret");
    let summary = format!("{:?} {:?}", config.summary(), config);
    assert!(!summary.contains("s3cret"), "{summary}");
    assert_eq!(
        config.summary()["STS_OTLP_HEADERS"],
        "authorization (values redacted)"
    );
}

#[test]
fn otlp_settings_are_checked_without_showing_the_headers() {
    let error = error_of(&[("STS_OTLP_HEADERS", "authorization=s3cret")]);
    assert!(error.contains("STS_OTLP_ENDPOINT is not"), "{error}");
    let error = error_of(&[
        ("STS_OTLP_ENDPOINT", "http://collector:4317"),
        ("STS_OTLP_PROTOCOL", "http/json"),
    ]);
    assert!(
        error.contains("STS_OTLP_PROTOCOL") && error.contains("`grpc`"),
        "{error}"
    );
    let error = error_of(&[
        ("STS_OTLP_ENDPOINT", "http://collector:4317"),
        ("STS_OTLP_HEADERS", "authorization s3cret"),
    ]);
    assert!(error.contains("STS_OTLP_HEADERS"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
}
