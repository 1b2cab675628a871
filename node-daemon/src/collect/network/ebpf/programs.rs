//! Loading the kernel programs of `bpf/network.bpf.c` and reading what they found.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, Iter};
use aya::{Btf, Ebpf, EbpfLoader};

use super::record::RECORD_LEN;
use super::EbpfError;

/// Closed-connection records kept between two cycles at most (7 MiB); more are counted in
/// `network.closed_lost`.
const CLOSED_PENDING_MAX: usize = 65_536;

/// The object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/network.bpf.o"));

/// Tracepoints, the programs attached to them, and what is lost when the kernel refuses
/// one (the socket iterator alone is required).
const TRACEPOINTS: [(&str, &str, &str); 3] = [
    (
        "state_change",
        "inet_sock_set_state",
        "connections opened and closed between two cycles are not seen, final counters are the last cycle's",
    ),
    (
        "sent",
        "sock_send_length",
        "no UDP byte counters (the tracepoint is Linux 6.3+)",
    ),
    (
        "received",
        "sock_recv_length",
        "no UDP byte counters (the tracepoint is Linux 6.3+)",
    ),
];

/// Indexes of the kernel's drop counters (`bpf/network.h`).
pub const DROP_RING_FULL: u32 = 0;
pub const DROP_NO_STORAGE: u32 = 1;

/// The loaded and attached programs; dropping it detaches them.
pub struct Programs {
    ebpf: Ebpf,
    /// What this kernel refused, and what that costs: for status.
    pub refused: Vec<String>,
    /// Whether every TCP close reaches the ring buffer.
    pub reports_closes: bool,
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
                while !stop2.load(Ordering::Relaxed) {
                    let mut fd = libc::pollfd {
                        fd: ring.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; a 200 ms timeout bounds the stop latency.
                    unsafe { libc::poll(&mut fd, 1, 200) };
                    let mut pending = pending2.lock().unwrap_or_else(|e| e.into_inner());
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
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
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
    pub fn load() -> Result<Self, EbpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
        // One parsed copy of the kernel's BTF (several MB) for relocations and attaching.
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(e.to_string()))?;
        // Probing by doing: a tracepoint this kernel lacks (or refuses) costs what the
        // table says, not the whole backend.
        let mut refused = Vec::new();
        let mut reports_closes = true;
        for (program, tracepoint, cost) in TRACEPOINTS {
            let p: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(EbpfError::Missing(program))?
                .try_into()
                .map_err(|e| EbpfError::program(program, e))?;
            let attached = p.load(tracepoint, &btf).and_then(|()| p.attach().map(drop));
            if let Err(e) = attached {
                let e = EbpfError::program(program, e);
                tracing::warn!("network tracer: tp_btf/{tracepoint} refused: {e}");
                refused.push(format!("tp_btf/{tracepoint} refused: {cost}"));
                reports_closes &= program != "state_change";
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
            refused,
            reports_closes,
            closed,
            drops,
        })
    }

    /// Runs the socket iterator once: `struct sock_record`s back to back into `buf`.
    pub fn iterate(&mut self, buf: &mut Vec<u8>) -> Result<(), EbpfError> {
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
    pub fn drain_closed(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let pending = self.closed.take();
        pending.records.chunks(RECORD_LEN).for_each(&mut f);
        pending.lost
    }

    /// A drop counter of the kernel side, summed over CPUs, since load.
    pub fn drops(&self, index: u32) -> u64 {
        self.drops
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}
