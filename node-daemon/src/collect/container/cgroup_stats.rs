//! Container telemetry from cgroup files (v1 and v2), cheaper than Docker's stats API:
//! a few small reads per container and no API call.

use std::path::{Path, PathBuf};

use crate::collect::proc_files::FileReader;

/// cgroup v1 `cpuacct.stat` counts in USER_HZ ticks, which Linux fixes at 100 a second.
const NS_PER_V1_TICK: u64 = 10_000_000;

/// A memory limit at or above this is "no limit" (cgroup v1 writes a huge number).
const UNLIMITED: u64 = 1 << 60;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CgroupStats {
    pub(crate) cpu_usage_ns: Option<u64>,
    /// CPU time in user and in kernel mode (v1 counts it in 10 ms ticks).
    pub(crate) cpu_user_ns: Option<u64>,
    pub(crate) cpu_system_ns: Option<u64>,
    pub(crate) memory_usage_bytes: Option<u64>,
    /// Anonymous memory and page cache (`memory.stat`: v2 `anon`/`file`, v1 `rss`/`cache`).
    pub(crate) memory_rss_bytes: Option<u64>,
    pub(crate) memory_cache_bytes: Option<u64>,
    pub(crate) memory_limit_bytes: Option<u64>,
    pub(crate) block_read_bytes: Option<u64>,
    pub(crate) block_write_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

pub(crate) struct CgroupReader {
    root: PathBuf,
    version: Version,
    reader: FileReader,
}

impl CgroupReader {
    /// `root` is where the host's cgroup hierarchy is mounted (`/sys/fs/cgroup`, `/cgroup`
    /// on Amazon Linux 1). Unified (v2) when `cgroup.controllers` is at the root.
    pub(crate) fn new(root: &Path) -> Self {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        };
        Self {
            root: root.to_path_buf(),
            version,
            reader: FileReader::default(),
        }
    }

    #[cfg(test)]
    fn version(&self) -> Version {
        self.version
    }

    /// The stats of a container, found by the cgroup of its main process or, failing
    /// that, by the paths Docker and ECS use for its id. None when no cgroup is found.
    pub(crate) fn read(&mut self, id: &str, pid: Option<u32>) -> Option<CgroupStats> {
        let own = pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
            .unwrap_or_default();
        match self.version {
            Version::V2 => {
                let dir = self.find_dir("", &own, id)?;
                Some(self.read_v2(&dir))
            }
            Version::V1 => {
                let cpu = self.find_dir("cpuacct", &own, id);
                let memory = self.find_dir("memory", &own, id);
                let blkio = self.find_dir("blkio", &own, id);
                if cpu.is_none() && memory.is_none() && blkio.is_none() {
                    return None;
                }
                Some(self.read_v1(cpu.as_deref(), memory.as_deref(), blkio.as_deref()))
            }
        }
    }

    /// The directory of `controller` (empty for v2) holding the container's cgroup.
    fn find_dir(&self, controller: &str, own_cgroup: &str, id: &str) -> Option<PathBuf> {
        let from_proc = own_cgroup.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = if controller.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == controller)
            };
            (matches && !path.contains("/..")).then(|| path.trim_start_matches('/').to_string())
        });
        let candidates = from_proc.into_iter().chain([
            format!("docker/{id}"),
            format!("system.slice/docker-{id}.scope"),
        ]);
        let bases: Vec<PathBuf> = if controller.is_empty() {
            vec![self.root.clone()]
        } else {
            // v1 controllers may be co-mounted, e.g. `cpu,cpuacct`.
            vec![self.root.join(controller), self.root.join("cpu,cpuacct")]
        };
        candidates
            .flat_map(|rel| bases.iter().map(move |b| b.join(&rel)))
            .find(|dir| dir.is_dir())
    }

    fn read_u64(&mut self, path: &Path) -> Option<u64> {
        self.reader
            .read_str(path.to_str()?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn read_v1(
        &mut self,
        cpu: Option<&Path>,
        memory: Option<&Path>,
        blkio: Option<&Path>,
    ) -> CgroupStats {
        let mut stats = CgroupStats {
            cpu_usage_ns: cpu.and_then(|d| self.read_u64(&d.join("cpuacct.usage"))),
            memory_usage_bytes: memory
                .and_then(|d| self.read_u64(&d.join("memory.usage_in_bytes"))),
            memory_limit_bytes: memory
                .and_then(|d| self.read_u64(&d.join("memory.limit_in_bytes")))
                .filter(|l| *l < UNLIMITED),
            ..CgroupStats::default()
        };
        if let Some(text) = cpu.and_then(|d| self.read_text(&d.join("cpuacct.stat"))) {
            let ticks = |key| keyed(&text, key).map(|t| t * NS_PER_V1_TICK);
            stats.cpu_user_ns = ticks("user");
            stats.cpu_system_ns = ticks("system");
        }
        if let Some(text) = memory.and_then(|d| self.read_text(&d.join("memory.stat"))) {
            stats.memory_rss_bytes = keyed(&text, "total_rss").or_else(|| keyed(&text, "rss"));
            stats.memory_cache_bytes =
                keyed(&text, "total_cache").or_else(|| keyed(&text, "cache"));
        }
        if let Some(dir) = blkio {
            let text = [
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes",
            ]
            .iter()
            .find_map(|f| {
                self.reader
                    .read_str(dir.join(f).to_str()?)
                    .ok()
                    .map(String::from)
            });
            if let Some(text) = text {
                let (read, write) = parse_blkio_v1(&text);
                stats.block_read_bytes = Some(read);
                stats.block_write_bytes = Some(write);
            }
        }
        stats
    }

    fn read_text(&mut self, path: &Path) -> Option<String> {
        self.reader
            .read_str(&path.to_string_lossy())
            .ok()
            .map(String::from)
    }

    fn read_v2(&mut self, dir: &Path) -> CgroupStats {
        let cpu = self.read_text(&dir.join("cpu.stat")).unwrap_or_default();
        let cpu_ns = |key| keyed(&cpu, key).map(|usec| usec * 1000);
        let memory = self.read_text(&dir.join("memory.stat")).unwrap_or_default();
        let memory_limit_bytes = self
            .reader
            .read_str(&dir.join("memory.max").to_string_lossy())
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let io = self
            .reader
            .read_str(&dir.join("io.stat").to_string_lossy())
            .ok()
            .map(parse_io_v2);
        CgroupStats {
            cpu_usage_ns: cpu_ns("usage_usec"),
            cpu_user_ns: cpu_ns("user_usec"),
            cpu_system_ns: cpu_ns("system_usec"),
            memory_usage_bytes: self.read_u64(&dir.join("memory.current")),
            memory_rss_bytes: keyed(&memory, "anon"),
            memory_cache_bytes: keyed(&memory, "file"),
            memory_limit_bytes,
            block_read_bytes: io.map(|(r, _)| r),
            block_write_bytes: io.map(|(_, w)| w),
        }
    }
}

/// The value of a `key value` line (cpu.stat, cpuacct.stat, memory.stat).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Sums `Read` and `Write` over devices: lines `MAJ:MIN Read N`.
fn parse_blkio_v1(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(n)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match op {
            "Read" => totals.0 += n,
            "Write" => totals.1 += n,
            _ => {}
        }
    }
    totals
}

