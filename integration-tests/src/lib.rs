//! Helpers for the end-to-end tests: locating the built binaries and the project's
//! Python environment, starting processes that are cleaned up, free ports.

pub mod docker;
pub mod receiver;
pub mod traces;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the workspace")
        .to_path_buf()
}

/// A binary of the workspace, built by the same profile as this test.
/// `scripts/test.sh` builds them before the tests run.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The Python interpreter of the project's virtual environment (`scripts/python-env.sh`).
pub fn python() -> PathBuf {
    let path = workspace_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing; run scripts/python-env.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A child process killed and reaped when dropped.
pub struct Guard(pub Child);

impl Guard {
    pub fn spawn(command: &mut Command) -> Self {
        Self(
            command
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal and waits up to `within` for the exit; returns the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: i32,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as i32, signal) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `node-daemon` with the given environment and arguments and waits for it.
pub fn node_daemon(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(binary("node-daemon"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("node-daemon runs")
}

/// `node-daemon snapshot --json`, parsed; panics with stderr when it fails.
pub fn snapshot_json(env: &[(&str, &str)]) -> serde_json::Value {
    let out = node_daemon(env, &["snapshot", "--json", "--interval", "0.5"]);
    assert!(
        out.status.success(),
        "snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("snapshot prints JSON")
}

/// The processes of a snapshot with the given pid.
pub fn process(snapshot: &serde_json::Value, pid: u32) -> Option<&serde_json::Value> {
    snapshot["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"] == pid)
}

/// Polls `check` every 50 ms until it returns Some or `within` passes.
pub fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
