//! One pass over /proc, with the per-process cache that makes later passes cheap.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::time::Instant;

use super::blacklist::{Blacklist, Usage};
use super::pid_dir::{PidDir, ProcReader};
use super::scrub::Scrubber;
use super::stat::{parse_io, parse_stat, parse_statm_resident, IoCounters, Stat};
use super::users::Users;
use super::{cgroup, ProcessError};
use crate::collect::kernel::Kernel;
use crate::collect::proc_files::keyed_u64;
use crate::config::ProcessConfig;
use crate::model::{process_urn, Process};

/// What a cycle found besides the processes: for status and for the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCounts {
    /// Numeric entries of /proc that were looked at.
    pub seen: u64,
    pub(crate) kernel_threads: u64,
    /// Gone between the directory listing and the read.
    pub(crate) vanished: u64,
    /// Present but not readable or not parsable.
    pub(crate) unreadable: u64,
    pub(crate) blacklisted: u64,
    /// Blacklisted but reported through an inclusion rule.
    pub(crate) readmitted: u64,
    pub reported: u64,
}

#[derive(Debug, Clone)]
pub struct ProcessScan {
    pub(crate) processes: Vec<Process>,
    pub counts: ScanCounts,
}

/// What is read once per (pid, start time, command name).
#[derive(Debug)]
struct Identity {
    name: String,
    exe: Option<String>,
    cmdline: Vec<String>,
    user: String,
    uid: Option<u32>,
    cwd: Option<String>,
    container_id: Option<String>,
    blacklisted: bool,
}

#[derive(Debug)]
struct Known {
    starttime: u64,
    comm: String,
    identity: Identity,
    /// User and kernel clock ticks.
    cpu_ticks: (u64, u64),
    io: Option<IoCounters>,
    generation: u64,
}

#[derive(Debug)]
enum SampleError {
    Vanished,
    Unreadable,
}

impl From<io::Error> for SampleError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
            Self::Vanished
        } else {
            Self::Unreadable
        }
    }
}

struct Candidate {
    process: Process,
    blacklisted: bool,
    usage: Usage,
}

pub struct ProcessCollector {
    hostname: String,
    kernel: Kernel,
    blacklist: Blacklist,
    scrubber: Scrubber,
    reader: ProcReader,
    path: String,
    users: Users,
    /// Whether real uids may come from pidfds rather than from /proc/<pid>/status.
    pidfd_uids: bool,
    known: HashMap<u32, Known>,
    generation: u64,
    last_scan: Option<Instant>,
}

impl ProcessCollector {
    pub fn new(config: &ProcessConfig, hostname: &str) -> Result<Self, ProcessError> {
        Ok(Self {
            hostname: hostname.to_string(),
            kernel: Kernel::read().map_err(ProcessError::Kernel)?,
            blacklist: Blacklist::new(&config.blacklist),
            scrubber: Scrubber::new(&config.extra_sensitive_words),
            reader: ProcReader::default(),
            path: String::with_capacity(64),
            users: Users::default(),
            pidfd_uids: pidfd::usable(),
            known: HashMap::new(),
            generation: 0,
            last_scan: None,
        })
    }

    /// One scan. `mem_total_bytes` is the host memory the memory threshold is relative to.
    pub fn collect(&mut self, mem_total_bytes: u64) -> Result<ProcessScan, ProcessError> {
        let now = Instant::now();
        let elapsed_s = self.last_scan.map(|t| now.duration_since(t).as_secs_f64());
        self.last_scan = Some(now);
        self.generation += 1;
        self.users.start_cycle();

        let mut counts = ScanCounts::default();
        let mut candidates = Vec::with_capacity(self.known.len() + 16);
        for pid in crate::collect::proc_files::pids().map_err(ProcessError::ListProc)? {
            counts.seen += 1;
            match self.sample(pid, elapsed_s) {
                Ok(Some(candidate)) => candidates.push(candidate),
                Ok(None) => counts.kernel_threads += 1,
                Err(SampleError::Vanished) => counts.vanished += 1,
                Err(SampleError::Unreadable) => counts.unreadable += 1,
            }
        }
        let generation = self.generation;
        self.known.retain(|_, k| k.generation == generation);

        let blacklisted: Vec<bool> = candidates.iter().map(|c| c.blacklisted).collect();
        let usage: Vec<Usage> = candidates.iter().map(|c| c.usage).collect();
        let keep = self.blacklist.select(&blacklisted, &usage, mem_total_bytes);
        let mut processes = Vec::with_capacity(candidates.len());
        for (candidate, kept) in candidates.into_iter().zip(keep) {
            counts.blacklisted += u64::from(candidate.blacklisted);
            if kept {
                let mut process = candidate.process;
                process.readmitted = candidate.blacklisted;
                counts.readmitted += u64::from(candidate.blacklisted);
                processes.push(process);
            }
        }
        counts.reported = processes.len() as u64;
        Ok(ProcessScan { processes, counts })
    }

