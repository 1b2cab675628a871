//! Helpers for the end-to-end tests: locating the built binaries and the project's
//! Python environment, starting processes that are cleaned up, free ports.

pub mod docker;
pub mod forwarding;
pub mod load;
pub mod net_peer;
pub mod receiver;
pub mod slow_clients;
pub mod sockets;
pub mod status;
pub mod traces;
pub mod vm;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Says that `test` skips for `why`, in one line; with STS_TEST_STRICT set (CI on this
/// project's machines) nothing may be skipped, and this fails the test instead.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("STS_TEST_STRICT").is_none(),
        "{test}: {why} (STS_TEST_STRICT is set: nothing may be skipped)"
    );
    println!("SKIPPED {test}: {why}");
}

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

    /// Starts `command` with its stderr read into [`Logs`] as it is written, so a chatty
    /// child never blocks on a full pipe (an unread pipe stalls a daemon that logs).
    pub fn spawn_with_logs(command: &mut Command) -> (Self, Logs) {
        let mut guard = Self::spawn(command.stderr(Stdio::piped()));
        let mut stderr = guard.0.stderr.take().expect("stderr is piped");
        let logs = Logs::default();
        let (sink, closed) = (logs.text.clone(), logs.closed.clone());
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stderr, &mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
            closed.store(true, Ordering::Release);
        });
        (guard, logs)
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

/// What a child started by [`Guard::spawn_with_logs`] has written to stderr so far.
#[derive(Clone, Default)]
pub struct Logs {
    text: Arc<Mutex<Vec<u8>>>,
    closed: Arc<AtomicBool>,
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// All of it, once the child has exited: waits up to `within` for the pipe to close.
    pub fn after_exit(&self, within: Duration) -> String {
        wait_for(within, || self.closed.load(Ordering::Acquire).then_some(()))
            .expect("stderr closed after the child exited");
        self.text()
    }
}

impl Drop for Guard {
    /// Kills and reaps the child, giving up after 10 s with one line (a child stuck in the
    /// kernel must not hang the test run).
    fn drop(&mut self) {
        let _ = self.0.kill();
        let reaped = wait_for(Duration::from_secs(10), || self.0.try_wait().ok().flatten());
        if reaped.is_none() {
            eprintln!(
                "pid {} did not exit within 10 s of SIGKILL; left behind",
                self.0.id()
            );
        }
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

/// VmRSS of a process in bytes (/proc/<pid>/status); None when it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The largest VmRSS seen of one watched process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssMax {
    pub label: String,
    pub pid: u32,
    pub max_bytes: u64,
    /// Samples that found the process.
    pub samples: u64,
}

/// Samples the VmRSS of the watched processes on a thread, every `period`, until
/// `finish`; processes can be added while it runs (a restarted daemon).
pub struct RssSampler {
    watched: Arc<Mutex<Vec<RssMax>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(period: Duration) -> Self {
        let watched: Arc<Mutex<Vec<RssMax>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (watched, stop) = (watched.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for w in watched.lock().unwrap().iter_mut() {
                        if let Some(rss) = rss_bytes(w.pid) {
                            w.max_bytes = w.max_bytes.max(rss);
                            w.samples += 1;
                        }
                    }
                    thread::sleep(period);
                }
            })
        };
        Self {
            watched,
            stop,
            thread: Some(thread),
        }
    }

    /// Samples `pid` from now on (at once, then every period), under `label`.
    pub fn watch(&self, label: &str, pid: u32) {
        let first = rss_bytes(pid);
        self.watched.lock().unwrap().push(RssMax {
            label: label.to_string(),
            pid,
            max_bytes: first.unwrap_or(0),
            samples: u64::from(first.is_some()),
        });
    }

    /// The maxima so far, in the order the processes were added.
    pub fn maxima(&self) -> Vec<RssMax> {
        self.watched.lock().unwrap().clone()
    }

    /// Stops sampling; returns the maxima.
    pub fn finish(mut self) -> Vec<RssMax> {
        self.stop_thread();
        self.maxima()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}
