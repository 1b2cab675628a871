//! Opening a queue: lock, cursor, one scan of every segment, and repair of what a
//! crash left (a torn record at the end of the newest segment, consumed segments not
//! yet deleted, a cursor inside a record).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::cursor::{CursorFile, Position, Stored};
use super::error::{io_err, QueueError};
use super::housekeeping::sync_dir;
use super::record::{HEADER_LEN, MAX_RECORD_BYTES};
use super::segment::{self, file_name, Segment, Stop};
use super::{DiskQueue, QueueOptions, QueueStats, MIN_MAX_BYTES, MIN_SEGMENT_BYTES};

impl DiskQueue {
    /// Opens (creating it if needed) the queue in `dir` with a cap of `max_bytes` and
    /// the other options at their defaults.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DiskQueue, QueueError> {
        Self::open_with(
            dir,
            QueueOptions {
                max_bytes,
                ..QueueOptions::default()
            },
        )
    }

    pub fn open_with(dir: &Path, options: QueueOptions) -> Result<DiskQueue, QueueError> {
        let opts = effective(dir, options)?;
        fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
        let lock = super::lock::lock(dir)?;
        let cursor_path = dir.join("cursor");
        let (cursor_file, stored) =
            CursorFile::open(&cursor_path).map_err(io_err(&cursor_path, "open"))?;
        let stored = match stored {
            Stored::At(pos) => Some(pos),
            Stored::None => None,
            Stored::Damaged => {
                warn!(file = %cursor_path.display(), "disk queue: read cursor damaged; delivering again from the oldest segment");
                None
            }
        };
        let mut ids = segment::list(dir).map_err(io_err(dir, "list"))?;
        if let Some(pos) = stored {
            // Consumed: a crash came between moving the cursor and deleting them.
            for &id in ids.iter().filter(|&&id| id < pos.segment) {
                let path = dir.join(file_name(id));
                match fs::remove_file(&path) {
                    Ok(()) => {
                        debug!(segment = %path.display(), "disk queue: consumed segment deleted")
                    }
                    Err(e) => {
                        warn!(segment = %path.display(), error = %e, "disk queue: cannot delete a consumed segment")
                    }
                }
            }
            ids.retain(|&id| id >= pos.segment);
        }
        let mut cursor = match (stored, ids.first()) {
            (Some(pos), Some(&first)) if pos.segment == first => pos,
            (_, Some(&first)) => Position {
                segment: first,
                offset: 0,
            },
            // A new id, above any the cursor may name (a stale slot must not point into it).
            (pos, None) => Position {
                segment: pos.map_or(0, |p| p.segment) + 1,
                offset: 0,
            },
        };

        let mut stats = QueueStats::default();
        let mut segments = VecDeque::with_capacity(ids.len().max(1));
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let seg = load(dir, id, newest, &mut cursor, &mut stats)?;
            segments.push_back(seg);
        }
        let writer = match segments.back() {
            Some(seg) => {
                let path = dir.join(file_name(seg.id));
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path, "open"))?
            }
            None => {
                let path = dir.join(file_name(cursor.segment));
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err(&path, "create"))?;
                sync_dir(dir)?;
                segments.push_back(Segment {
                    id: cursor.segment,
                    size: 0,
                    end: 0,
                    records: 0,
                });
                file
            }
        };

        let record_limit = (MAX_RECORD_BYTES as u64).min(opts.max_bytes / 4 - HEADER_LEN as u64);
        let mut queue = DiskQueue {
            dir: dir.to_path_buf(),
            opts,
            record_limit: record_limit as usize,
            segments,
            cursor,
            cursor_file,
            writer,
            reader: None,
            stats,
            last_sync: Instant::now(),
            cap_warned: false,
            _lock: lock,
        };
        queue.store_cursor()?;
        queue.retire_consumed()?;
        // The cap may have been lowered since the last run.
        queue.make_room(0)?;
        info!(
            dir = %dir.display(),
            records = queue.stats.records,
            bytes = queue.stats.bytes,
            segments = queue.segments.len(),
            "disk queue opened"
        );
        Ok(queue)
    }
}

fn effective(dir: &Path, mut o: QueueOptions) -> Result<QueueOptions, QueueError> {
    if o.max_bytes < MIN_MAX_BYTES {
        return Err(QueueError::InvalidOptions {
            dir: dir.to_path_buf(),
            reason: format!(
                "size cap of {} bytes is below the minimum of {MIN_MAX_BYTES}",
                o.max_bytes
            ),
        });
    }
    o.segment_bytes = o.segment_bytes.clamp(MIN_SEGMENT_BYTES, o.max_bytes / 4);
    Ok(o)
}

/// Scans segment `id`; moves the cursor back to a record boundary if it is inside a
/// record; cuts a torn tail off the newest segment; counts what cannot be read.
fn load(
    dir: &Path,
    id: u64,
    newest: bool,
    cursor: &mut Position,
    stats: &mut QueueStats,
) -> Result<Segment, QueueError> {
    let path = dir.join(file_name(id));
    let file = File::open(&path).map_err(io_err(&path, "open"))?;
    let holds_cursor = id == cursor.segment;
    let from = if holds_cursor { cursor.offset } else { 0 };
    // Payloads are verified in the newest segment only: it is the one a crash can tear,
    // and appending after a damaged record would hide the records behind it. Older
    // ones were synced when sealed; their payloads are checked when read.
    let scan = segment::scan(&file, from, newest).map_err(io_err(&path, "read"))?;
    if holds_cursor && scan.cursor != cursor.offset {
        warn!(
            segment = %path.display(),
            stored = cursor.offset,
            now = scan.cursor,
            "disk queue: read cursor not on a record boundary; moved back to one"
        );
        cursor.offset = scan.cursor;
    }
    let tail = scan.file_len - scan.end;
    let mut size = scan.file_len;
    if tail > 0 {
        stats.dropped_records += 1;
        stats.dropped_bytes += tail;
        if newest {
            warn!(
                segment = %path.display(),
                offset = scan.end,
                bytes = tail,
                reason = ?scan.stop,
                "disk queue: torn write at the end of the queue cut off, counted as one dropped record"
            );
            let rw = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "open"))?;
            rw.set_len(scan.end)
                .and_then(|()| rw.sync_data())
                .map_err(io_err(&path, "truncate"))?;
            size = scan.end;
        } else {
            warn!(
                segment = %path.display(),
                offset = scan.end,
                bytes = tail,
                reason = ?scan.stop,
                "disk queue: damaged segment, unreadable after this offset; counted as one dropped record"
            );
        }
    }
    debug_assert!(newest || scan.stop != Stop::BadPayload);
    stats.records += scan.records;
    stats.bytes += scan.end - if holds_cursor { cursor.offset } else { 0 };
    stats.disk_bytes += size;
    Ok(Segment {
        id,
        size,
        end: scan.end,
        records: scan.records,
    })
}
