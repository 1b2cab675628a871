//! Least privilege: once the eBPF programs are loaded and the listeners bound, the daemon
//! keeps only the capabilities its collection cycles use and gives up the rest for good.
//!
//! In the ECS task definition the container already has only [`RUNTIME_CAPABILITIES`]
//! (`"drop": ["ALL"]` plus those four), so there the drop changes little beyond the
//! inheritable and ambient sets and `no_new_privs`. Run as root on a host (e.g.
//! `scripts/run-daemon.sh`), the daemon starts with every capability and keeps four.
//!
//! Capabilities belong to a thread: the drop applies to the calling thread and to the
//! threads it starts afterwards. The daemon calls [`keep_runtime_capabilities`] on its
//! runtime thread before it starts any other; the one thread started earlier, the eBPF
//! ring-buffer reader, calls [`drop_all_in_this_thread`] itself.

use std::io;

/// A Linux capability: its name without `CAP_` and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub bit: u32,
}

/// What the collection cycles use, and why; also the exact allow-list of the task
/// definitions (`ecs/`), which a test checks against this list.
/// - SYS_ADMIN: bpf() for the socket iterator each cycle (and the loading), setns().
///   On kernels >= 5.8 BPF + PERFMON would do, but ECS's KernelCapabilities list has
///   neither, and older kernels know only SYS_ADMIN.
/// - SYS_PTRACE: /proc/<pid>/exe, fd and io of processes of other users or with more
///   capabilities (ptrace access mode read).
/// - DAC_READ_SEARCH: /proc/<pid>/io is 0400 and owned by the process's user.
/// - NET_ADMIN: the conntrack dump that pairs the two legs of Docker's destination NAT.
pub const RUNTIME_CAPABILITIES: [Capability; 4] = [
    Capability {
        name: "SYS_ADMIN",
        bit: 21,
    },
    Capability {
        name: "SYS_PTRACE",
        bit: 19,
    },
    Capability {
        name: "DAC_READ_SEARCH",
        bit: 2,
    },
    Capability {
        name: "NET_ADMIN",
        bit: 12,
    },
];

const CAP_SETPCAP: u32 = 8;
/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading this thread's capabilities (capget): {0}")]
    Read(io::Error),
    #[error("setting this thread's capabilities (capset): {0}")]
    Write(io::Error),
    #[error("dropping capability {bit} from the bounding set: {error}")]
    Bounding { bit: u32, error: io::Error },
}

/// A thread's effective, permitted and inheritable sets, one bit per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// What [`keep_runtime_capabilities`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Capabilities that were permitted before and are not now.
    pub permitted: u64,
    /// Whether the bounding set was narrowed too (it needs SETPCAP, which ECS's
    /// allow-list does not give).
    pub bounding: bool,
}

/// The bit mask of [`RUNTIME_CAPABILITIES`].
pub fn runtime_mask() -> u64 {
    RUNTIME_CAPABILITIES
        .iter()
        .fold(0, |mask, cap| mask | 1 << cap.bit)
}

/// Keeps [`RUNTIME_CAPABILITIES`] (those of them the thread has) and drops every other
/// capability from the effective, permitted, inheritable, ambient and, where SETPCAP
/// allows, bounding sets of the calling thread; sets `no_new_privs`.
pub fn keep_runtime_capabilities() -> Result<Dropped, PrivilegeError> {
    keep_only(runtime_mask())
}

/// Drops every capability of the calling thread (for threads that need none).
pub fn drop_all_in_this_thread() -> Result<Dropped, PrivilegeError> {
    keep_only(0)
}

