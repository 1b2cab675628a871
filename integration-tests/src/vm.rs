//! The kernel matrix: boots a Debian kernel line under qemu with `integration-tests/vm/`
//! (boot.sh builds the initramfs, init runs the network acceptance inside) and reads what
//! the VM reported.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// What the VM's init wrote to its data port: `=== NAME` ... `=== end` sections.
pub struct VmReport {
    /// The kernel package and version that ran.
    pub package: String,
    pub sections: BTreeMap<String, String>,
}

impl VmReport {
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections.get(name).map(String::as_str)
    }

    /// A section as JSON; panics naming the kernel when it is missing or malformed.
    pub fn json(&self, name: &str) -> Value {
        let text = self
            .section(name)
            .unwrap_or_else(|| panic!("{}: no `{name}` section", self.package));
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}: `{name}` is not JSON ({e}): {text}", self.package))
    }

    /// The snapshots the VM took, in order.
    pub fn snapshots(&self) -> Vec<Value> {
        let mut named: Vec<(u32, &String)> = self
            .sections
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("snapshot-")?.parse().ok()?, v)))
            .collect();
        named.sort();
        named
            .into_iter()
            .map(|(i, text)| {
                serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{}: snapshot-{i} is not JSON ({e})", self.package))
            })
            .collect()
    }

    /// The pid of a traffic peer (`peers` section: `name pid` lines).
    pub fn peer(&self, name: &str) -> u32 {
        self.section("peers")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no peer {name}", self.package))
    }
}

pub fn parse_sections(data: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in data.lines() {
        match (line.strip_prefix("=== "), current.take()) {
            (Some("end"), Some((name, body))) => {
                sections.insert(name, body.join("\n").trim().to_string());
            }
            (Some(name), _) => current = Some((name.to_string(), Vec::new())),
            (None, Some((name, mut body))) => {
                body.push(line);
                current = Some((name, body));
            }
            (None, None) => {}
        }
    }
    sections
}

/// Why this machine cannot run the matrix, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the kernel matrix runs as root (apt-get download, the VM's tools)".into());
    }
    for tool in ["qemu-system-x86_64", "cpio", "objcopy"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is missing (scripts/setup.sh installs it)"));
        }
    }
    None
}

/// Boots `line` (`6.1`, `6.12`) and returns what its init reported.
pub fn boot(line: &str) -> VmReport {
    let out = std::env::temp_dir().join(format!("sts-kernel-matrix-{line}-{}", std::process::id()));
    let script = crate::workspace_root().join("integration-tests/vm/boot.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(line)
        .arg(&out)
        .arg(crate::binary("node-daemon"))
        .arg(crate::binary("vm-traffic"))
        .status()
        .expect("run integration-tests/vm/boot.sh");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let package = read("kernel-package").trim().to_string();
    let console = read("console.log");
    let data = read("data.log");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        status.success(),
        "kernel {line} ({package}): boot.sh failed ({status}); console:\n{}\ndata:\n{data}",
        tail(&console, 60)
    );
    let report = VmReport {
        package,
        sections: parse_sections(&data),
    };
    if let Some(why) = report.section("failure") {
        panic!(
            "{}: the VM's acceptance failed: {why}\ndaemon log:\n{}",
            report.package,
            tail(report.section("daemon-log").unwrap_or_default(), 60)
        );
    }
    assert!(
        report.section("done").is_some(),
        "{}: the VM stopped before its end; console:\n{}",
        report.package,
        tail(&console, 60)
    );
    report
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_between_markers() {
        let data = "noise\n=== kernel\n6.1.0\n\n=== end\n=== peers\na 1\nb 2\n=== end\n";
        let s = parse_sections(data);
        assert_eq!(s["kernel"], "6.1.0");
        assert_eq!(s["peers"], "a 1\nb 2");
        assert_eq!(s.len(), 2);
    }
}