    fn set_path(&mut self, pid: u32, file: &str) -> &str {
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/{file}");
        &self.path
    }

    fn sample(
        &mut self,
        pid: u32,
        elapsed_s: Option<f64>,
    ) -> Result<Option<Candidate>, SampleError> {
        let dir = PidDir::open(pid, &mut self.path)?;
        let stat = parse_stat(self.reader.read(&dir, c"stat")?).ok_or(SampleError::Unreadable)?;
        if stat.is_kernel_thread() {
            return Ok(None);
        }
        let io = self
            .reader
            .read(&dir, c"io")
            .ok()
            .and_then(|b| std::str::from_utf8(b).ok().and_then(parse_io));
        let open_fds = self.open_fds(pid, &dir);
        let cpu_ticks = (stat.utime, stat.stime);

        // Updated in place when the cached identity still holds, replaced otherwise; an
        // entry not visited in this cycle is dropped at its end.
        let cached = match self.known.get_mut(&pid) {
            Some(k) if k.starttime == stat.starttime && k.comm == stat.comm => {
                let previous = (Some(k.cpu_ticks), k.io);
                k.cpu_ticks = cpu_ticks;
                k.io = io;
                k.generation = self.generation;
                Some(previous)
            }
            _ => None,
        };
        let (prev_ticks, prev_io) = if let Some(previous) = cached {
            previous
        } else {
            let identity = self.identity(pid, &dir, &stat)?;
            self.known.insert(
                pid,
                Known {
                    starttime: stat.starttime,
                    comm: stat.comm,
                    identity,
                    cpu_ticks,
                    io,
                    generation: self.generation,
                },
            );
            (None, None)
        };
        let identity = &self.known[&pid].identity;

        let rate = |now: u64, before: u64| elapsed_s.map(|s| now.saturating_sub(before) as f64 / s);
        let pct = |now: u64, before: u64| {
            rate(now, before).map(|ticks_per_s| ticks_per_s * 100.0 / self.kernel.clk_tck as f64)
        };
        let (user, system) = cpu_ticks;
        let cpu_pct = prev_ticks.and_then(|(u, s)| pct(user + system, u + s));
        let cpu_user_pct = prev_ticks.and_then(|(u, _)| pct(user, u));
        let cpu_system_pct = prev_ticks.and_then(|(_, s)| pct(system, s));
        let io_rate = |field: fn(&IoCounters) -> u64| match (&io, &prev_io) {
            (Some(now), Some(before)) => rate(field(now), field(before)),
            _ => None,
        };
        let read_rate = io_rate(|c| c.read_bytes);
        let write_rate = io_rate(|c| c.write_bytes);
        let create_time_ms = self.kernel.create_time_ms(stat.starttime);
        let rss_pages = self
            .reader
            .read(&dir, c"statm")
            .ok()
            .and_then(parse_statm_resident)
            .unwrap_or(stat.rss_pages);
        let rss_bytes = rss_pages * self.kernel.page_size;
        let process = Process {
            pid,
            ppid: stat.ppid,
            create_time_ms,
            urn: process_urn(&self.hostname, pid, create_time_ms),
            name: identity.name.clone(),
            exe: identity.exe.clone(),
            cmdline: identity.cmdline.clone(),
            user: identity.user.clone(),
            uid: identity.uid,
            cwd: identity.cwd.clone(),
            state: stat.state,
            cpu_pct,
            cpu_user_pct,
            cpu_system_pct,
            cpu_user_seconds: self.kernel.ticks_to_seconds(stat.utime),
            cpu_system_seconds: self.kernel.ticks_to_seconds(stat.stime),
            rss_bytes,
            vms_bytes: stat.vsize,
            read_bytes: io.map(|c| c.read_bytes),
            write_bytes: io.map(|c| c.write_bytes),
            read_bytes_per_sec: read_rate,
            write_bytes_per_sec: write_rate,
            read_ops_per_sec: io_rate(|c| c.read_ops),
            write_ops_per_sec: io_rate(|c| c.write_ops),
            threads: stat.num_threads,
            open_fds,
            container_id: identity.container_id.clone(),
            ecs_task_arn: None,
            readmitted: false,
        };
        Ok(Some(Candidate {
            blacklisted: identity.blacklisted,
            usage: Usage {
                cpu_pct: cpu_pct.unwrap_or(0.0),
                rss_bytes,
                read_bytes_per_sec: read_rate.unwrap_or(0.0),
                write_bytes_per_sec: write_rate.unwrap_or(0.0),
            },
            process,
        }))
    }

