//! Durable FIFO of opaque records on disk, for batches the receiver cannot take now.
//!
//! One queue per directory (the forwarder opens one per pipeline, so records carry no
//! pipeline tag). One owner per directory: `open` takes a POSIX write lock on
//! `<dir>/lock` (and registers the directory in the process) and refuses with
//! [`QueueError::Locked`] if another process or another `DiskQueue` holds it (`lock.rs`).
//! The API is synchronous (`std::fs`); call it from `spawn_blocking`.
//!
//! # Files
//!
//! - `<20-digit id>.seg`: segments, appended to in id order and rolled when the next
//!   record would take one past `segment_bytes` (8 MiB by default). A record is a
//!   16-byte header (magic, payload length, CRC-32 of the payload, CRC-32 of the header)
//!   and the payload (format in `record.rs`). Nothing but the newest segment is written.
//! - `cursor`: where the oldest unacknowledged record starts (segment, offset), in two
//!   checksummed slots written alternately in place (`cursor.rs`): one 32-byte `pwrite`
//!   per acknowledgement, cheaper than write-temp-and-rename and as safe, since a torn
//!   slot falls back to the other one.
//! - `lock`: see above.
//!
//! A segment the cursor has gone through is deleted. Memory does not grow with the
//! queue: a few numbers per segment, and one record at a time when reading (payloads are
//! at most [`MAX_RECORD_BYTES`], 64 MiB, and a quarter of the cap; `push` refuses more
//! with [`QueueError::TooLarge`]). Opening reads every segment once through a 64 KiB
//! buffer.
//!
//! # Size cap
//!
//! `max_bytes` bounds the segment files on disk (the consumed part of the oldest one
//! included). A push that would pass it first drops the oldest whole segments, with
//! their unacknowledged records, counted in `dropped_records`/`dropped_bytes` (a warning
//! is logged when dropping starts, again after the queue has drained). Segments are at
//! most a quarter of the cap, so a drop loses at most a quarter of it at once.
//!
//! # What survives which crash
//!
//! Process crash (`kill -9`, panic, OOM): every `push` that returned `Ok` is kept and no
//! acknowledged record comes back (data and cursor are in the page cache as soon as the
//! call returns). A push interrupted mid-write leaves a torn record at the end of the
//! newest segment: `open` finds it (length or checksum) and truncates it away, counting
//! it as one dropped record.
//!
//! Power loss or kernel crash: with [`SyncPolicy::EveryPush`] (the default) every `push`
//! that returned `Ok` is kept. Its cost is one `fdatasync` per push, measured at 0.25 to
//! 5 ms on the development machine (`benches/disk_queue.rs`): nothing at the forwarder's
//! few batches per second per pipeline. With [`SyncPolicy::Interval`] the records
//! pushed since the last sync may be lost (whole records only: a partly written one is
//! cut off as above); syncs happen on pushes, so a caller wanting a bound on that window
//! when pushes stop calls [`DiskQueue::sync`] on a timer. Segments are synced before a
//! roll, the directory after creating one. The cursor is not synced per
//! acknowledgement (only by [`DiskQueue::sync`] and on drop), so after a power loss
//! records acknowledged in the last seconds (until the kernel's writeback, ~30 s) may be
//! delivered again: at least once, never lost.
//!
//! Damage found later (a bit flipped on disk): a record whose payload fails its
//! checksum is skipped and counted as dropped; a damaged header makes the rest of its
//! segment unreadable, which is skipped and counted (its records, from the count made
//! at open; when `open` meets the damage itself it cannot count the records behind it
//! and counts one, with all the bytes). A damaged cursor file restarts at the oldest
//! segment (delivered again). Nothing panics on bad data.

mod cursor;
mod error;
mod housekeeping;
mod lock;
mod open;
mod record;
mod segment;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crash;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cursor::{CursorFile, Position};
use error::io_err;
use record::{encode_header, record_len};
use segment::Segment;

pub(crate) use error::QueueError;
pub(crate) use record::{Record, RecordId, HEADER_LEN};

/// `STS_QUEUE_MAX_BYTES` default: 512 MiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 512 << 20;
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;
/// Smallest cap `open` accepts.
pub(crate) const MIN_MAX_BYTES: u64 = 64 << 10;
const MIN_SEGMENT_BYTES: u64 = 4 << 10;

/// When pushed records are forced to disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Before `push` returns.
    EveryPush,
    /// By the first `push` at least this long after the previous sync (and by `sync`,
    /// segment rolls and drop).
    Interval(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Cap on the segment files; at least [`MIN_MAX_BYTES`].
    pub max_bytes: u64,
    /// Roll size; kept between 4 KiB and a quarter of `max_bytes`.
    pub segment_bytes: u64,
    pub sync: SyncPolicy,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync: SyncPolicy::EveryPush,
        }
    }
}

