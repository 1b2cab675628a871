//! One owner per queue directory.
//!
//! Across processes: a POSIX write lock (`fcntl(F_SETLK)`) on `<dir>/lock`, released by
//! the kernel when the process dies, however. Unlike `flock`, it is not shared with a
//! child between `fork` and `exec`, so a process spawned by another thread at the
//! wrong moment cannot make a reopen fail. POSIX locks belong to the process, so within
//! it a registry of held directories refuses a second open; and since closing any
//! descriptor of the file drops the process's lock, the lock file is opened only by the
//! registered owner.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::error::{io_err, QueueError};
use crate::poison::IgnorePoison;

/// (device, inode) of the directories locked by this process.
static HELD: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

fn held() -> MutexGuard<'static, BTreeSet<(u64, u64)>> {
    HELD.lock().ignore_poison()
}

#[derive(Debug)]
pub(super) struct DirLock {
    file: Option<File>,
    key: (u64, u64),
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Close (unlock) before another thread may register and open the file.
        drop(self.file.take());
        held().remove(&self.key);
    }
}

pub(super) fn lock(dir: &Path) -> Result<DirLock, QueueError> {
    let meta = dir.metadata().map_err(io_err(dir, "stat"))?;
    let key = (meta.dev(), meta.ino());
    if !held().insert(key) {
        return Err(QueueError::Locked {
            dir: dir.to_path_buf(),
        });
    }
    // From here on, dropping `guard` unregisters (and closes the file if open).
    let mut guard = DirLock { file: None, key };
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    // SAFETY: `flock` is plain data; all zeros is a valid value, then set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = l_len = 0: the whole file.
    // SAFETY: F_SETLK reads the `flock` passed by pointer, valid for the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, std::ptr::addr_of!(fl)) };
    guard.file = Some(file);
    if rc == 0 {
        return Ok(guard);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EAGAIN) => Err(QueueError::Locked {
            dir: dir.to_path_buf(),
        }),
        _ => Err(io_err(&path, "lock")(e)),
    }
}
