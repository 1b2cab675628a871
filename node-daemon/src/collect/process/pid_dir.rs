//! One process's /proc directory, opened once (`O_PATH`) so that each of its files is
//! found relative to it: the kernel walks `/proc` and `<pid>` (and revalidates the pid's
//! dentry) once per process rather than once per file. All files then also come from the
//! same process, even if its pid is reused meanwhile.

use std::ffi::{CStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

pub(crate) struct PidDir(OwnedFd);

impl PidDir {
    /// `/proc/<pid>`; `path` is scratch space for its name.
    pub(crate) fn open(pid: u32, path: &mut String) -> io::Result<Self> {
        path.clear();
        let _ = write!(path, "/proc/{pid}\0");
        // SAFETY: `path` is NUL-terminated above and outlives the call.
        let fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by open and is owned by nothing else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn file(&self, name: &CStr) -> io::Result<File> {
        // SAFETY: the directory descriptor is open and `name` is NUL-terminated.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and is owned by nothing else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// The size stat() reports for an entry (for `fd`: the open descriptors, Linux 6.2+).
    pub(crate) fn size(&self, name: &CStr) -> io::Result<u64> {
        // SAFETY: all-zero bytes are a valid `stat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open, `name` NUL-terminated, `st` ours to write.
        if unsafe { libc::fstatat(self.0.as_raw_fd(), name.as_ptr(), &mut st, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_size as u64)
    }

    /// The target of a symbolic link such as `exe`.
    pub(crate) fn read_link(&self, name: &CStr) -> io::Result<OsString> {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: the descriptor is open, `name` NUL-terminated and `buf` writable for
        // its length.
        let n = unsafe {
            libc::readlinkat(
                self.0.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(OsString::from_vec(buf))
    }
}

/// Reads /proc/<pid> files into a buffer kept between reads, with one open, one read and
/// one close per file where `read_to_end` would add a statx, an lseek and a final empty
/// read: these files (single-record seq files, and `cmdline`) hand out their whole text in
/// one read when the buffer is large enough, so a read that leaves the buffer partly
/// unfilled is the end of the file, as procps also assumes. A read that fills the buffer
/// grows it and reads on.
#[derive(Debug)]
pub(crate) struct ProcReader {
    buf: Vec<u8>,
}

impl Default for ProcReader {
    fn default() -> Self {
        Self { buf: vec![0; 4096] }
    }
}

impl ProcReader {
    pub(crate) fn read(&mut self, dir: &PidDir, name: &CStr) -> io::Result<&[u8]> {
        let mut file = dir.file(name)?;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(2 * self.buf.len(), 0);
            }
            let want = self.buf.len() - len;
            match file.read(&mut self.buf[len..]) {
                Ok(n) => {
                    len += n;
                    if n < want {
                        return Ok(&self.buf[..len]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_links_and_sizes_of_its_own_process() {
        let mut path = String::new();
        let dir = PidDir::open(std::process::id(), &mut path).unwrap();
        let mut reader = ProcReader::default();
        let stat = reader.read(&dir, c"stat").unwrap();
        assert!(stat.starts_with(format!("{} (", std::process::id()).as_bytes()));
        assert_eq!(
            dir.read_link(c"exe").unwrap(),
            std::env::current_exe().unwrap().into_os_string()
        );
        assert!(dir.size(c"fd").unwrap() >= 3);
        let missing = reader.read(&dir, c"no-such-file").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_pid_that_does_not_exist_is_not_found() {
        let mut path = String::new();
        let err = PidDir::open(u32::MAX >> 1, &mut path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
