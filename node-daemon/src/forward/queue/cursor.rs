//! The read cursor: where the oldest unacknowledged record starts.
//!
//! The `cursor` file has two 32-byte slots, written alternately in place (one `pwrite`
//! per acknowledgement, no temporary file, no rename):
//!
//! ```text
//! 0   magic "SQC1"
//! 4   generation, u64 LE (each store adds one; slot = generation % 2)
//! 12  segment id, u64 LE
//! 20  offset in the segment, u64 LE
//! 28  CRC-32 of bytes 0..28, u32 LE
//! ```
//!
//! On open the intact slot with the higher generation wins. A store torn by a crash
//! leaves the other slot, one acknowledgement older: that record is delivered again,
//! none is lost. With both slots damaged the queue starts over at its oldest segment.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"SQC1";

/// A place in the queue: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

/// What the file held when opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stored {
    /// No file, or an empty one: a new queue.
    None,
    /// Bytes, but no intact slot.
    Damaged,
    At(Position),
}

#[derive(Debug)]
pub(super) struct CursorFile {
    file: File,
    generation: u64,
}

impl CursorFile {
    pub(crate) fn open(path: &Path) -> io::Result<(CursorFile, Stored)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = [0u8; 2 * SLOT_LEN];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let best = buf[..got]
            .chunks_exact(SLOT_LEN)
            .filter_map(decode)
            .max_by_key(|(generation, _)| *generation);
        let stored = match best {
            Some((_, pos)) => Stored::At(pos),
            None if got == 0 => Stored::None,
            None => Stored::Damaged,
        };
        let generation = best.map_or(0, |(g, _)| g);
        Ok((CursorFile { file, generation }, stored))
    }

    /// Overwrites the older slot. Not synced: see `sync`.
    pub(crate) fn store(&mut self, pos: Position) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = encode(generation, pos);
        self.file
            .write_all_at(&slot, (generation % 2) * SLOT_LEN as u64)?;
        self.generation = generation;
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn encode(generation: u64, pos: Position) -> [u8; SLOT_LEN] {
    let mut s = [0u8; SLOT_LEN];
    s[0..4].copy_from_slice(&MAGIC);
    s[4..12].copy_from_slice(&generation.to_le_bytes());
    s[12..20].copy_from_slice(&pos.segment.to_le_bytes());
    s[20..28].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&s[0..28]);
    s[28..32].copy_from_slice(&crc.to_le_bytes());
    s
}

fn decode(s: &[u8]) -> Option<(u64, Position)> {
    let u64_at = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(s[28..32].try_into().expect("4 bytes"));
    if s[0..4] != MAGIC || crc32fast::hash(&s[0..28]) != crc {
        return None;
    }
    Some((
        u64_at(4),
        Position {
            segment: u64_at(12),
            offset: u64_at(20),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    #[test]
    fn stores_survive_reopen_and_a_torn_slot_falls_back_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let (mut c, stored) = CursorFile::open(&path).unwrap();
        assert_eq!(stored, Stored::None);
        c.store(pos(1, 100)).unwrap();
        c.store(pos(1, 200)).unwrap();
        c.store(pos(2, 16)).unwrap();
        drop(c);
        let (mut c, stored) = CursorFile::open(&path).unwrap();
        assert_eq!(stored, Stored::At(pos(2, 16)));
        // The generation carries on: the next store replaces the older slot.
        c.store(pos(2, 48)).unwrap();
        drop(c);
        assert_eq!(CursorFile::open(&path).unwrap().1, Stored::At(pos(2, 48)));

        // Damage the newest slot (generation 4, slot 0): the previous one is used.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(CursorFile::open(&path).unwrap().1, Stored::At(pos(2, 16)));

        // Both damaged: reported as such, not as a new queue.
        bytes[32 + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(CursorFile::open(&path).unwrap().1, Stored::Damaged);
    }
}
