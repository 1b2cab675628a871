//! The daemon's configuration (`node_daemon::config`), from YAML and from the environment.
//!
//! A configuration either loads, holding only values its checks allow, or fails with an
//! error that says why; secrets (the API key, the tokens and the token files' contents)
//! never appear in an error, the status summary or the `Debug` form of the configuration.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use node_daemon::config::{keys, Config, RawValues};

/// The variables whose values are secrets.
const SECRETS: [&str; 3] = ["STS_API_KEY", "STS_GRPC_TOKEN", "STS_RELAY_TOKEN"];
/// The variables that name a file holding a secret.
const SECRET_FILES: [&str; 2] = ["STS_GRPC_TOKEN_FILE", "STS_RELAY_TOKEN_FILE"];

const BLACKLIST: &str = "STS_PROCESS_BLACKLIST_PATTERNS";

/// Put into every secret the input gives and taken out of every other value, so that it
/// can only reach an output from a secret. No text of the daemon's holds it, no parser makes
/// it, and `Debug` does not escape it.
const MARKER: char = '\u{2603}';

/// A YAML configuration file.
pub fn from_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RawValues::from_yaml(text) {
        Ok(raw) => load_and_check(|key| raw.get(key).map(str::to_owned)),
        Err(reason) => assert!(!reason.is_empty(), "an error says why"),
    }
}

/// Environment variables, one `KEY=VALUE` a line. A key that is not one of the daemon's keys
/// (with or without `STS_`, in any case) stands for the known key at the sum of its bytes
/// (modulo their number), so that mutated keys still reach every variable.
pub fn from_env(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(&'static str, &str)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            (known_key(key), value)
        })
        .collect();
    load_and_check(|key| {
        let mut given = vars.iter().rev().filter(|(k, _)| *k == key);
        given.next().map(|(_, value)| value.to_string())
    });
}

/// Loads the configuration of the values `given` by key and checks it (see the module doc).
/// Each secret gets the marker, and each other value loses it. The value of a token file
/// variable, unless empty (unset), is taken as the file's contents, written to a file of the
/// target's whose path is given instead: a path from the input could be anything on this
/// machine (`/dev/zero`).
/// Without a process blacklist, one pattern stands for the default one, whose 120 regexes
/// would take most of the time of each input (the default has its unit tests).
fn load_and_check(given: impl Fn(&str) -> Option<String>) {
    let raw = RawValues::load(None, |key| {
        let value = given(key);
        if key == BLACKLIST && value.as_deref().map_or(true, |v| v.trim().is_empty()) {
            return Some("^fuzz$".to_owned());
        }
        let value = value?;
        Some(if SECRETS.contains(&key) {
            secret(&value)
        } else if SECRET_FILES.contains(&key) && !value.is_empty() {
            secret_file(key, &secret(&value))
        } else {
            value.replace(MARKER, "")
        })
    })
    .expect("no file to read");
    check(&raw);
}

/// Every key the daemon reads.
fn known_keys() -> &'static [&'static str] {
    static KNOWN: OnceLock<Vec<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| keys::names().collect())
}

fn known_key(key: &str) -> &'static str {
    let upper = key.trim().to_ascii_uppercase();
    let known = known_keys();
    let by_name = known
        .iter()
        .find(|known| **known == upper || known.strip_prefix("STS_") == Some(upper.as_str()));
    let sum: usize = key.bytes().map(usize::from).sum();
    by_name.copied().unwrap_or(known[sum % known.len()])
}

/// A secret holding the marker, unless it is blank (which counts as unset).
fn secret(value: &str) -> String {
    if value.trim().is_empty() {
        value.to_owned()
    } else {
        format!("{value}{MARKER}")
    }
}

/// Writes `contents` to the token file of `key` (in a directory of this process's under
/// the temporary directory); its path.
fn secret_file(key: &str, contents: &str) -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sts-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for token files");
        dir
    });
    let path = dir.join(key);
    std::fs::write(&path, contents).expect("a token file");
    path.display().to_string()
}

/// Checks the configuration of `raw` (see the module doc).
fn check(raw: &RawValues) {
    match Config::from_raw(raw) {
        Ok(config) => {
            holds_valid_values(&config);
            for (key, value) in config.summary() {
                assert!(known_keys().contains(&key.as_str()), "{key} is a known key");
                assert!(!value.contains(MARKER), "{key} shows a secret: {value:?}");
            }
            let debug = format!("{config:?}");
            assert!(!debug.contains(MARKER), "Debug shows a secret: {debug}");
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.trim().is_empty(), "an error says why");
            assert!(!text.contains(MARKER), "the error shows a secret: {text:?}");
        }
    }
}

/// What the configuration's checks promise of a configuration that loads.
fn holds_valid_values(config: &Config) {
    const DAY: Duration = Duration::from_secs(86_400);
    let positive = |name: &str, d: Duration| {
        assert!(d > Duration::ZERO && d <= DAY, "{name}: {d:?}");
    };
    positive("collection interval", config.collection_interval);
    positive("process agent interval", config.process_agent.interval);
    assert!(config.process_agent.short_lived_processes <= DAY);
    assert!(config.process_agent.short_lived_connections <= DAY);
    assert!(config.network.max_connections >= 1);
    let blacklist = &config.process.blacklist;
    for threshold in [blacklist.cpu_threshold, blacklist.mem_threshold]
        .into_iter()
        .flatten()
    {
        assert!(threshold.is_finite() && threshold >= 0.0, "{threshold}");
    }
    assert!(
        config.grpc_addr.ip().is_loopback() || config.grpc_token.is_some(),
        "the read API off loopback has a token"
    );
    assert!(config.cgroup_root.is_absolute());
    assert!(config.queue_dir.iter().all(|d| d.is_absolute()));
    let urls = [
        &config.sts_url,
        &config.process_agent_url,
        &config.apm_url,
        &config.ecs_agent_url,
    ];
    for url in urls.into_iter().flatten().chain([&config.ec2_metadata_url]) {
        assert!(matches!(url.scheme(), "http" | "https"), "{url}");
        assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
    }
}
