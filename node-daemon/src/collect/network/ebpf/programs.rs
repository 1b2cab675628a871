//! Loading the kernel programs of `bpf/network.bpf.c` and reading what they found.

use std::io::Read;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, Iter};
use aya::{Btf, Ebpf};

use super::EbpfError;

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
    closed: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
}

impl Programs {
    pub fn load() -> Result<Self, EbpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| EbpfError::Load(e.to_string()))?;
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

    /// Hands every record waiting in the ring buffer of closed connections to `f`.
    pub fn drain_closed(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(item) = self.closed.next() {
            f(&item);
        }
    }

    /// A drop counter of the kernel side, summed over CPUs, since load.
    pub fn drops(&self, index: u32) -> u64 {
        self.drops
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }
}
