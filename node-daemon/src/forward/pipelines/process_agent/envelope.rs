//! The process agent's message framing: a 16-byte version 3 header written big-endian,
//! then the protobuf message compressed with zstd (encoding 2).

/// Message types of the receiver's process agent endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    CollectorProc = 12,
    CollectorCommands = 13,
    CollectorConnections = 22,
}

pub(crate) const VERSION: u8 = 3;
pub(crate) const ENCODING_ZSTD_PROTOBUF: u8 = 2;
pub(crate) const HEADER_LEN: usize = 16;

/// zstd's first fast level: on a cycle of 2,000 processes and 10,000 connections it takes
/// about three quarters of level 1's time for 7% more bytes; the faster levels below it
/// save little more time and cost far more bytes (`benches/forward_cost.rs`).
pub(crate) const ZSTD_LEVEL: i32 = -1;

#[derive(Debug, thiserror::Error)]
#[error("zstd: {0}")]
pub struct CompressError(#[from] std::io::Error);

/// Writes envelopes, keeping one zstd context from message to message.
pub struct EnvelopeWriter {
    compressor: zstd::bulk::Compressor<'static>,
}

impl EnvelopeWriter {
    pub(crate) fn new() -> Result<Self, CompressError> {
        Self::with_level(ZSTD_LEVEL)
    }

    /// At another zstd level (the benchmark compares them).
    pub fn with_level(level: i32) -> Result<Self, CompressError> {
        Ok(Self {
            compressor: zstd::bulk::Compressor::new(level)?,
        })
    }

    /// The header for `kind` at `timestamp_ms`, then `message` compressed.
    pub fn write(
        &mut self,
        kind: MessageType,
        timestamp_ms: i64,
        message: &[u8],
    ) -> Result<Vec<u8>, CompressError> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + zstd::zstd_safe::compress_bound(message.len()));
        out.extend_from_slice(&header(kind, timestamp_ms));
        let start = out.len();
        out.resize(out.capacity(), 0);
        let written = self
            .compressor
            .compress_to_buffer(message, &mut out[start..])?;
        out.truncate(start + written);
        Ok(out)
    }
}

/// Version, encoding, message type, subscription id 0, org id 0 (i32), timestamp (i64 ms).
pub(crate) fn header(kind: MessageType, timestamp_ms: i64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1] = ENCODING_ZSTD_PROTOBUF;
    h[2] = kind as u8;
    h[4..8].copy_from_slice(&0i32.to_be_bytes());
    h[8..16].copy_from_slice(&timestamp_ms.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_big_endian_v3_and_the_body_decompresses() {
        let mut writer = EnvelopeWriter::new().unwrap();
        let message = b"protobuf bytes ".repeat(40);
        let body = writer
            .write(
                MessageType::CollectorConnections,
                0x0102_0304_0506,
                &message,
            )
            .unwrap();
        assert_eq!(&body[..4], &[3, 2, 22, 0]);
        assert_eq!(&body[4..8], &[0, 0, 0, 0]);
        assert_eq!(&body[8..16], &[0, 0, 1, 2, 3, 4, 5, 6]);
        assert!(body.len() < message.len(), "compressed");
        let back = zstd::bulk::decompress(&body[16..], message.len()).unwrap();
        assert_eq!(back, message);
        let again = writer.write(MessageType::CollectorProc, 1, b"").unwrap();
        assert_eq!(again[2], 12);
        assert!(zstd::bulk::decompress(&again[16..], 16).unwrap().is_empty());
    }
}
