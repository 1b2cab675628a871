//! The images end to end, on this machine's Docker engine: `docker/build-images.sh` builds
//! them (a debootstrap base, no registry), then `stackstate/node-daemon:dev` runs with the
//! flags its ECS task definition asks for, translated one by one (host pid and network
//! namespaces, the mounts, all capabilities dropped but the allow-listed ones, read-only
//! root, ulimits, memory), and must be healthy by the task definition's own health check
//! and see the host's processes as the daemon on the host does. The sidecar image must
//! not run as root.
//!
//! Skipped, with one line saying so, only where no Docker engine answers `docker info`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use integration_tests::status::{collector, collectors};
use integration_tests::{free_port, node_daemon, wait_for, workspace_root, Guard};
use serde_json::Value;

const DAEMON_IMAGE: &str = "stackstate/node-daemon:dev";
const SIDECAR_IMAGE: &str = "stackstate/trace-sidecar:dev";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {}: {e}", args.join(" ")))
}

fn docker_engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the images once per test run; false (after one printed line) without an engine.
fn images_built() -> bool {
    static ENGINE: OnceLock<bool> = OnceLock::new();
    let engine = *ENGINE.get_or_init(|| {
        let answers = docker_engine_answers();
        if !answers {
            println!("skipped: no Docker engine answers `docker info` on this machine");
        }
        answers
    });
    if !engine {
        return false;
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(workspace_root().join("docker/build-images.sh"))
            .env("IMAGE_TAG", "dev")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run docker/build-images.sh: {e}"))?;
        println!(
            "docker/build-images.sh took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "docker/build-images.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
    true
}

/// A container removed (with its volumes) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.0])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The daemon's task definition as a deployment renders it (`ecs/render.sh`, tag `dev`).
fn rendered_task_definition() -> Value {
    let out = Command::new(workspace_root().join("ecs/render.sh"))
        .arg(workspace_root().join("ecs/node-daemon-task-definition.json"))
        .env("AGENT_VERSION", "dev")
        .env_remove("STS_STS_URL")
        .env_remove("STS_API_KEY")
        .output()
        .expect("ecs/render.sh runs");
    assert!(
        out.status.success(),
        "render.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rendered task definition is JSON")
}

/// CAP_SYS_RESOURCE (24) in this process's bounding set. Where it is missing (some
/// sandboxes), no process here, the container runtime included, may raise a hard rlimit.
fn host_may_raise_rlimits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

fn memlock_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    assert_eq!(rc, 0, "getrlimit");
    limit.rlim_max
}

/// `docker run` arguments for the task definition's container `name`, one task
/// definition field at a time. The environment is the task definition's, with `overrides`.
fn docker_run_args(td: &Value, name: &str, overrides: &[(&str, String)]) -> Vec<String> {
    let c = td["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions")
        .iter()
        .find(|c| c["name"] == name)
        .expect("the container");
    let mut args: Vec<String> = vec!["run".into(), "--detach".into()];
    let mut push = |flag: &str, value: String| {
        args.push(flag.into());
        args.push(value);
    };
    if let Some(pid) = td["pidMode"].as_str() {
        push("--pid", pid.into());
    }
    if let Some(network) = td["networkMode"].as_str() {
        push("--network", network.into());
    }
    if let Some(user) = c["user"].as_str() {
        push("--user", user.into());
    }
    let caps = &c["linuxParameters"]["capabilities"];
    for cap in caps["drop"].as_array().into_iter().flatten() {
        push("--cap-drop", cap.as_str().expect("capability").into());
    }
    for cap in caps["add"].as_array().into_iter().flatten() {
        push("--cap-add", cap.as_str().expect("capability").into());
    }
    for ulimit in c["ulimits"].as_array().into_iter().flatten() {
        let ulimit_name = ulimit["name"].as_str().expect("ulimit name");
        let mut soft = ulimit["softLimit"].as_i64().expect("softLimit");
        let mut hard = ulimit["hardLimit"].as_i64().expect("hardLimit");
        if ulimit_name == "memlock" && !host_may_raise_rlimits() {
            let cap = memlock_hard_limit() as i64;
            if hard > cap || hard < 0 {
                println!(
                    "note: no CAP_SYS_RESOURCE on this machine, so no runtime may raise \
                     memlock: {hard} clamped to {cap} here"
                );
                hard = cap;
                soft = soft.min(cap);
            }
        }
        push("--ulimit", format!("{ulimit_name}={soft}:{hard}"));
    }
    if let Some(mib) = c["memory"].as_u64() {
        push("--memory", format!("{mib}m"));
    }
    if let Some(mib) = c["memoryReservation"].as_u64() {
        push("--memory-reservation", format!("{mib}m"));
    }
    if let Some(shares) = c["cpu"].as_u64() {
        push("--cpu-shares", shares.to_string());
    }
    let volumes = td["volumes"].as_array().expect("volumes");
    for m in c["mountPoints"].as_array().into_iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v["name"] == m["sourceVolume"])
            .expect("the mount's volume");
        let source = volume["host"]["sourcePath"].as_str().expect("sourcePath");
        let target = m["containerPath"].as_str().expect("containerPath");
        let mode = if m["readOnly"] == true { ":ro" } else { "" };
        push("--volume", format!("{source}:{target}{mode}"));
    }
    for e in c["environment"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().expect("name");
        if overrides.iter().all(|(k, _)| *k != key) {
            push(
                "--env",
                format!("{key}={}", e["value"].as_str().expect("value")),
            );
        }
    }
    for (key, value) in overrides {
        push("--env", format!("{key}={value}"));
    }
    if c["privileged"] == true {
        args.push("--privileged".into());
    }
    if c["readonlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    args.push(c["image"].as_str().expect("image").into());
    args
}