fn keep_only(keep: u64) -> Result<Dropped, PrivilegeError> {
    let before = read()?;
    let bounding = before.effective & (1 << CAP_SETPCAP) != 0;
    if bounding {
        for bit in (0..=last_capability()).filter(|bit| keep & (1 << bit) == 0) {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) } != 0 {
                let error = io::Error::last_os_error();
                // EINVAL: a capability this kernel does not know.
                if error.raw_os_error() != Some(libc::EINVAL) {
                    return Err(PrivilegeError::Bounding { bit, error });
                }
            }
        }
    }
    // The ambient set is empty unless a launcher filled it; kernels before 4.3 lack it
    // (EINVAL), and then there is nothing to clear.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let after = Sets {
        effective: before.effective & keep,
        permitted: before.permitted & keep,
        inheritable: 0,
    };
    write(after)?;
    // No execve can give capabilities back (setuid binaries, file capabilities).
    // SAFETY: prctl with integer arguments only; it cannot fail with these.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Ok(Dropped {
        permitted: before.permitted & !after.permitted,
        bounding,
    })
}

/// The names of the capabilities in `mask` that [`RUNTIME_CAPABILITIES`] names, and the
/// others as numbers, e.g. `SYS_ADMIN,NET_ADMIN,cap39`.
pub fn describe(mask: u64) -> String {
    (0..64)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| {
            RUNTIME_CAPABILITIES
                .iter()
                .find(|cap| cap.bit == bit)
                .map_or_else(|| format!("cap{bit}"), |cap| cap.name.to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The highest capability this kernel knows (40 on 5.9+, `CAP_CHECKPOINT_RESTORE`).
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's sets.
pub fn read() -> Result<Sets, PrivilegeError> {
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a version-3 header and the two data words that version reads and writes.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Read(io::Error::last_os_error()));
    }
    let join = |low: u32, high: u32| u64::from(high) << 32 | u64::from(low);
    Ok(Sets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn write(sets: Sets) -> Result<(), PrivilegeError> {
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // The low 32 capabilities in the first word, the high ones in the second.
    let data = [0, 32].map(|shift| Data {
        effective: (sets.effective >> shift) as u32,
        permitted: (sets.permitted >> shift) as u32,
        inheritable: (sets.inheritable >> shift) as u32,
    });
    // SAFETY: a version-3 header and the two data words that version reads.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(PrivilegeError::Write(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each test runs on its own thread, so dropping there leaves the others alone.
    fn on_a_new_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("test thread")
    }

    #[test]
    fn keeps_only_the_runtime_capabilities() {
        let (before, dropped, after) = on_a_new_thread(|| {
            let before = read().unwrap();
            let dropped = keep_runtime_capabilities().unwrap();
            (before, dropped, read().unwrap())
        });
        assert_eq!(after.permitted, before.permitted & runtime_mask());
        assert_eq!(after.effective, before.effective & runtime_mask());
        assert_eq!(after.inheritable, 0);
        assert_eq!(dropped.permitted, before.permitted & !runtime_mask());
        if before.permitted & !runtime_mask() != 0 {
            assert_ne!(dropped.permitted, 0);
        } else if std::env::var_os("STS_TEST_STRICT").is_some() {
            panic!("STS_TEST_STRICT: run as root, this thread had nothing to drop");
        } else {
            println!("skipped the check of a real drop: not root, nothing to drop");
        }
    }

    #[test]
    fn a_dropped_capability_cannot_come_back() {
        let regained = on_a_new_thread(|| {
            let before = read().unwrap();
            drop_all_in_this_thread().unwrap();
            let again = write(before);
            (before.permitted, again.is_err(), read().unwrap())
        });
        let (had, refused, now) = regained;
        assert_eq!(now, Sets::default());
        if had != 0 {
            assert!(refused, "capset gave back dropped capabilities");
        }
    }

    #[test]
    fn describe_names_the_runtime_set() {
        assert_eq!(
            describe(runtime_mask()),
            "DAC_READ_SEARCH,NET_ADMIN,SYS_PTRACE,SYS_ADMIN"
        );
        assert_eq!(describe(1 << 39 | 1 << 12), "NET_ADMIN,cap39");
    }
}
