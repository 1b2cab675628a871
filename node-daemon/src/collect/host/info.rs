//! Facts about the host that do not change while the daemon runs.

use std::io;

#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    pub(crate) hostname: String,
    pub(crate) os: String,
    pub(crate) kernel: String,
    pub(crate) cpu_count: u32,
}

impl HostInfo {
    /// `configured` (STS_HOSTNAME) wins over the kernel's host name.
    pub(crate) fn read(configured: Option<&str>) -> io::Result<Self> {
        let hostname = match configured {
            Some(name) => name.to_string(),
            None => read_trimmed("/proc/sys/kernel/hostname")?,
        };
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| os_release_name(&text))
            .unwrap_or_else(|| "Linux".into());
        Ok(Self {
            hostname,
            os,
            kernel: read_trimmed("/proc/sys/kernel/osrelease")?,
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        })
    }
}

fn read_trimmed(path: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

fn os_release_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_name(text).unwrap(),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_release_name("ID=x\n"), None);
    }

    #[test]
    fn configured_name_wins() {
        let info = HostInfo::read(Some("i-0abc")).unwrap();
        assert_eq!(info.hostname, "i-0abc");
        assert!(!info.kernel.is_empty());
        assert!(info.cpu_count >= 1);
    }
}
