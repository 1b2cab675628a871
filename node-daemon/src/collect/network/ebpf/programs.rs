//! Loading the kernel programs of `bpf/network.bpf.c` and reading what they found.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, FEntry, FExit, Iter, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

use super::record::RECORD_LEN;
use super::EbpfError;
use crate::poison::IgnorePoison;

/// Closed-connection records kept between two cycles at most (7 MiB); more are counted in
/// `network.closed_lost`.
const CLOSED_PENDING_MAX: usize = 65_536;

/// The object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/network.bpf.o"));

/// Where a kernel program hooks in.
#[derive(Clone, Copy)]
enum Hook {
    TpBtf(&'static str),
    FEntry(&'static str),
    FExit(&'static str),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::TpBtf(name) => write!(f, "tp_btf/{name}"),
            Hook::FEntry(name) => write!(f, "fentry/{name}"),
            Hook::FExit(name) => write!(f, "fexit/{name}"),
        }
    }
}

/// One thing the tracer learns from optional programs: the ways to learn it, best first
/// (each a set of programs that must all attach), and what is lost when none attaches.
struct Feature {
    what: &'static str,
    ways: &'static [&'static [(&'static str, Hook)]],
    without: &'static str,
}

const CLOSES: Feature = Feature {
    what: "closed TCP connections",
    ways: &[&[("state_change", Hook::TpBtf("inet_sock_set_state"))]],
    without: "connections opened and closed between two cycles are not seen, final \
              counters are the last cycle's",
};

/// The iterator (required) and the optional programs, in the order they are tried.
const FEATURES: [Feature; 4] = [
    CLOSES,
    Feature {
        what: "UDP bytes sent",
        ways: &[
            &[("sent", Hook::TpBtf("sock_send_length"))],
            &[
                ("udp4_sent", Hook::FExit("udp_sendmsg")),
                ("udp6_sent", Hook::FExit("udpv6_sendmsg")),
            ],
        ],
        without: "no UDP bytes sent",
    },
    Feature {
        what: "UDP bytes received",
        ways: &[
            // Also the owners of accepted TCP connections that read (on_transfer).
            &[("received", Hook::TpBtf("sock_recv_length"))],
            &[("udp_received", Hook::FEntry("skb_consume_udp"))],
        ],
        without: "no UDP bytes received",
    },
    Feature {
        what: "owners of accepted TCP connections",
        ways: &[
            &[("accepted_4", Hook::FExit("inet_csk_accept"))],
            &[("accepted_2", Hook::FExit("inet_csk_accept"))],
        ],
        without: "a server that never reads from a connection that opens and closes \
                  between two cycles is not known",
    },
];

/// Indexes of the kernel's drop counters (`bpf/network.h`).
pub(crate) const DROP_RING_FULL: u32 = 0;
pub(crate) const DROP_NO_STORAGE: u32 = 1;

/// The loaded and attached programs; dropping it detaches them.
pub(crate) struct Programs {
    ebpf: Ebpf,
    /// Where each feature comes from on this kernel: for status.
    pub(crate) sources: Vec<String>,
    /// What this kernel refused, why, and what that costs: for status.
    pub(crate) refused: Vec<String>,
    /// Whether every TCP close reaches the ring buffer.
    pub(crate) reports_closes: bool,
    closed: ClosedReader,
    drops: PerCpuArray<MapData, u64>,
}

/// Closed-connection records as the reader thread took them off the ring buffer.
#[derive(Default)]
struct Pending {
    /// Records back to back.
    records: Vec<u8>,
    /// Records not kept: `CLOSED_PENDING_MAX` reached, or not a whole record.
    lost: u64,
}

/// A thread that empties the ring buffer as records arrive, so that a burst of closes
/// between two cycles does not fill it; the cycle takes what it gathered.
struct ClosedReader {
    pending: Arc<Mutex<Pending>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClosedReader {
    fn start(mut ring: RingBuf<MapData>) -> Result<Self, EbpfError> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (pending2, stop2) = (pending.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("net-closed".into())
            .spawn(move || {
                // Polling a ring buffer needs no capability.
                if let Err(e) = crate::privilege::drop_all_in_this_thread() {
                    tracing::debug!("ring buffer reader keeps its capabilities: {e}");
                }
                while !stop2.load(Ordering::Relaxed) {
                    let mut fd = libc::pollfd {
                        fd: ring.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; a 200 ms timeout bounds the stop latency.
                    unsafe { libc::poll(&mut fd, 1, 200) };
                    let mut pending = pending2.lock().ignore_poison();
                    while let Some(item) = ring.next() {
                        let room = pending.records.len() < CLOSED_PENDING_MAX * RECORD_LEN;
                        if item.len() == RECORD_LEN && room {
                            pending.records.extend_from_slice(&item);
                        } else {
                            pending.lost += 1;
                        }
                    }
                }
            })
            .map_err(|e| EbpfError::Map(format!("ring buffer reader thread: {e}")))?;
        Ok(Self {
            pending,
            stop,
            thread: Some(thread),
        })
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().ignore_poison())
    }
}

impl Drop for ClosedReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Programs {
    pub(crate) fn load() -> Result<Self, EbpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
        // One parsed copy of the kernel's BTF (several MB) for relocations and attaching.
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        // Probing by doing: a program this kernel lacks (or refuses) costs what its
        // feature says, not the whole backend.
        let mut sources = Vec::new();
        let mut refused = Vec::new();
        let mut reports_closes = true;
        for feature in &FEATURES {
            match attach_feature(&mut ebpf, &btf, feature) {
                Ok(source) => sources.push(format!("{} from {source}", feature.what)),
                Err(why) => {
                    refused.push(format!(
                        "{} refused ({why}): {}",
                        feature.what, feature.without
                    ));
                    reports_closes &= feature.what != CLOSES.what;
                }
            }
        }
        let iter: &mut Iter = ebpf
            .program_mut("sockets")
            .ok_or(EbpfError::Missing("sockets"))?
            .try_into()
            .map_err(|e| EbpfError::program("sockets", e))?;
        iter.load("task_file", &btf)
            .map_err(|e| EbpfError::program("sockets", e))?;
        let closed = ebpf
            .take_map("closed")
            .ok_or(EbpfError::Missing("closed"))?;
        let closed = RingBuf::try_from(closed).map_err(|e| EbpfError::Map(e.to_string()))?;
        let closed = ClosedReader::start(closed)?;
        let drops = ebpf.take_map("drops").ok_or(EbpfError::Missing("drops"))?;
        let drops = PerCpuArray::try_from(drops).map_err(|e| EbpfError::Map(e.to_string()))?;
        Ok(Self {
            ebpf,
            sources,
            refused,
            reports_closes,
            closed,
            drops,
        })
    }

    /// Runs the socket iterator once: `struct sock_record`s back to back into `buf`.
    pub(crate) fn iterate(&mut self, buf: &mut Vec<u8>) -> Result<(), EbpfError> {
        let iter: &mut Iter = self
            .ebpf
            .program_mut("sockets")
            .ok_or(EbpfError::Missing("sockets"))?
            .try_into()
            .map_err(|e| EbpfError::program("sockets", e))?;
        let id = iter
            .attach()
            .map_err(|e| EbpfError::program("sockets", e))?;
        let link = iter
            .take_link(id)
            .map_err(|e| EbpfError::program("sockets", e))?;
        let mut file = link
            .into_file()
            .map_err(|e| EbpfError::Iterate(e.to_string()))?;
        buf.clear();
        file.read_to_end(buf)
            .map_err(|e| EbpfError::Iterate(e.to_string()))?;
        Ok(())
    }

    /// Hands every closed-connection record gathered since the last call to `f`; returns
    /// how many were lost on the way to user space meanwhile.
    pub(crate) fn drain_closed(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let pending = self.closed.take();
        pending.records.chunks(RECORD_LEN).for_each(&mut f);
        pending.lost
    }

    /// A drop counter of the kernel side, summed over CPUs, since load.
    pub(crate) fn drops(&self, index: u32) -> u64 {
        self.drops
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}

/// Attaches the first way of `feature` whose programs all load and attach; returns its
/// hooks, or why the last way was refused. A way that attaches only in part is detached
/// (its programs unloaded), so that no event is counted twice by two ways.
fn attach_feature(ebpf: &mut Ebpf, btf: &Btf, feature: &Feature) -> Result<String, String> {
    let mut why = String::new();
    for way in feature.ways {
        let attached = way
            .iter()
            .try_for_each(|&(program, hook)| attach(ebpf, btf, program, hook));
        match attached {
            Ok(()) => {
                let hooks: Vec<String> = way.iter().map(|(_, hook)| hook.to_string()).collect();
                return Ok(hooks.join(", "));
            }
            Err(e) => {
                for &(program, hook) in way.iter() {
                    unload(ebpf, program, hook);
                }
                tracing::warn!("network tracer: {} refused: {e}", feature.what);
                why = e.short_reason();
            }
        }
    }
    Err(why)
}

fn attach(ebpf: &mut Ebpf, btf: &Btf, program: &'static str, hook: Hook) -> Result<(), EbpfError> {
    let p = ebpf
        .program_mut(program)
        .ok_or(EbpfError::Missing(program))?;
    let failed = |e: ProgramError| EbpfError::program(program, e);
    match hook {
        Hook::TpBtf(name) => {
            let p: &mut BtfTracePoint = p.try_into().map_err(failed)?;
            p.load(name, btf).map_err(failed)?;
            p.attach().map(drop).map_err(failed)
        }
        Hook::FEntry(name) => {
            let p: &mut FEntry = p.try_into().map_err(failed)?;
            p.load(name, btf).map_err(failed)?;
            p.attach().map(drop).map_err(failed)
        }
        Hook::FExit(name) => {
            let p: &mut FExit = p.try_into().map_err(failed)?;
            p.load(name, btf).map_err(failed)?;
            p.attach().map(drop).map_err(failed)
        }
    }
}

/// Detaches and unloads `program` if it was loaded; nothing if it was not.
fn unload(ebpf: &mut Ebpf, program: &'static str, hook: Hook) {
    let Some(p) = ebpf.program_mut(program) else {
        return;
    };
    let _ = match hook {
        Hook::TpBtf(_) => <&mut BtfTracePoint>::try_from(p).map(|p| p.unload()),
        Hook::FEntry(_) => <&mut FEntry>::try_from(p).map(|p| p.unload()),
        Hook::FExit(_) => <&mut FExit>::try_from(p).map(|p| p.unload()),
    };
}
