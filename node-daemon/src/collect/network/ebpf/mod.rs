//! The eBPF backend: the kernel programs of `bpf/network.bpf.c` (see build.rs).
//!
//! Each cycle runs the `iter/task_file` socket iterator once: every TCP and UDP socket of
//! every process in every network namespace, with its owner, TCP counters and the UDP byte
//! counts the send/receive tracepoints keep. TCP connections that closed since the last
//! cycle come from the ring buffer, with their final counters, so connections shorter than
//! a cycle are reported too.

#[cfg(sts_bpf)]
mod programs;
pub(crate) mod record;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::socket::{Backend, Observation, Owner, Socket, TcpCounters};
use super::NetworkError;
use crate::collect::kernel::Kernel;
use crate::collect::proc_files::FileReader;
use crate::collect::process::container_id;
use record::{Record, RECORD_LEN};

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("the eBPF programs are not in this binary: {0}")]
    NotBuilt(String),
    #[error("kernel BTF unreadable: {0}")]
    Btf(String),
    #[error("loading the eBPF object: {0}")]
    Load(String),
    #[error("`{0}` is missing from the eBPF object")]
    Missing(&'static str),
    #[error("eBPF program `{name}`: {reason}")]
    Program { name: &'static str, reason: String },
    #[error("eBPF map: {0}")]
    Map(String),
    #[error("running the socket iterator: {0}")]
    Iterate(String),
}

impl EbpfError {
    #[cfg_attr(not(sts_bpf), allow(dead_code))]
    fn program(name: &'static str, error: impl std::error::Error) -> Self {
        // The verifier's log can run to megabytes: its head says what was refused.
        let mut reason = sts_proto::error_chain(&error);
        if reason.len() > 2000 {
            reason = format!("{} ...", sts_proto::utf8_head(&reason, 2000));
        }
        Self::Program { name, reason }
    }

    /// The reason without the verifier's log, short enough for one line of status; a
    /// helper the kernel does not have is named.
    pub(crate) fn short_reason(&self) -> String {
        let (name, full) = match self {
            Self::Program { name, reason } => (Some(*name), reason.clone()),
            other => (None, other.to_string()),
        };
        let head = full.split(". Verifier output").next().unwrap_or_default();
        let head = sts_proto::utf8_head(head.lines().next().unwrap_or_default(), 160);
        let mut short = match name {
            Some(name) => format!("eBPF program `{name}`: {head}"),
            None => head.to_string(),
        };
        // The verifier's words for a helper this kernel lacks: "unknown func bpf_x#162".
        if let Some(at) = full.find("unknown func ") {
            let helper = full[at + 13..]
                .split(|c: char| c == '#' || c.is_whitespace())
                .next()
                .unwrap_or_default();
            short.push_str(&format!("; this kernel lacks the helper {helper}"));
        }
        short
    }
}

#[cfg(not(sts_bpf))]
mod programs {
    //! Stands in for the kernel programs when build.rs could not build them.
    use super::EbpfError;

    pub(crate) const DROP_RING_FULL: u32 = 0;
    pub(crate) const DROP_NO_STORAGE: u32 = 1;

    pub(crate) struct Programs {
        pub(crate) sources: Vec<String>,
        pub(crate) refused: Vec<String>,
        pub(crate) reports_closes: bool,
    }

    impl Programs {
        pub(crate) fn load() -> Result<Self, EbpfError> {
            let why = include_str!(concat!(env!("OUT_DIR"), "/bpf-missing.txt"));
            Err(EbpfError::NotBuilt(why.to_string()))
        }
        pub(crate) fn iterate(&mut self, _: &mut Vec<u8>) -> Result<(), EbpfError> {
            Ok(())
        }
        pub(crate) fn drain_closed(&mut self, _: impl FnMut(&[u8])) -> u64 {
            0
        }
        pub(crate) fn drops(&self, _: u32) -> u64 {
            0
        }
    }
}

use programs::{Programs, DROP_NO_STORAGE, DROP_RING_FULL};

pub struct EbpfBackend {
    programs: Programs,
    kernel: Kernel,
    buf: Vec<u8>,
    containers: ContainerIds,
    owners: Owners,
    /// Kernel drop counters at the last cycle, to report what each cycle lost.
    ring_full: u64,
    no_storage: u64,
}

impl EbpfBackend {
    pub fn start() -> Result<Self, EbpfError> {
        let kernel = Kernel::read().map_err(|e| EbpfError::Load(format!("/proc/stat: {e}")))?;
        let programs = Programs::load()?;
        // Loading parsed the kernel's BTF: tens of MB of heap, freed now.
        crate::heap::trim();
        Ok(Self {
            programs,
            kernel,
            buf: Vec::with_capacity(256 * 1024),
            containers: ContainerIds::default(),
            owners: Owners::default(),
            ring_full: 0,
            no_storage: 0,
        })
    }

    fn socket(&mut self, r: &Record) -> Socket {
        let owner = (r.pid != 0).then(|| Owner {
            pid: r.pid,
            create_time_ms: self.create_time_ms(r.owner_start_ns),
            container_id: self.containers.get(r.pid, r.owner_start_ns),
        });
        Socket {
            netns: u64::from(r.netns),
            protocol: r.protocol,
            local: r.local,
            remote: r.remote,
            state: r.state,
            inode: r.inode,
            tx_queue: r.tx_queue,
            rx_queue: r.rx_queue,
            owner,
            counters: Some(TcpCounters {
                bytes_sent: r.bytes_sent,
                bytes_received: r.bytes_received,
                retransmits: u64::from(r.retransmits),
                rtt_us: u64::from(r.srtt_us),
            }),
            start_time_ms: (r.start_ns != 0)
                .then(|| self.kernel.boot_time_s * 1000 + r.start_ns / 1_000_000),
        }
    }

    /// The same arithmetic as /proc's `starttime`: boot-time ns in clock ticks.
    fn create_time_ms(&self, start_boottime_ns: u64) -> u64 {
        let ns_per_tick = 1_000_000_000 / self.kernel.clk_tck.max(1);
        self.kernel.create_time_ms(start_boottime_ns / ns_per_tick)
    }

    fn delta(counter: &mut u64, now: u64) -> u64 {
        let d = now.saturating_sub(*counter);
        *counter = now;
        d
    }
}

impl Backend for EbpfBackend {
    fn describe(&self) -> String {
        let mut s = "ebpf: sockets from iter/task_file each cycle".to_string();
        for part in self.programs.sources.iter().chain(&self.programs.refused) {
            s.push_str("; ");
            s.push_str(part);
        }
        s
    }

    fn observe(&mut self) -> Result<Observation, NetworkError> {
        let mut buf = std::mem::take(&mut self.buf);
        let iterated = self.programs.iterate(&mut buf);
        let mut obs = Observation::default();
        if let Err(e) = iterated {
            self.buf = buf;
            return Err(NetworkError::Ebpf(e));
        }
        // A socket shared by several processes (inherited across fork) is reported once,
        // for the lowest pid, as the polling backend does.
        let mut by_sk: HashMap<u64, Record> = HashMap::with_capacity(buf.len() / RECORD_LEN);
        for chunk in buf.chunks(RECORD_LEN) {
            match record::parse(chunk) {
                Ok(r) => match by_sk.get(&r.sk) {
                    Some(seen) if seen.pid <= r.pid => {}
                    _ => {
                        by_sk.insert(r.sk, r);
                    }
                },
                Err(_) => obs.malformed += 1,
            }
        }
        self.buf = buf;
        let mut namespaces: Vec<u32> = by_sk.values().map(|r| r.netns).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        obs.namespaces = namespaces.len() as u64;
        self.containers.start_cycle();
        obs.sockets = by_sk.values().map(|r| self.socket(r)).collect();
        self.owners.remember(by_sk);
        let mut closed = Vec::new();
        let lost = self
            .programs
            .drain_closed(|raw| closed.push(record::parse(raw)));
        for r in closed {
            match r {
                Ok(mut r) => {
                    self.owners.complete(&mut r);
                    let s = self.socket(&r);
                    obs.unowned += u64::from(s.owner.is_none());
                    obs.closed.push(s);
                }
                Err(_) => obs.malformed += 1,
            }
        }
        self.containers.end_cycle();
        obs.closed_lost =
            lost + Self::delta(&mut self.ring_full, self.programs.drops(DROP_RING_FULL));
        obs.untracked = Self::delta(&mut self.no_storage, self.programs.drops(DROP_NO_STORAGE));
        obs.reports_closes = self.programs.reports_closes;
        Ok(obs)
    }
}

/// What the socket iterator said of each TCP connection, for the close records whose
/// owner the kernel programs did not learn: connections older than the tracer, and
/// accepted ones that closed before their server read (where fexit is refused). The
/// iterator walks file descriptors, so a connection leaves its view when its last
/// descriptor closes, which can be long before the kernel reports it closed (FIN_WAIT,
/// LAST_ACK): what it last said of such a connection is kept for [`DEPARTED_FOR`].
#[derive(Default)]
struct Owners {
    current: HashMap<u64, Record>,
    /// Connections the iterator no longer sees and the kernel has not reported closed,
    /// with when they left its view.
    departed: HashMap<u64, (Record, Instant)>,
}

/// How long a departed connection's owner is kept for its close record (tcp_fin_timeout
/// is 60 s by default).
const DEPARTED_FOR: Duration = Duration::from_secs(120);
/// Departed connections kept at most; beyond, their closes are reported without owner.
const MAX_DEPARTED: usize = 16_384;

impl Owners {
    fn remember(&mut self, mut by_sk: HashMap<u64, Record>) {
        by_sk.retain(|_, r| r.protocol == super::socket::Protocol::Tcp && r.remote.port() != 0);
        let now = Instant::now();
        self.departed.retain(|sk, (_, since)| {
            now.duration_since(*since) < DEPARTED_FOR && !by_sk.contains_key(sk)
        });
        for (sk, r) in std::mem::replace(&mut self.current, by_sk) {
            if self.departed.len() >= MAX_DEPARTED {
                break;
            }
            if !self.current.contains_key(&sk) {
                self.departed.insert(sk, (r, now));
            }
        }
    }

    /// Fills the owner, inode and local port of a close record from the iterator's record
    /// of the same connection: the same sock, namespace and peer.
    fn complete(&mut self, r: &mut Record) {
        if r.pid != 0 && r.inode != 0 && r.local.port() != 0 {
            self.departed.remove(&r.sk);
            return;
        }
        let same = |seen: &Record| seen.netns == r.netns && seen.remote == r.remote;
        let departed = self.departed.remove(&r.sk).map(|(seen, _)| seen);
        let Some(seen) = self
            .current
            .get(&r.sk)
            .filter(|seen| same(seen))
            .or(departed.as_ref().filter(|seen| same(seen)))
        else {
            return;
        };
        if r.pid == 0 {
            r.pid = seen.pid;
            r.owner_start_ns = seen.owner_start_ns;
        }
        if r.inode == 0 {
            r.inode = seen.inode;
        }
        if r.local.port() == 0 {
            r.local = seen.local;
        }
    }
}

/// A process: its pid and start (boot-clock ns), which together never repeat.
type ProcessKey = (u32, u64);

/// The container of a process, and whether a socket of this cycle named it.
struct Cached {
    id: Option<Arc<str>>,
    used: bool,
}

/// Container ids of socket owners from `/proc/<pid>/cgroup`, read once per process.
#[derive(Default)]
struct ContainerIds {
    by_process: HashMap<ProcessKey, Cached>,
    reader: FileReader,
    path: String,
}

impl ContainerIds {
    fn start_cycle(&mut self) {
        for cached in self.by_process.values_mut() {
            cached.used = false;
        }
    }

    fn get(&mut self, pid: u32, start_ns: u64) -> Option<Arc<str>> {
        if let Some(cached) = self.by_process.get_mut(&(pid, start_ns)) {
            cached.used = true;
            return cached.id.clone();
        }
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/cgroup");
        let id: Option<Arc<str>> = self
            .reader
            .read_str(&self.path)
            .ok()
            .and_then(container_id)
            .map(Arc::from);
        let cached = Cached {
            id: id.clone(),
            used: true,
        };
        self.by_process.insert((pid, start_ns), cached);
        id
    }

    /// Forgets processes that own no socket any more.
    fn end_cycle(&mut self) {
        self.by_process.retain(|_, cached| cached.used);
    }
}

#[cfg(test)]
mod tests;
