//! The peers of the network tests (`python/net_peer.py`): a client or a server that
//! prints a line when its traffic is done and keeps its sockets open until killed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{python, workspace_root, Guard};

/// A peer process, its first line, and the rest of its output.
pub struct Peer {
    guard: Guard,
    pub line: String,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `prefix... python net_peer.py args...` and waits for its first line.
    pub fn start(prefix: &[&str], args: &[&str]) -> Self {
        let script = workspace_root().join("integration-tests/python/net_peer.py");
        let python = python();
        let mut all: Vec<&str> = prefix.to_vec();
        all.extend([python.to_str().unwrap(), "-u", script.to_str().unwrap()]);
        all.extend_from_slice(args);
        let mut command = Command::new(all[0]);
        command.args(&all[1..]).stdout(Stdio::piped());
        let mut guard = Guard::spawn(&mut command);
        let stdout = guard.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{all:?} printed nothing"));
        Self { guard, line, lines }
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("peer finished its exchange")
    }

    /// The number after the word in the first line, e.g. the port of `done 43210`.
    pub fn number(&self) -> u16 {
        self.line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }
}
