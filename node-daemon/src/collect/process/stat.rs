//! Parsers for `/proc/<pid>/stat` and `/proc/<pid>/io`.

use crate::collect::proc_files::keyed_u64;

/// `PF_KTHREAD` in the `flags` field of /proc/<pid>/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of /proc/<pid>/stat the collector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) comm: String,
    /// The state letter (`R`, `S`, `D`, `Z`, `T` ...).
    pub(crate) state: char,
    pub(crate) ppid: u32,
    pub(crate) flags: u64,
    /// Clock ticks.
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) num_threads: u64,
    /// Clock ticks after boot.
    pub(crate) starttime: u64,
    pub(crate) vsize: u64,
    /// Pages.
    pub(crate) rss_pages: u64,
}

impl Stat {
    pub(crate) fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parses the text of /proc/<pid>/stat. The command name is between the first `(` and the
/// last `)`, since it may itself hold spaces and parentheses.
pub(crate) fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&text[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    // Index 0 is field 3 (state) of proc(5).
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let mut nth = |skip: usize| -> Option<u64> { fields.nth(skip)?.parse().ok() };
    let ppid = nth(0)?; // field 4
    let flags = nth(4)?; // field 9
    let utime = nth(4)?; // field 14
    let stime = nth(0)?; // field 15
    let num_threads = nth(4)?; // field 20
    let starttime = nth(1)?; // field 22
    let vsize = nth(0)?; // field 23
    let rss_pages = nth(0)?; // field 24
    Some(Stat {
        comm,
        state,
        ppid: u32::try_from(ppid).ok()?,
        flags,
        utime,
        stime,
        num_threads,
        starttime,
        vsize,
        rss_pages,
    })
}

/// Resident pages from /proc/<pid>/statm (its second field). Exact where the RSS field of
/// /proc/<pid>/stat is not: since the kernel keeps RSS in per-CPU counters, `stat` shows
/// a quick read that leaves out up to a few dozen pages per CPU, `statm` (and `status`)
/// their sum.
pub(crate) fn parse_statm_resident(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// IO counters from /proc/<pid>/io.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoCounters {
    /// Bytes from and to storage.
    pub(crate) read_bytes: u64,
    pub(crate) write_bytes: u64,
    /// Read and write system calls.
    pub(crate) read_ops: u64,
    pub(crate) write_ops: u64,
}

pub(crate) fn parse_io(text: &str) -> Option<IoCounters> {
    Some(IoCounters {
        read_bytes: keyed_u64(text, "read_bytes")?,
        write_bytes: keyed_u64(text, "write_bytes")?,
        read_ops: keyed_u64(text, "syscr").unwrap_or(0),
        write_ops: keyed_u64(text, "syscw").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 7 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_by_position() {
        let stat = parse_stat(STAT.as_bytes()).unwrap();
        assert_eq!(
            stat,
            Stat {
                comm: "my (odd) name".into(),
                state: 'S',
                ppid: 1,
                flags: 4_194_560,
                utime: 250,
                stime: 75,
                num_threads: 7,
                starttime: 123_456,
                vsize: 987_654_321,
                rss_pages: 2048,
            }
        );
        assert!(!stat.is_kernel_thread());
    }

    #[test]
    fn kernel_threads_by_flag() {
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 0 0 0 0 0\n";
        assert!(parse_stat(kthread.as_bytes()).unwrap().is_kernel_thread());
    }

    #[test]
    fn truncated_or_garbage_stat_is_none() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 (x) S 1 2 3"), None);
        assert_eq!(
            parse_stat(b"12 )x( S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"),
            None
        );
        assert_eq!(parse_stat(&STAT.as_bytes()[..STAT.len() / 2]), None);
    }

    #[test]
    fn io_counters() {
        let io = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_statm_resident(b"2743 437 301 2 0 116 0\n"), Some(437));
        assert_eq!(parse_statm_resident(b"2743"), None);
        assert_eq!(
            parse_io(io),
            Some(IoCounters {
                read_bytes: 4096,
                write_bytes: 8192,
                read_ops: 3,
                write_ops: 4
            })
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
    }
}
