//! The real Docker engine for the container tests: availability, a tiny local image
//! (the engine here has no images and no registry), and containers removed on drop.

use std::collections::BTreeMap;
use std::process::{Command, Output};

/// The image the container tests run: a static busybox imported into the engine.
pub const TEST_IMAGE: &str = "sts-test-busybox:1";
const BUSYBOX: &str = "/bin/busybox";

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// True when an engine answers. Otherwise prints the one line saying what is skipped.
pub fn available(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::skip(
            test,
            "no Docker engine answers `docker info` on this machine",
        );
    }
    ok
}

/// Imports the busybox image unless the engine already has it (cached by tag).
pub fn ensure_test_image() {
    if docker(&["image", "inspect", TEST_IMAGE]).status.success() {
        return;
    }
    assert!(
        std::path::Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (scripts/setup.sh does)"
    );
    // Tests of one binary call this from several threads, and other test processes may
    // too: each import works in its own directory and under its own tag, and only a whole
    // image gets the shared tag.
    let _one_at_a_time = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    if docker(&["image", "inspect", TEST_IMAGE]).status.success() {
        return;
    }
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let root = std::env::temp_dir().join(format!("sts-busybox-{unique}"));
    let staging = format!("sts-test-busybox-staging:{unique}");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "cat", "nc", "echo", "ls"] {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import -c 'ENV PATH=/bin' - {staging} >/dev/null \
             && docker tag {staging} {TEST_IMAGE} && docker rmi {staging} >/dev/null",
            root.display()
        ))
        .status()
        .unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert!(status.success(), "docker import of {TEST_IMAGE} failed");
}

static IMPORT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A container removed (with `docker rm -f`) when dropped.
pub struct Container {
    pub id: String,
}

impl Container {
    /// `docker run -d <args> IMAGE <command>`.
    pub fn run(args: &[&str], command: &[&str]) -> Self {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        all.push(TEST_IMAGE);
        all.extend_from_slice(command);
        let out = docker(&all);
        assert!(
            out.status.success(),
            "docker {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }

    /// Host pid of the container's main process.
    pub fn pid(&self) -> u32 {
        let out = docker(&["inspect", "--format", "{{.State.Pid}}", &self.id]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid")
    }

    pub fn remove(self) {}
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

/// A container of the test image running `integration-tests/python/<script>` with the
/// host's interpreter and `.venv` mounted read-only, in the host's pid namespace (as
/// application tasks run, `pidMode: host`), with `env` (and `HOME=/tmp`) and the further
/// `docker run` arguments `args`.
pub fn run_python(script: &str, env: &BTreeMap<String, String>, args: &[String]) -> Container {
    let venv = crate::workspace_root().join(".venv");
    let venv = venv.to_str().expect("a UTF-8 path");
    let interpreter = std::fs::canonicalize(crate::python()).expect("the venv's python");
    let pyhome = interpreter
        .parent()
        .and_then(|bin| bin.parent())
        .and_then(|home| home.to_str())
        .expect("the interpreter's prefix");
    let scripts = crate::workspace_root().join("integration-tests/python");
    let mounts = [
        "/usr:/usr:ro".to_string(),
        "/usr/lib:/lib:ro".to_string(),
        "/usr/lib64:/lib64:ro".to_string(),
        format!("{pyhome}:{pyhome}:ro"),
        format!("{venv}:{venv}:ro"),
        format!("{}:/it:ro", scripts.display()),
    ];
    let mut all: Vec<String> = vec!["--pid".into(), "host".into()];
    for m in mounts {
        all.extend(["-v".into(), m]);
    }
    for (k, v) in env {
        all.extend(["-e".into(), format!("{k}={v}")]);
    }
    all.extend(["-e".into(), "HOME=/tmp".into()]);
    all.extend_from_slice(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let python = format!("{venv}/bin/python");
    Container::run(&all, &[&python, &format!("/it/{script}")])
}

/// The host's address on Docker's default bridge, where containers reach host services.
pub fn bridge_gateway() -> String {
    let out = docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    let gateway = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !gateway.is_empty() {
        return gateway;
    }
    // Older engines leave the gateway out of the IPAM config: read docker0's address.
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no address on docker0: {text}"))
        .to_string()
}