    /// Open descriptors: the size that stat() reports for /proc/<pid>/fd (Linux 6.2+),
    /// else the number of its entries.
    fn open_fds(&mut self, pid: u32, dir: &PidDir) -> Option<u64> {
        let size = dir.size(c"fd").ok()?;
        if size > 0 {
            return Some(size);
        }
        Some(std::fs::read_dir(self.set_path(pid, "fd")).ok()?.count() as u64)
    }

    fn identity(&mut self, pid: u32, dir: &PidDir, stat: &Stat) -> Result<Identity, SampleError> {
        let mut cmdline: Vec<String> = self
            .reader
            .read(dir, c"cmdline")?
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let command_line = if cmdline.is_empty() {
            stat.comm.clone()
        } else {
            cmdline.join(" ")
        };
        let blacklisted = self.blacklist.is_blacklisted(&command_line);
        let name = process_name(&stat.comm, &cmdline);
        self.scrubber.scrub(&mut cmdline);

        let exe = dir
            .read_link(c"exe")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let uid = match self.pidfd_uids.then(|| pidfd::real_uid(pid)) {
            Some(Ok(uid)) => Some(uid),
            answer => {
                if matches!(answer, Some(Err(pidfd::Unavailable::Always))) {
                    self.pidfd_uids = false;
                }
                self.reader
                    .read(dir, c"status")
                    .ok()
                    .and_then(|b| keyed_u64(std::str::from_utf8(b).ok()?, "Uid"))
                    .and_then(|uid| u32::try_from(uid).ok())
            }
        };
        let user = uid.map_or_else(String::new, |uid| self.users.name(uid));
        let cwd = dir
            .read_link(c"cwd")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let container_id = self
            .reader
            .read(dir, c"cgroup")
            .ok()
            .and_then(|b| std::str::from_utf8(b).ok().and_then(cgroup::container_id))
            .map(String::from);
        Ok(Identity {
            name,
            exe,
            cmdline,
            user,
            uid,
            cwd,
            container_id,
            blacklisted,
        })
    }
}

/// Real uids through `PIDFD_GET_INFO` (Linux 6.13+): the same number as the first field
/// of the `Uid:` line of /proc/<pid>/status (both map the credential into the reader's
/// user namespace), for a pidfd_open, an ioctl and a close, where reading status has the
/// kernel format some forty lines. Only used when /proc shows this process's own pid
/// namespace, so that a /proc pid and a pidfd_open pid name the same process.
mod pidfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `struct pidfd_info` of <linux/pidfd.h>, in its first (64-byte) version.
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        pid: u32,
        tgid: u32,
        ppid: u32,
        ruid: u32,
        rgid: u32,
        euid: u32,
        egid: u32,
        suid: u32,
        sgid: u32,
        fsuid: u32,
        fsgid: u32,
        exit_code: i32,
    }

    const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);
    const PIDFD_INFO_CREDS: u64 = 1 << 1;
    /// `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
    const PIDFD_GET_INFO: u32 = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;

    pub(crate) enum Unavailable {
        /// Not for this process (gone); status may still answer.
        Now,
        /// Not on this kernel or under this seccomp profile: stop asking.
        Always,
    }

    /// Whether /proc is the procfs of this process's pid namespace.
    pub(crate) fn usable() -> bool {
        std::fs::read_link("/proc/self")
            .is_ok_and(|p| p.as_os_str().to_str() == Some(&std::process::id().to_string()))
    }

    pub(crate) fn real_uid(pid: u32) -> Result<u32, Unavailable> {
        let always = |e: io::Error| match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::ENOTTY | libc::EOPNOTSUPP) => {
                Unavailable::Always
            }
            _ => Unavailable::Now,
        };
        let pid = libc::pid_t::try_from(pid).map_err(|_| Unavailable::Now)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(always(io::Error::last_os_error()));
        }
        let fd = libc::c_int::try_from(fd).map_err(|_| Unavailable::Always)?;
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_CREDS,
            ..PidfdInfo::default()
        };
        // SAFETY: PIDFD_GET_INFO writes at most the 64 bytes its number encodes into `info`.
        let ret = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                PIDFD_GET_INFO as _,
                std::ptr::addr_of_mut!(info),
            )
        };
        if ret != 0 {
            let e = io::Error::last_os_error();
            // Older kernels answer an unknown pidfd ioctl with EINVAL or ENOTTY.
            return Err(match e.raw_os_error() {
                Some(libc::EINVAL) => Unavailable::Always,
                _ => always(e),
            });
        }
        if info.mask & PIDFD_INFO_CREDS == 0 {
            return Err(Unavailable::Always);
        }
        Ok(info.ruid)
    }
}