fn exec(container: &str, command: &[&str]) -> Output {
    let mut args = vec!["exec", container];
    args.extend_from_slice(command);
    docker(&args)
}

fn status_json(container: &str) -> Option<Value> {
    let out = exec(
        container,
        &["/usr/local/bin/node-daemon", "status", "--json"],
    );
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn node_daemon_image_runs_healthy_with_the_task_definition_privileges() {
    if !images_built() {
        return;
    }
    let td = rendered_task_definition();
    assert_eq!(
        td["containerDefinitions"][0]["image"], DAEMON_IMAGE,
        "the rendered task definition runs the image built here"
    );

    // A process of another user on the host: the daemon in its container must read it as
    // the daemon on the host does. An absolute path escapes the default `^sleep` pattern.
    let nobody = Guard::spawn(
        Command::new("/bin/sleep")
            .arg("300")
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::null()),
    );

    let port = free_port();
    let name = format!("sts-it-node-daemon-{}-{port}", std::process::id());
    let overrides = [
        ("STS_GRPC_ADDR", format!("127.0.0.1:{port}")),
        ("STS_RELAY_ADDR", format!("127.0.0.1:{}", free_port())),
        ("STS_COLLECTION_INTERVAL", "1".to_string()),
    ];
    let mut args = docker_run_args(&td, "node-daemon", &overrides);
    args.insert(1, "--name".into());
    args.insert(2, name.clone());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&arg_refs);
    let container = Container(name.clone());
    assert!(
        out.status.success(),
        "docker {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );

    // Ready: every collector has run and is ok (the host and the processes at least).
    let status = wait_for(Duration::from_secs(60), || {
        let v = status_json(&container.0)?;
        let ok = collectors(&v).iter().all(|c| c["state"] == "ok")
            && ["host", "processes"]
                .iter()
                .all(|n| collector(&v, n).is_some());
        ok.then_some(v)
    })
    .unwrap_or_else(|| {
        let logs = docker(&["logs", "--tail", "30", &container.0]);
        panic!(
            "the daemon in its container did not report every collector ok within 60 s; \
             last status: {:?}\nlogs:\n{}{}",
            status_json(&container.0),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        )
    });
    assert_eq!(status["healthy"], true);
    let processes = collector(&status, "processes").expect("processes collector");
    assert!(
        processes["counts"]["seen"].as_u64().unwrap_or(0) > 10,
        "the host pid namespace: {processes}"
    );

    // The task definition's privileges are enough for the eBPF tracer and for conntrack.
    let network = collector(&status, "network").expect("network collector");
    let detail = network["detail"].as_str().unwrap_or_default();
    println!("node-daemon image: network backend {detail}");
    if std::env::var_os("STS_TEST_STRICT").is_some() {
        assert!(detail.starts_with("ebpf:"), "{detail}");
        assert!(
            detail.contains("NAT legs paired from conntrack"),
            "{detail}"
        );
    }

    // The task definition's health check, exactly as ECS runs it, exits 0.
    let command: Vec<&str> = td["containerDefinitions"][0]["healthCheck"]["command"]
        .as_array()
        .expect("healthCheck.command")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    assert_eq!(command[0], "CMD");
    let out = exec(&container.0, &command[1..]);
    assert!(
        out.status.success(),
        "health check {command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));

    // Host network: the host's `node-daemon status` reaches it on loopback.
    let out = node_daemon(&[], &["status", "--addr", &format!("127.0.0.1:{port}")]);
    assert!(
        out.status.success(),
        "status from the host: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The capabilities suffice: exe and IO counters of another user's process, and that
    // user's name from the host's /etc/passwd.
    let out = exec(
        &container.0,
        &[
            "/usr/local/bin/node-daemon",
            "snapshot",
            "--json",
            "--interval",
            "0.2",
        ],
    );
    assert!(
        out.status.success(),
        "snapshot in the container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot: Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON");
    let sleeper = snapshot["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == nobody.pid())
        .unwrap_or_else(|| panic!("pid {} of the host is in the snapshot", nobody.pid()));
    assert!(
        sleeper["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/sleep")),
        "exe needs SYS_PTRACE: {sleeper}"
    );
    assert!(
        sleeper["read_bytes"].is_u64(),
        "/proc/<pid>/io of another user needs SYS_PTRACE and DAC_READ_SEARCH: {sleeper}"
    );
    let host_passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let nobody_name = host_passwd
        .lines()
        .find(|l| l.split(':').nth(2) == Some("65534"))
        .and_then(|l| l.split(':').next())
        .unwrap_or("65534");
    assert_eq!(sleeper["user"], nobody_name);
    let out = exec(&container.0, &["cat", "/etc/passwd"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        host_passwd,
        "the host's passwd is mounted"
    );

    // The root file system is read-only and the daemon does not mind.
    let out = exec(&container.0, &["touch", "/written-by-test"]);
    assert!(!out.status.success(), "the root file system is read-only");

    let stats = docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        &container.0,
    ]);
    println!(
        "node-daemon container memory: {}",
        String::from_utf8_lossy(&stats.stdout).trim()
    );
    drop(nobody);
}

#[test]
fn trace_sidecar_image_does_not_run_as_root() {
    if !images_built() {
        return;
    }
    let out = docker(&["run", "--rm", SIDECAR_IMAGE, "id", "-u"]);
    assert!(
        out.status.success(),
        "docker run {SIDECAR_IMAGE} id -u: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid");
    assert_ne!(uid, 0, "the sidecar image runs as root");

    // The container definition names the same user.
    let fragment: Value = serde_json::from_str(
        &std::fs::read_to_string(
            workspace_root().join("ecs/trace-sidecar-container-definition.json"),
        )
        .expect("sidecar container definition"),
    )
    .expect("JSON");
    assert_eq!(fragment["user"], format!("{uid}:{uid}"));

    // The binary is where the image's command says.
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}",
        SIDECAR_IMAGE,
    ]);
    let cmd: Value = serde_json::from_slice(&out.stdout).expect("image command");
    let out = docker(&[
        "run",
        "--rm",
        SIDECAR_IMAGE,
        "test",
        "-x",
        cmd[0].as_str().expect("command"),
    ]);
    assert!(out.status.success(), "{cmd} is executable in the image");
}