/// Counts since `open` for the dropped figures; the others are the current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records pushed and not yet acknowledged (nor dropped).
    pub(crate) records: u64,
    /// Their bytes on disk, headers included.
    pub(crate) bytes: u64,
    /// Size of the segment files: what the cap bounds.
    pub disk_bytes: u64,
    /// Records lost to the cap, to damage, or torn by a crash.
    pub(crate) dropped_records: u64,
    pub(crate) dropped_bytes: u64,
}

#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    /// As given, `segment_bytes` clamped.
    opts: QueueOptions,
    record_limit: usize,
    /// Oldest first; never empty. The front holds the cursor, the back is written.
    segments: VecDeque<Segment>,
    cursor: Position,
    cursor_file: CursorFile,
    writer: File,
    /// Read handle of the front segment.
    reader: Option<(u64, File)>,
    stats: QueueStats,
    last_sync: Instant,
    /// Cap drops have been logged since the queue was last empty.
    cap_warned: bool,
    _lock: lock::DirLock,
}

impl DiskQueue {
    /// Appends a record. Refuses a payload over [`DiskQueue::max_record_bytes`]; may drop
    /// the oldest segments to stay under the cap.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), QueueError> {
        self.push_parts(&[payload])
    }

    /// Appends one record made of `parts` in order, written as they are (no copy into one
    /// buffer); as [`DiskQueue::push`] otherwise.
    pub fn push_parts(&mut self, parts: &[&[u8]]) -> Result<(), QueueError> {
        self.append(parts)?;
        self.after_push()
    }

    /// Appends several records, each made of its parts, then syncs once as the policy
    /// says: one `fdatasync` for all of them with [`SyncPolicy::EveryPush`]. Each record's
    /// outcome, in order; a refused one leaves the others in.
    pub(crate) fn push_many(&mut self, records: &[&[&[u8]]]) -> Vec<Result<(), QueueError>> {
        let mut outcomes: Vec<Result<(), QueueError>> =
            records.iter().map(|parts| self.append(parts)).collect();
        if outcomes.iter().any(Result::is_ok) {
            if let Err(e) = self.after_push() {
                // Written but not known to be on disk: none of them counts as kept.
                let text = e.to_string();
                for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *o = Err(QueueError::Io {
                        path: self.dir.clone(),
                        op: "sync",
                        source: std::io::Error::other(text.clone()),
                    });
                }
            }
        }
        outcomes
    }

    fn after_push(&mut self) -> Result<(), QueueError> {
        match self.opts.sync {
            SyncPolicy::EveryPush => self.sync_writer(),
            SyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
            SyncPolicy::Interval(_) => Ok(()),
        }
    }

    /// Writes one record, unsynced.
    fn append(&mut self, parts: &[&[u8]]) -> Result<(), QueueError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.record_limit {
            return Err(QueueError::TooLarge {
                len,
                limit: self.record_limit,
            });
        }
        let need = HEADER_LEN as u64 + len as u64;
        let size = self.write_segment().size;
        if size > 0 && size + need > self.opts.segment_bytes {
            self.roll()?;
        }
        self.make_room(need)?;
        let at = self.write_segment().size;
        let mut written = self.writer.write_all_at(&encode_header(parts), at);
        let mut offset = at + HEADER_LEN as u64;
        for part in parts {
            written = written.and_then(|()| self.writer.write_all_at(part, offset));
            offset += part.len() as u64;
        }
        if let Err(e) = written {
            let path = self.segment_path(self.write_segment().id);
            // Leave no partial record. Should this fail too, the next push overwrites it
            // (writes go at the recorded size) and a reopen would cut it off.
            if let Err(e) = self.writer.set_len(at) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot cut off a failed write");
            }
            return Err(io_err(path, "write")(e));
        }
        let back = self.segments.back_mut().expect("never empty");
        back.size += need;
        back.end = back.size;
        back.records += 1;
        self.stats.records += 1;
        self.stats.bytes += need;
        self.stats.disk_bytes += need;
        Ok(())
    }

    /// The oldest record, left in the queue until [`DiskQueue::ack`]. Records found
    /// damaged on the way are skipped and counted as dropped.
    pub fn peek(&mut self) -> Result<Option<Record>, QueueError> {
        loop {
            self.retire_consumed()?;
            let head = &self.segments[0];
            let (segment, at, end) = (head.id, self.cursor.offset, head.end);
            if at >= end {
                debug_assert_eq!(self.stats.records, 0);
                self.cap_warned = false;
                return Ok(None);
            }
            let path = self.segment_path(segment);
            let file = self.reader_for(segment)?;
            let mut h = [0u8; HEADER_LEN];
            let header = match read_exact_at(file, &mut h, at) {
                Ok(true) => record::decode_header(&h),
                Ok(false) => None,
                Err(e) => return Err(io_err(path, "read")(e)),
            };
            let Some(header) = header.filter(|h| at + h.record_len() <= end) else {
                self.skip_rest_of_head("damaged record header")?;
                continue;
            };
            let mut payload = vec![0u8; header.len as usize];
            match read_exact_at(file, &mut payload, at + HEADER_LEN as u64) {
                Ok(true) => {}
                Ok(false) => {
                    self.skip_rest_of_head("segment shorter than when opened")?;
                    continue;
                }
                Err(e) => return Err(io_err(path, "read")(e)),
            }
            if crc32fast::hash(&payload) != header.crc {
                self.skip_head_record(header.record_len())?;
                continue;
            }
            let id = RecordId {
                segment,
                offset: at,
                len: header.len,
            };
            return Ok(Some(Record { id, payload }));
        }
    }

    /// Calls `visit` with the first `prefix` bytes (all of a shorter payload) of every
    /// record not yet acknowledged, oldest first, leaving the queue as it is. Payload
    /// checksums are not verified (a prefix cannot be); a damaged header ends the walk of
    /// its segment, as it ends reading there. Memory: one prefix.
    pub(crate) fn scan_pending(
        &self,
        prefix: usize,
        mut visit: impl FnMut(&[u8]),
    ) -> Result<(), QueueError> {
        let mut buf = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            let path = self.segment_path(segment.id);
            let file = File::open(&path).map_err(io_err(&path, "open"))?;
            let mut at = if i == 0 { self.cursor.offset } else { 0 };
            while at < segment.end {
                let mut h = [0u8; HEADER_LEN];
                let header = match read_exact_at(&file, &mut h, at) {
                    Ok(true) => record::decode_header(&h),
                    Ok(false) => None,
                    Err(e) => return Err(io_err(&path, "read")(e)),
                };
                let Some(header) = header.filter(|h| at + h.record_len() <= segment.end) else {
                    break;
                };
                buf.resize(prefix.min(header.len as usize), 0);
                match read_exact_at(&file, &mut buf, at + HEADER_LEN as u64) {
                    Ok(true) => visit(&buf),
                    Ok(false) => break,
                    Err(e) => return Err(io_err(&path, "read")(e)),
                }
                at += header.record_len();
            }
        }
        Ok(())
    }

    /// Removes the oldest record, which `id` must name. `Ok(false)` if it is gone
    /// already (acknowledged before, or dropped by the cap since `peek`).
    pub fn ack(&mut self, id: RecordId) -> Result<bool, QueueError> {
        let at = Position {
            segment: id.segment,
            offset: id.offset,
        };
        if at < self.cursor {
            return Ok(false);
        }
        let len = record_len(id.len);
        if at != self.cursor || at.offset + len > self.segments[0].end {
            return Err(QueueError::OutOfOrder { id });
        }
        self.consume_head(1, len)?;
        Ok(true)
    }

    /// Forces pushed records and the cursor to disk.
    pub(crate) fn sync(&mut self) -> Result<(), QueueError> {
        self.sync_writer()?;
        self.cursor_file
            .sync()
            .map_err(io_err(self.dir.join("cursor"), "sync"))
    }

    pub fn len(&self) -> u64 {
        self.stats.records
    }

    pub fn is_empty(&self) -> bool {
        self.stats.records == 0
    }

    /// Bytes of the unacknowledged records on disk, headers included.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.stats.bytes
    }

    pub fn dropped_records(&self) -> u64 {
        self.stats.dropped_records
    }

    #[cfg(test)]
    pub(crate) fn dropped_bytes(&self) -> u64 {
        self.stats.dropped_bytes
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Largest payload `push` takes: [`MAX_RECORD_BYTES`] or a quarter of the cap.
    #[cfg(test)]
    pub(crate) fn max_record_bytes(&self) -> usize {
        self.record_limit
    }

    fn write_segment(&self) -> &Segment {
        self.segments.back().expect("never empty")
    }

    fn sync_writer(&mut self) -> Result<(), QueueError> {
        if let Err(e) = self.writer.sync_data() {
            return Err(io_err(self.segment_path(self.write_segment().id), "sync")(
                e,
            ));
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    fn reader_for(&mut self, segment: u64) -> Result<&File, QueueError> {
        if self.reader.as_ref().map(|(id, _)| *id) != Some(segment) {
            let path = self.segment_path(segment);
            let file = File::open(&path).map_err(io_err(&path, "open"))?;
            self.reader = Some((segment, file));
        }
        Ok(&self.reader.as_ref().expect("just set").1)
    }
}

// The forwarder moves queues into `spawn_blocking`.
const _: fn() = || {
    fn send<T: Send + Sync + 'static>() {}
    send::<DiskQueue>();
};

impl Drop for DiskQueue {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "disk queue: sync on close failed");
        }
    }
}

/// `Ok(false)` when the file ends first.
fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, at) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}
