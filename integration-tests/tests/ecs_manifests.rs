//! The ECS files in `ecs/` against the real AWS CLI (botocore validates every parameter
//! client-side against the ECS service model) and moto's ECS emulator: every task
//! definition registers, as shipped and as rendered by `ecs/render.sh`; the daemon service
//! is created with the DAEMON strategy. Then the rules the files must keep: host pid and
//! network namespaces, no capability outside the allow-list below, read-only mounts that
//! name declared volumes, the health check that runs `node-daemon status`, the sidecar
//! fragment used verbatim by the example application, its three ports (Datadog 8126, OTLP
//! 4317 and 4318) mapped, listened on and exposed by its image.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::{free_port, python, wait_for, workspace_root, Guard};
use serde_json::{json, Value};

const DAEMON_TASK_DEFINITIONS: [&str; 2] = [
    "node-daemon-task-definition.json",
    "node-daemon-task-definition-amazonlinux1.json",
];
const EXAMPLE_APP: &str = "example-app-task-definition.json";
const SIDECAR_FRAGMENT: &str = "trace-sidecar-container-definition.json";
const SERVICE: &str = "node-daemon-service.json";

/// Capabilities a container of ours may add, by container name. Everything else is
/// dropped (`"drop": ["ALL"]`), so this is the whole privilege of the container. The
/// daemon's are exactly the set it keeps at run time, where each one's use is written
/// (`node_daemon::privilege::RUNTIME_CAPABILITIES`); trace-sidecar and the example
/// application add none.
fn allowed_capabilities(container: &str) -> BTreeSet<&'static str> {
    match container {
        "node-daemon" => node_daemon::privilege::RUNTIME_CAPABILITIES
            .iter()
            .map(|cap| cap.name)
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn ecs_dir() -> PathBuf {
    workspace_root().join("ecs")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn ecs_json(name: &str) -> Value {
    read_json(&ecs_dir().join(name))
}

fn task_definition_files() -> Vec<&'static str> {
    let mut files = DAEMON_TASK_DEFINITIONS.to_vec();
    files.push(EXAMPLE_APP);
    files
}

fn containers(task_definition: &Value) -> &Vec<Value> {
    task_definition["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions is a list")
}

fn container<'a>(task_definition: &'a Value, name: &str) -> &'a Value {
    containers(task_definition)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["environment"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sts-ecs-manifests-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temporary directory");
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// moto's server on a free loopback port, stopped on drop.
struct Moto {
    _server: Guard,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let venv_bin = python().parent().expect(".venv/bin").to_path_buf();
        let port = free_port();
        let server = Guard::spawn(
            Command::new(venv_bin.join("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("moto_server did not listen on {endpoint} within 30 s"));
        Self {
            _server: server,
            endpoint,
        }
    }

    /// Runs the real AWS CLI against the emulator, isolated from any local AWS setup.
    fn aws(&self, args: &[&str]) -> Output {
        let aws = python().parent().expect(".venv/bin").join("aws");
        Command::new(&aws)
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--output", "json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", aws.display()))
    }

    /// Runs the CLI and returns its JSON answer; panics with stderr when it fails.
    fn aws_ok(&self, args: &[&str]) -> Value {
        let out = self.aws(args);
        assert!(
            out.status.success(),
            "aws {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "aws {} printed no JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn register(&self, file: &Path) -> Value {
        let arg = format!("file://{}", file.display());
        self.aws_ok(&["ecs", "register-task-definition", "--cli-input-json", &arg])
            ["taskDefinition"]
            .clone()
    }
}

/// `ecs/render.sh FILE` with the given environment; returns the output.
fn render(file: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ecs_dir().join("render.sh"));
    command
        .arg(ecs_dir().join(file))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("render.sh runs")
}

const RENDER_ENV: &[(&str, &str)] = &[
    ("AGENT_VERSION", "1.2.3"),
    ("STS_API_KEY", "it-api-key \"quoted\" \\ backslash"),
    ("STS_STS_URL", "https://sts.example.com/stsAgent"),
    ("STS_SKIP_SSL_VALIDATION", "true"),
    (
        "STS_PROCESS_BLACKLIST_PATTERNS",
        r#"["^java\\s","^/usr/bin/dockerd"]"#,
    ),
    ("STS_DAEMON_ADDR", "10.0.1.23:7183"),
    ("STS_RELAY_TOKEN_SECRET", RELAY_SECRET),
    ("STS_EXECUTION_ROLE_ARN", EXECUTION_ROLE),
];

/// Not environment values: they render as the `secrets` entry and the execution role.
const RELAY_SECRET: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:relay-token";
const EXECUTION_ROLE: &str = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole";

/// The relay token's `secrets` entry of a container, if any.
fn relay_secret(container: &Value) -> Option<&str> {
    container["secrets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "STS_RELAY_TOKEN")?["valueFrom"]
        .as_str()
}

fn assert_registered(answer: &Value, shipped: &Value) {
    assert_eq!(answer["family"], shipped["family"], "family echoed");
    assert_eq!(answer["status"], "ACTIVE");
    assert!(answer["revision"].as_u64().is_some_and(|r| r >= 1));
    for key in ["pidMode", "networkMode"] {
        assert_eq!(answer[key], shipped[key], "{key} echoed");
    }
    let names: Vec<_> = containers(answer).iter().map(|c| &c["name"]).collect();
    let shipped_names: Vec<_> = containers(shipped).iter().map(|c| &c["name"]).collect();
    assert_eq!(names, shipped_names);
}

#[test]
fn every_file_registers_with_the_real_cli_and_the_daemon_service_is_created() {
    // Every JSON file in ecs/ is one this test knows how to check.
    let mut known: BTreeSet<&str> = task_definition_files().into_iter().collect();
    known.extend([SIDECAR_FRAGMENT, SERVICE]);
    let present: BTreeSet<String> = std::fs::read_dir(ecs_dir())
        .expect("ecs/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let known_owned: BTreeSet<String> = known.iter().map(|s| s.to_string()).collect();
    assert_eq!(present, known_owned, "the JSON files in ecs/");

    let moto = Moto::start();
    let cluster = moto.aws_ok(&["ecs", "create-cluster", "--cluster-name", "default"]);
    assert_eq!(cluster["cluster"]["clusterName"], "default");

    // The CLI does validate: a misspelt key is refused before any request is sent, so a
    // success below means botocore accepted the whole file.
    let tmp = TempDir::new();
    let mut broken = ecs_json(DAEMON_TASK_DEFINITIONS[0]);
    broken["containerDefinitions"][0]["linuxParameter"] = json!({});
    let broken_file = tmp.write("broken.json", &broken.to_string());
    let out = moto.aws(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &format!("file://{}", broken_file.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Unknown parameter"),
        "botocore refuses an unknown key: {} {stderr}",
        out.status
    );

    for file in task_definition_files() {
        let shipped = ecs_json(file);

        // As shipped, placeholders and all: valid for botocore as is.
        let answer = moto.register(&ecs_dir().join(file));
        assert_registered(&answer, &shipped);
        assert_eq!(answer["pidMode"], "host", "{file}: pidMode host");

        // As rendered for a deployment.
        let out = render(file, RENDER_ENV);
        assert!(
            out.status.success(),
            "render.sh {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered_file = tmp.write(file, &String::from_utf8_lossy(&out.stdout));
        let rendered = read_json(&rendered_file);
        let answer = moto.register(&rendered_file);
        assert_registered(&answer, &shipped);
        assert_eq!(answer["revision"], 2, "{file}: second revision");
        for c in containers(&answer) {
            let image = c["image"].as_str().expect("image");
            assert!(!image.contains("${"), "{file}: image {image} rendered");
        }
        if DAEMON_TASK_DEFINITIONS.contains(&file) {
            let daemon = container(&answer, "node-daemon");
            assert_eq!(daemon["image"], "stackstate/node-daemon:1.2.3");
            for (name, value) in RENDER_ENV.iter().skip(1) {
                if !name.ends_with("_SECRET")
                    && !name.ends_with("_ARN")
                    && *name != "STS_DAEMON_ADDR"
                {
                    assert_eq!(env_value(daemon, name), Some(*value), "{file}: {name}");
                }
            }
            // Unset variables render as their defaults; empty means "unset" to the daemon.
            assert_eq!(env_value(daemon, "STS_APM_ENABLED"), Some("true"));
            assert_eq!(env_value(daemon, "STS_PROCESS_AGENT_URL"), Some(""));
            assert_eq!(
                daemon["healthCheck"],
                shipped["containerDefinitions"][0]["healthCheck"]
            );
            assert_eq!(answer["networkMode"], "host");
            assert_eq!(relay_secret(daemon), Some(RELAY_SECRET), "{file}");
            assert_eq!(answer["executionRoleArn"], EXECUTION_ROLE, "{file}");
        } else {
            let sidecar = container(&rendered, "trace-sidecar");
            assert_eq!(sidecar["image"], "stackstate/trace-sidecar:1.2.3");
            assert_eq!(
                env_value(sidecar, "STS_DAEMON_ADDR"),
                Some("10.0.1.23:7183")
            );
            // The same secret as the daemon's, so both hold the same token.
            assert_eq!(relay_secret(sidecar), Some(RELAY_SECRET), "{file}");
            assert_eq!(rendered["executionRoleArn"], EXECUTION_ROLE, "{file}");
        }

        // Without a relay token secret: no `secrets`, no execution role, still valid.
        let out = render(file, &RENDER_ENV[..RENDER_ENV.len() - 2]);
        assert!(out.status.success(), "render.sh {file} without a secret");
        let plain = serde_json::from_slice::<Value>(&out.stdout).expect("JSON");
        assert!(plain.get("executionRoleArn").is_none(), "{file}");
        for c in containers(&plain) {
            assert!(c.get("secrets").is_none(), "{file}: {c}");
        }
        let plain_file = tmp.write(&format!("plain-{file}"), &plain.to_string());
        assert_registered(&moto.register(&plain_file), &shipped);
        // A secret without the role that lets ECS read it is refused.
        let out = render(file, &RENDER_ENV[..RENDER_ENV.len() - 1]);
        assert_eq!(out.status.code(), Some(65), "{file}: secret without a role");
    }

    // The sidecar fragment, wrapped the way a user pastes it into an application task.
    let wrapped = json!({
        "family": "stackstate-trace-sidecar-fragment-check",
        "requiresCompatibilities": ["EC2"],
        "networkMode": "bridge",
        "pidMode": "host",
        "containerDefinitions": [ecs_json(SIDECAR_FRAGMENT)],
    });
    let wrapped_file = tmp.write("sidecar-wrapped.json", &wrapped.to_string());
    let answer = moto.register(&wrapped_file);
    assert_registered(&answer, &wrapped);
    assert_eq!(container(&answer, "trace-sidecar")["user"], "10001:10001");

    // The DAEMON service, on the cluster and task definition family it names.
    let service_def = ecs_json(SERVICE);
    let arg = format!("file://{}", ecs_dir().join(SERVICE).display());
    let service =
        moto.aws_ok(&["ecs", "create-service", "--cli-input-json", &arg])["service"].clone();
    assert_eq!(service["serviceName"], service_def["serviceName"]);
    assert_eq!(service["schedulingStrategy"], "DAEMON");
    assert_eq!(service["launchType"], "EC2");
    assert_eq!(service["status"], "ACTIVE");
    let task_definition = service["taskDefinition"]
        .as_str()
        .expect("task definition ARN");
    assert!(
        task_definition.contains(":task-definition/stackstate-node-daemon:"),
        "the service runs the daemon family: {task_definition}"
    );
    let described = moto.aws_ok(&[
        "ecs",
        "describe-services",
        "--cluster",
        "default",
        "--services",
        "stackstate-node-daemon",
    ]);
    assert_eq!(described["services"][0]["schedulingStrategy"], "DAEMON");
}

#[test]
fn no_capability_outside_the_allow_list() {
    let mut checked = Vec::new();
    let mut all: Vec<(String, Value)> = Vec::new();
    for file in task_definition_files() {
        for c in containers(&ecs_json(file)) {
            all.push((file.to_string(), c.clone()));
        }
    }
    all.push((SIDECAR_FRAGMENT.to_string(), ecs_json(SIDECAR_FRAGMENT)));

    for (file, c) in &all {
        let name = c["name"].as_str().expect("container name");
        assert_ne!(c["privileged"], true, "{file}/{name}: privileged");
        let caps = &c["linuxParameters"]["capabilities"];
        let added: Vec<&str> = caps["add"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for cap in &added {
            assert!(
                allowed_capabilities(name).contains(cap),
                "{file}/{name} adds {cap}, which is not in the allow-list"
            );
        }
        if name == "node-daemon" {
            let added: BTreeSet<&str> = added.iter().copied().collect();
            assert_eq!(
                added,
                allowed_capabilities(name),
                "{file}/{name}: exactly these"
            );
        }
        if name == "node-daemon" || name == "trace-sidecar" {
            // Ours drop Docker's default set too, so `add` is all they hold.
            assert_eq!(caps["drop"], json!(["ALL"]), "{file}/{name} drops ALL");
            assert_eq!(
                c["readonlyRootFilesystem"], true,
                "{file}/{name} read-only root"
            );
        }
        if name == "trace-sidecar" {
            let user = c["user"].as_str().expect("the sidecar names its user");
            assert!(
                !user.starts_with("0:") && user != "0" && user != "root",
                "{file}: the sidecar runs as {user}"
            );
            assert!(added.is_empty());
        }
        checked.push(format!("{file}/{name}"));
    }
    assert!(checked.len() >= 5, "checked {checked:?}");
}

#[test]
fn daemon_health_check_runs_node_daemon_status() {
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("docker/node-daemon.Dockerfile"))
            .expect("docker/node-daemon.Dockerfile");
    assert!(
        dockerfile.contains("COPY target/release/node-daemon /usr/local/bin/node-daemon"),
        "the image holds the binary where the health check calls it"
    );
    for file in DAEMON_TASK_DEFINITIONS {
        let daemon = container(&ecs_json(file), "node-daemon").clone();
        let check = &daemon["healthCheck"];
        assert_eq!(
            check["command"],
            json!(["CMD", "/usr/local/bin/node-daemon", "status"]),
            "{file}"
        );
        // `status` waits 3 s by default; ECS must wait longer before calling it failed.
        assert!(check["timeout"].as_u64().expect("timeout") > 3, "{file}");
        assert!(
            check["startPeriod"].as_u64().is_some(),
            "{file}: a start period"
        );
        // The health check asks the address the daemon serves its read API on: loopback,
        // and the relay listens for the sidecars on every address.
        assert_eq!(env_value(&daemon, "STS_GRPC_ADDR"), Some("127.0.0.1:7182"));
        assert_eq!(env_value(&daemon, "STS_RELAY_ADDR"), Some("0.0.0.0:7183"));
    }
}

#[test]
fn daemon_shares_the_host_namespaces_and_mounts_read_only() {
    let standard = ecs_json(DAEMON_TASK_DEFINITIONS[0]);
    for file in DAEMON_TASK_DEFINITIONS {
        let td = ecs_json(file);
        assert_eq!(td["pidMode"], "host", "{file}");
        assert_eq!(td["networkMode"], "host", "{file}");
        assert_eq!(td["requiresCompatibilities"], json!(["EC2"]), "{file}");
        let daemon = container(&td, "node-daemon");
        assert!(
            daemon["portMappings"].is_null(),
            "{file}: host network, no port mappings"
        );
        let volumes: Vec<&Value> = td["volumes"].as_array().expect("volumes").iter().collect();
        let mounts = daemon["mountPoints"].as_array().expect("mountPoints");
        let mut paths = BTreeSet::new();
        for m in mounts {
            let volume = volumes
                .iter()
                .find(|v| v["name"] == m["sourceVolume"])
                .unwrap_or_else(|| panic!("{file}: mount {m} names no volume"));
            assert_eq!(m["readOnly"], true, "{file}: {m} read-only");
            paths.insert((
                volume["host"]["sourcePath"]
                    .as_str()
                    .expect("sourcePath")
                    .to_string(),
                m["containerPath"]
                    .as_str()
                    .expect("containerPath")
                    .to_string(),
            ));
        }
        assert_eq!(
            mounts.len(),
            volumes.len(),
            "{file}: every volume is mounted"
        );
        // /proc is not mounted: with pidMode host the container's own /proc is the host's.
        assert!(
            paths.iter().all(|(host, _)| !host.starts_with("/proc")),
            "{file}: no /proc mount"
        );
        for wanted in [
            "/var/run/docker.sock",
            "/etc/passwd",
            "/sys/kernel/tracing",
            "/sys/kernel/debug",
        ] {
            assert!(
                paths.contains(&(wanted.to_string(), wanted.to_string())),
                "{file}: {wanted} mounted at the same path"
            );
        }
        // The daemon reads cgroups where STS_CGROUP_ROOT says, and that is the mount.
        let cgroup_root = env_value(daemon, "STS_CGROUP_ROOT").expect("STS_CGROUP_ROOT");
        assert!(
            paths.iter().any(|(_, ctr)| ctr == cgroup_root),
            "{file}: STS_CGROUP_ROOT {cgroup_root} is a mount"
        );
    }

    // Amazon Linux 1 differs only by its family and the host's cgroup path.
    let mut al1 = ecs_json(DAEMON_TASK_DEFINITIONS[1]);
    let cgroup = al1["volumes"]
        .as_array_mut()
        .expect("volumes")
        .iter_mut()
        .find(|v| v["name"] == "cgroup")
        .expect("cgroup volume");
    assert_eq!(cgroup["host"]["sourcePath"], "/cgroup/");
    assert_eq!(
        standard["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "cgroup")
            .expect("cgroup volume")["host"]["sourcePath"],
        "/sys/fs/cgroup/"
    );
    cgroup["host"]["sourcePath"] = json!("/sys/fs/cgroup/");
    al1["family"] = standard["family"].clone();
    assert_eq!(
        al1, standard,
        "the Amazon Linux 1 variant differs in nothing else"
    );

    // Every variable the daemon's environment names through a placeholder is one the
    // README documents and render.sh knows.
    let render_script = std::fs::read_to_string(ecs_dir().join("render.sh")).expect("render.sh");
    let readme = std::fs::read_to_string(ecs_dir().join("README.md")).expect("ecs/README.md");
    for e in container(&standard, "node-daemon")["environment"]
        .as_array()
        .expect("environment")
    {
        let value = e["value"].as_str().expect("value");
        if let Some(var) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
            assert!(
                render_script.contains(&format!("    {var}=")),
                "render.sh knows {var}"
            );
            assert!(
                readme.contains(&format!("`{var}`")),
                "ecs/README.md documents {var}"
            );
        }
    }
}

#[test]
fn example_app_reaches_the_sidecar_it_embeds() {
    let td = ecs_json(EXAMPLE_APP);
    assert_eq!(
        td["pidMode"], "host",
        "the sidecar sees the host's processes"
    );
    // awsvpc: the app and the sidecar share the task's network namespace, so localhost.
    assert_eq!(td["networkMode"], "awsvpc");
    let sidecar = container(&td, "trace-sidecar");
    assert_eq!(
        sidecar,
        &ecs_json(SIDECAR_FRAGMENT),
        "the fragment, verbatim"
    );
    let app = container(&td, "app");
    assert_eq!(env_value(app, "DD_AGENT_HOST"), Some("localhost"));
    let port = env_value(app, "DD_TRACE_AGENT_PORT").expect("DD_TRACE_AGENT_PORT");
    let listen = env_value(sidecar, "STS_TRACE_LISTEN_ADDR").expect("STS_TRACE_LISTEN_ADDR");
    assert!(
        listen.ends_with(&format!(":{port}")),
        "sidecar listens on {listen}"
    );
    assert_eq!(
        sidecar["portMappings"][0]["containerPort"].to_string(),
        port
    );
    assert_eq!(
        app["dependsOn"],
        json!([{ "containerName": "trace-sidecar", "condition": "START" }])
    );
}

/// The sidecar's listeners: the variable and the port of its default address.
const SIDECAR_LISTENERS: [(&str, u16); 3] = [
    ("STS_TRACE_LISTEN_ADDR", 8126),
    ("STS_OTLP_GRPC_ADDR", 4317),
    ("STS_OTLP_HTTP_ADDR", 4318),
];

/// The values of `instruction` lines of a Dockerfile (`EXPOSE`, `ENV`), split at spaces.
fn dockerfile_words(text: &str, instruction: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(instruction)?.strip_prefix(' '))
        .flat_map(|rest| rest.split_whitespace().map(str::to_string))
        .collect()
}

#[test]
fn the_sidecar_maps_and_exposes_its_datadog_and_otlp_ports() {
    let fragment = ecs_json(SIDECAR_FRAGMENT);
    let mapped: BTreeSet<u64> = fragment["portMappings"]
        .as_array()
        .expect("portMappings")
        .iter()
        .map(|m| {
            assert_eq!(m["protocol"], "tcp", "{m}");
            m["containerPort"].as_u64().expect("containerPort")
        })
        .collect();
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("docker/trace-sidecar.Dockerfile"))
            .expect("docker/trace-sidecar.Dockerfile");
    let exposed: BTreeSet<u64> = dockerfile_words(&dockerfile, "EXPOSE")
        .iter()
        .map(|p| p.trim_end_matches("/tcp").parse().expect("a port"))
        .collect();
    let image_env = dockerfile_words(&dockerfile, "ENV");
    for (name, port) in SIDECAR_LISTENERS {
        let address = format!("0.0.0.0:{port}");
        let key = trace_sidecar::config::keys::KEYS
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("the sidecar reads no {name}"));
        assert_eq!(
            key.default,
            format!("`{address}`"),
            "{name}: the binary's default"
        );
        assert_eq!(env_value(&fragment, name), Some(address.as_str()), "{name}");
        assert!(
            image_env.contains(&format!("{name}={address}")),
            "the image's ENV {name}"
        );
        assert!(mapped.contains(&u64::from(port)), "port {port} mapped");
        assert!(exposed.contains(&u64::from(port)), "port {port} exposed");
    }
    let ports: BTreeSet<u64> = SIDECAR_LISTENERS
        .iter()
        .map(|(_, p)| u64::from(*p))
        .collect();
    assert_eq!(mapped, ports, "no other port mapped");
    assert_eq!(exposed, ports, "no other port exposed");
}

#[test]
fn render_refuses_a_missing_version_and_unknown_placeholders() {
    let out = render(DAEMON_TASK_DEFINITIONS[0], &[]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AGENT_VERSION"));

    // The service file has no placeholder: rendered, it is the same JSON.
    let out = render(SERVICE, &[]);
    assert!(out.status.success());
    let rendered: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rendered, ecs_json(SERVICE));

    let tmp = TempDir::new();
    let file = tmp.write("unknown.json", r#"{"family": "${NOT_A_KNOWN_VARIABLE}"}"#);
    let out = Command::new(ecs_dir().join("render.sh"))
        .arg(&file)
        .env("AGENT_VERSION", "1")
        .output()
        .expect("render.sh runs");
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("${NOT_A_KNOWN_VARIABLE}"));
}
