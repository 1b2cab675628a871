//! Moving the cursor, rolling, deleting and dropping segments.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{debug, warn};

use super::cursor::Position;
use super::error::{io_err, QueueError};
use super::segment::{file_name, Segment};
use super::DiskQueue;

impl DiskQueue {
    pub(super) fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(file_name(id))
    }

    pub(super) fn store_cursor(&mut self) -> Result<(), QueueError> {
        self.cursor_file
            .store(self.cursor)
            .map_err(io_err(self.dir.join("cursor"), "write"))
    }

    /// Moves the cursor over `records` records (`bytes` with headers) of the front
    /// segment, which hold that many.
    pub(super) fn consume_head(&mut self, records: u64, bytes: u64) -> Result<(), QueueError> {
        let head = &mut self.segments[0];
        head.records -= records;
        self.stats.records -= records;
        self.stats.bytes -= bytes;
        self.cursor.offset += bytes;
        self.store_cursor()?;
        self.retire_consumed()
    }

    /// The record at the cursor has a damaged payload; its header is intact.
    pub(super) fn skip_head_record(&mut self, len: u64) -> Result<(), QueueError> {
        warn!(
            segment = %self.segment_path(self.cursor.segment).display(),
            offset = self.cursor.offset,
            bytes = len,
            "disk queue: record fails its checksum; skipped, counted as dropped"
        );
        self.count_dropped(1, len);
        self.consume_head(1, len)
    }

    /// Nothing after the cursor in the front segment can be located.
    pub(super) fn skip_rest_of_head(&mut self, why: &str) -> Result<(), QueueError> {
        let head = &self.segments[0];
        let (records, bytes) = (head.records, head.end - self.cursor.offset);
        warn!(
            segment = %self.segment_path(head.id).display(),
            offset = self.cursor.offset,
            records,
            bytes,
            "disk queue: {why}; rest of the segment skipped, counted as dropped"
        );
        self.count_dropped(records, bytes);
        self.consume_head(records, bytes)
    }

    /// Deletes the sealed segments the cursor has gone through.
    pub(super) fn retire_consumed(&mut self) -> Result<(), QueueError> {
        while self.segments.len() > 1 && self.cursor.offset >= self.segments[0].end {
            let old = self.segments.pop_front().expect("len > 1");
            debug_assert_eq!(old.records, 0);
            self.cursor = Position {
                segment: self.segments[0].id,
                offset: 0,
            };
            // Cursor first: a crash in between leaves a segment before the cursor, which
            // open deletes; the other order could point the cursor at a missing segment.
            self.store_cursor()?;
            self.delete(&old);
        }
        Ok(())
    }

    fn delete(&mut self, old: &Segment) {
        self.stats.disk_bytes -= old.size;
        if self.reader.as_ref().is_some_and(|(id, _)| *id == old.id) {
            self.reader = None;
        }
        let path = self.segment_path(old.id);
        match fs::remove_file(&path) {
            Ok(()) => debug!(segment = %path.display(), "disk queue: segment deleted"),
            // Deleted at the next open (it is before the cursor).
            Err(e) => {
                warn!(segment = %path.display(), error = %e, "disk queue: cannot delete a consumed segment")
            }
        }
    }

    /// Seals the written segment (synced) and starts the next one.
    pub(super) fn roll(&mut self) -> Result<(), QueueError> {
        self.sync_writer()?;
        let id = self.write_segment().id + 1;
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        sync_dir(&self.dir)?;
        debug!(segment = %path.display(), "disk queue: new segment");
        self.segments.push_back(Segment {
            id,
            size: 0,
            end: 0,
            records: 0,
        });
        self.writer = file;
        self.last_sync = Instant::now();
        self.retire_consumed()
    }

    /// Drops the oldest segments until `need` more bytes fit under the cap.
    pub(super) fn make_room(&mut self, need: u64) -> Result<(), QueueError> {
        while self.stats.disk_bytes + need > self.opts.max_bytes {
            if self.segments.len() > 1 {
                self.drop_oldest()?;
            } else if self.segments[0].size > 0 {
                self.roll()?;
            } else {
                break;
            }
        }
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<(), QueueError> {
        let old = self.segments.pop_front().expect("len > 1");
        let bytes = old.end.saturating_sub(self.cursor.offset);
        if !self.cap_warned {
            self.cap_warned = true;
            warn!(
                dir = %self.dir.display(),
                cap = self.opts.max_bytes,
                "disk queue full: dropping the oldest records (counted; logged again after the queue has drained)"
            );
        }
        debug!(
            segment = old.id,
            records = old.records,
            bytes,
            "disk queue: segment dropped"
        );
        self.count_dropped(old.records, bytes);
        self.stats.records -= old.records;
        self.stats.bytes -= bytes;
        self.cursor = Position {
            segment: self.segments[0].id,
            offset: 0,
        };
        self.store_cursor()?;
        self.delete(&old);
        self.retire_consumed()
    }

    pub(super) fn count_dropped(&mut self, records: u64, bytes: u64) {
        self.stats.dropped_records += records;
        self.stats.dropped_bytes += bytes;
    }
}

/// Makes a created or removed name durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "sync"))
}
