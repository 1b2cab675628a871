//! Segment files: naming, listing, and the scan made when the queue is opened.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use super::record::{decode_header, Header, HEADER_LEN};

const SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;
/// Read buffer of the scan: memory stays bounded whatever the record sizes.
const SCAN_BUF: usize = 64 << 10;

/// A segment in memory. The oldest one holds the read cursor; the newest one is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub(crate) id: u64,
    /// Bytes on disk.
    pub(crate) size: u64,
    /// End of the last record that can be located; `size` but for a damaged tail.
    pub(crate) end: u64,
    /// Records not yet acknowledged (from the cursor, for the oldest segment).
    pub(crate) records: u64,
}

pub(super) fn file_name(id: u64) -> String {
    format!("{id:0NAME_DIGITS$}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Ids of the segment files in `dir`, ascending. Other files are left alone.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// At the end of the file, on a record boundary.
    Clean,
    /// A header or payload cut short by the end of the file.
    Incomplete,
    /// A header that is not one.
    BadHeader,
    /// A payload whose checksum fails, with no intact header after it (only when
    /// payloads are verified).
    BadPayload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scan {
    pub(crate) file_len: u64,
    /// End of the last record that can be located.
    pub(crate) end: u64,
    pub(crate) stop: Stop,
    /// The last record boundary at or before the requested cursor.
    pub(crate) cursor: u64,
    /// Records starting at or after `cursor`.
    pub(crate) records: u64,
}

/// Walks the records of a segment from its start, one header at a time (memory: one
/// read buffer). With `verify`, every payload's checksum is computed too; a damaged
/// payload followed by an intact header is kept (it is skipped and counted when read),
/// one followed by nothing intact ends the scan there (a torn write).
pub(super) fn scan(file: &File, cursor: u64, verify: bool) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(SCAN_BUF, file);
    r.rewind()?;
    let mut pos = 0u64;
    let mut at_cursor = 0u64;
    let mut records = 0u64;
    let stop = loop {
        if pos <= cursor {
            at_cursor = pos;
        }
        if pos == file_len {
            break Stop::Clean;
        }
        let Some(header) = read_header(&mut r, file_len - pos)? else {
            break if file_len - pos < HEADER_LEN as u64 {
                Stop::Incomplete
            } else {
                Stop::BadHeader
            };
        };
        let next = pos + header.record_len();
        if next > file_len {
            break Stop::Incomplete;
        }
        if verify {
            if payload_crc(&mut r, header.len)? != header.crc
                && !intact_header_follows(&mut r, file_len - next)?
            {
                break Stop::BadPayload;
            }
        } else {
            r.seek_relative(i64::from(header.len))?;
        }
        if pos >= cursor {
            records += 1;
        }
        pos = next;
    };
    Ok(Scan {
        file_len,
        end: pos,
        stop,
        cursor: at_cursor,
        records,
    })
}

/// The next header if `left` bytes hold one and it is intact; the reader is then past it.
fn read_header(r: &mut impl Read, left: u64) -> io::Result<Option<Header>> {
    if left < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    Ok(decode_header(&h))
}

fn payload_crc(r: &mut impl Read, len: u32) -> io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut left = len as usize;
    let mut buf = [0u8; 8192];
    while left > 0 {
        let n = left.min(buf.len());
        r.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n;
    }
    Ok(hasher.finalize())
}

/// Looks at the next header without consuming it.
fn intact_header_follows(r: &mut BufReader<&File>, left: u64) -> io::Result<bool> {
    let intact = read_header(r, left)?.is_some();
    if left >= HEADER_LEN as u64 {
        r.seek_relative(-(HEADER_LEN as i64))?;
    }
    Ok(intact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::queue::record::encode_header;
    use std::io::Write;

    fn segment_with(records: &[&[u8]]) -> (tempfile::NamedTempFile, Vec<u64>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut starts = Vec::new();
        let mut pos = 0;
        for p in records {
            starts.push(pos);
            f.write_all(&encode_header(&[p])).unwrap();
            f.write_all(p).unwrap();
            pos += (HEADER_LEN + p.len()) as u64;
        }
        starts.push(pos);
        (f, starts)
    }

    #[test]
    fn names_are_fixed_width_and_sort_like_ids() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("1.seg"), None);
        assert_eq!(parse_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_name("00000000000000000001.tmp"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn scan_counts_from_the_cursor_and_rounds_it_down_to_a_boundary() {
        let (f, starts) = segment_with(&[b"a", b"bb", b"ccc", b""]);
        let s = scan(f.as_file(), 0, true).unwrap();
        assert_eq!(
            (s.end, s.stop, s.records, s.cursor),
            (starts[4], Stop::Clean, 4, 0)
        );
        let s = scan(f.as_file(), starts[2], false).unwrap();
        assert_eq!((s.records, s.cursor), (2, starts[2]));
        // Inside record 2: back to its start (delivered again rather than lost).
        let s = scan(f.as_file(), starts[2] + 3, false).unwrap();
        assert_eq!((s.records, s.cursor), (1, starts[2]));
        // Beyond the end: the end.
        let s = scan(f.as_file(), starts[4] + 100, true).unwrap();
        assert_eq!((s.records, s.cursor), (0, starts[4]));
    }

    #[test]
    fn scan_stops_at_a_torn_or_damaged_tail() {
        let (f, starts) = segment_with(&[b"first", b"second", b"third"]);
        let full = std::fs::read(f.path()).unwrap();
        // Cut inside the header of the last record, then inside its payload.
        for (cut, stop) in [
            (starts[2] + 5, Stop::Incomplete),
            (starts[3] - 1, Stop::Incomplete),
        ] {
            std::fs::write(f.path(), &full[..cut as usize]).unwrap();
            let s = scan(f.as_file(), 0, true).unwrap();
            assert_eq!((s.end, s.stop, s.records), (starts[2], stop, 2));
        }
        // Full length but the last payload damaged: verified scans stop, header walks not.
        let mut bad = full.clone();
        bad[starts[3] as usize - 1] ^= 1;
        std::fs::write(f.path(), &bad).unwrap();
        let s = scan(f.as_file(), 0, true).unwrap();
        assert_eq!((s.end, s.stop), (starts[2], Stop::BadPayload));
        assert_eq!(scan(f.as_file(), 0, false).unwrap().stop, Stop::Clean);
        // Garbage after the records.
        let mut garbage = full.clone();
        garbage.extend_from_slice(&[0x5a; 40]);
        std::fs::write(f.path(), &garbage).unwrap();
        let s = scan(f.as_file(), 0, true).unwrap();
        assert_eq!(
            (s.end, s.stop, s.file_len),
            (starts[3], Stop::BadHeader, starts[3] + 40)
        );
    }

    #[test]
    fn damaged_payload_followed_by_an_intact_header_is_kept_for_the_reader() {
        let (f, starts) = segment_with(&[b"first", b"second", b"third"]);
        let mut bad = std::fs::read(f.path()).unwrap();
        bad[starts[1] as usize + HEADER_LEN + 2] ^= 0x10;
        std::fs::write(f.path(), &bad).unwrap();
        let s = scan(f.as_file(), 0, true).unwrap();
        assert_eq!((s.end, s.stop, s.records), (starts[3], Stop::Clean, 3));
    }
}