/// Sums `rbytes=` and `wbytes=` over devices of a v2 `io.stat`.
fn parse_io_v2(text: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for field in text.split_whitespace() {
        if let Some(n) = field
            .strip_prefix("rbytes=")
            .and_then(|n| n.parse::<u64>().ok())
        {
            totals.0 += n;
        } else if let Some(n) = field
            .strip_prefix("wbytes=")
            .and_then(|n| n.parse::<u64>().ok())
        {
            totals.1 += n;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn v2_files() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cgroup.controllers", "cpu io memory\n");
        let id = "c".repeat(64);
        let dir = root.path().join(format!("system.slice/docker-{id}.scope"));
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(&dir, "memory.current", "1048576\n");
        write(&dir, "memory.stat", "anon 4096\nfile 8192\nanon_thp 0\n");
        write(&dir, "memory.max", "max\n");
        write(
            &dir,
            "io.stat",
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n",
        );
        let mut reader = CgroupReader::new(root.path());
        assert_eq!(reader.version(), Version::V2);
        let stats = reader.read(&id, None).unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                cpu_usage_ns: Some(2_500_000),
                cpu_user_ns: Some(2_000_000),
                cpu_system_ns: Some(500_000),
                memory_usage_bytes: Some(1_048_576),
                memory_rss_bytes: Some(4096),
                memory_cache_bytes: Some(8192),
                memory_limit_bytes: None,
                block_read_bytes: Some(101),
                block_write_bytes: Some(202),
            }
        );
        assert!(reader.read(&"d".repeat(64), None).is_none());
    }

    #[test]
    fn v1_files_with_comounted_cpu() {
        let root = tempfile::tempdir().unwrap();
        let id = "e".repeat(64);
        write(
            &root.path().join(format!("cpu,cpuacct/docker/{id}")),
            "cpuacct.usage",
            "123456789\n",
        );
        write(
            &root.path().join(format!("cpu,cpuacct/docker/{id}")),
            "cpuacct.stat",
            "user 7\nsystem 3\n",
        );
        let mem = root.path().join(format!("memory/docker/{id}"));
        write(&mem, "memory.usage_in_bytes", "4096\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(
            &mem,
            "memory.stat",
            "cache 300\nrss 200\ntotal_cache 310\ntotal_rss 210\n",
        );
        write(
            &root.path().join(format!("blkio/docker/{id}")),
            "blkio.throttle.io_service_bytes",
            "8:0 Read 10\n8:0 Write 20\n8:0 Sync 5\n8:0 Total 30\n8:16 Read 1\nTotal 31\n",
        );
        let mut reader = CgroupReader::new(root.path());
        assert_eq!(reader.version(), Version::V1);
        let stats = reader.read(&id, None).unwrap();
        assert_eq!(stats.cpu_usage_ns, Some(123_456_789));
        assert_eq!(stats.memory_usage_bytes, Some(4096));
        assert_eq!(
            (stats.cpu_user_ns, stats.cpu_system_ns),
            (Some(70_000_000), Some(30_000_000))
        );
        assert_eq!(
            (stats.memory_rss_bytes, stats.memory_cache_bytes),
            (Some(210), Some(310)),
            "the hierarchy's totals win"
        );
        assert_eq!(
            stats.memory_limit_bytes, None,
            "huge v1 limit means unlimited"
        );
        assert_eq!(
            (stats.block_read_bytes, stats.block_write_bytes),
            (Some(11), Some(20))
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(keyed("usage_usec x\n", "usage_usec"), None);
        assert_eq!(keyed("usage_usec_other 5\n", "usage_usec"), None);
        assert_eq!(parse_blkio_v1("garbage\n8:0 Read\n"), (0, 0));
        assert_eq!(parse_io_v2("rbytes=x wbytes="), (0, 0));
    }
}
