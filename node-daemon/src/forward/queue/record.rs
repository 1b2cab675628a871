//! The on-disk record: a 16-byte header and the payload.
//!
//! ```text
//! 0   magic  "SQR1"
//! 4   payload length, u32 little-endian
//! 8   CRC-32 of the payload, u32 LE
//! 12  CRC-32 of bytes 0..12, u32 LE
//! 16  payload
//! ```
//!
//! The header has its own checksum so that a damaged payload (the record is skipped,
//! the next one is where the header says) can be told from a damaged header (nothing
//! after it in the segment can be located).

use std::fmt;

pub(crate) const HEADER_LEN: usize = 16;
const MAGIC: [u8; 4] = *b"SQR1";

/// The largest payload the format accepts; a header announcing more is damaged. `push`
/// may refuse smaller ones (a quarter of the queue's cap).
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

/// A header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl Header {
    /// Header and payload.
    pub(crate) fn record_len(&self) -> u64 {
        record_len(self.len)
    }
}

pub(super) fn record_len(payload_len: u32) -> u64 {
    HEADER_LEN as u64 + u64::from(payload_len)
}

/// The header of the payload made of `parts` in order, which must be at most
/// `MAX_RECORD_BYTES` long together (checked by the caller).
pub(super) fn encode_header(parts: &[&[u8]]) -> [u8; HEADER_LEN] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).expect("payload length checked by the caller");
    let mut crc = crc32fast::Hasher::new();
    parts.iter().for_each(|p| crc.update(p));
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
    let hcrc = crc32fast::hash(&h[0..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// `None` for anything but an intact header of a record within the format's limit.
pub(super) fn decode_header(h: &[u8; HEADER_LEN]) -> Option<Header> {
    if h[0..4] != MAGIC || crc32fast::hash(&h[0..12]) != le_u32(&h[12..16]) {
        return None;
    }
    let len = le_u32(&h[4..8]);
    if len as usize > MAX_RECORD_BYTES {
        return None;
    }
    Some(Header {
        len,
        crc: le_u32(&h[8..12]),
    })
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Where a record is: only `DiskQueue::peek` makes one, `DiskQueue::ack` takes it back.
/// Ordered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) len: u32,
}

impl RecordId {
    /// Payload length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// The oldest record of the queue, still in it until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_every_damaged_byte_is_refused() {
        let payload = b"hello queue";
        let h = encode_header(&[payload]);
        assert_eq!(
            h,
            encode_header(&[b"hello", b"", b" queue"]),
            "parts make one payload"
        );
        let decoded = decode_header(&h).expect("intact header");
        assert_eq!(decoded.len, payload.len() as u32);
        assert_eq!(decoded.crc, crc32fast::hash(payload));
        assert_eq!(decoded.record_len(), 16 + payload.len() as u64);
        for i in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut bad = h;
                bad[i] ^= 1 << bit;
                assert_eq!(decode_header(&bad), None, "byte {i} bit {bit} flipped");
            }
        }
        assert_eq!(decode_header(&[0; HEADER_LEN]), None);
    }

    #[test]
    fn header_announcing_more_than_the_format_limit_is_refused() {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
        let hcrc = crc32fast::hash(&h[0..12]);
        h[12..16].copy_from_slice(&hcrc.to_le_bytes());
        assert_eq!(decode_header(&h), None);
    }
}