/// The kernel truncates `comm` to 15 bytes; like psutil, prefer the program name from
/// the command line when it extends the truncated name.
fn process_name(comm: &str, cmdline: &[String]) -> String {
    if comm.len() >= 15 {
        if let Some(program) = cmdline.first().map(|a| a.rsplit('/').next().unwrap_or(a)) {
            if program.starts_with(comm) {
                return program.to_string();
            }
        }
    }
    comm.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BlacklistConfig, ProcessConfig};

    fn collector(patterns: &[&str]) -> ProcessCollector {
        let config = ProcessConfig {
            blacklist: BlacklistConfig {
                patterns: patterns
                    .iter()
                    .map(|p| regex::Regex::new(p).unwrap())
                    .collect(),
                ..BlacklistConfig::default()
            },
            extra_sensitive_words: vec![],
        };
        ProcessCollector::new(&config, "test-host").unwrap()
    }

    #[test]
    fn finds_itself_with_identity_and_counters() {
        let mut c = collector(&[]);
        let scan = c.collect(1 << 30).unwrap();
        let me = scan
            .processes
            .iter()
            .find(|p| p.pid == std::process::id())
            .expect("own process listed");
        assert!(me.rss_bytes > 0 && me.vms_bytes >= me.rss_bytes);
        assert!(me.threads >= 1);
        assert!(me.open_fds.unwrap() >= 3);
        assert_eq!(me.cpu_pct, None, "no CPU % from one sample");
        assert!(me.exe.as_deref().unwrap().contains("node_daemon"));
        assert!(me
            .urn
            .starts_with(&format!("urn:process:/test-host:{}:", me.pid)));
        assert!(
            scan.counts.kernel_threads > 0,
            "kernel threads are skipped and counted"
        );
        assert_eq!(scan.counts.reported, scan.processes.len() as u64);

        let second = c.collect(1 << 30).unwrap();
        let me2 = second.processes.iter().find(|p| p.pid == me.pid).unwrap();
        assert!(me2.cpu_pct.is_some());
        assert_eq!(me2.create_time_ms, me.create_time_ms);
    }

    #[test]
    fn blacklist_hides_and_counts() {
        let mut c = collector(&[".*"]);
        let scan = c.collect(1 << 30).unwrap();
        assert!(scan.processes.is_empty());
        assert!(scan.counts.blacklisted > 0);
        assert_eq!(scan.counts.readmitted, 0);
    }

    #[test]
    fn a_vanished_process_is_an_error_of_its_own() {
        let mut c = collector(&[]);
        // Beyond pid_max: as if the process exited between listing and reading.
        assert!(matches!(
            c.sample(4_194_305, None),
            Err(SampleError::Vanished)
        ));
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(SampleError::from(denied), SampleError::Unreadable));
        let esrch = io::Error::from_raw_os_error(libc::ESRCH);
        assert!(matches!(SampleError::from(esrch), SampleError::Vanished));
    }

    #[test]
    fn long_names_come_from_the_command_line() {
        let args = vec![
            "/opt/app/my-very-long-program-name".to_string(),
            "-x".into(),
        ];
        assert_eq!(
            process_name("my-very-long-pr", &args),
            "my-very-long-program-name"
        );
        assert_eq!(process_name("short", &args), "short");
        assert_eq!(process_name("my-very-long-pr", &[]), "my-very-long-pr");
    }
}
