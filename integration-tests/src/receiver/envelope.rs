//! The process agent's message envelope ("agent-payload" `MessageHeader`) in front of the
//! protobuf body on `/api/v1/collector`.
//!
//! Layout (DataDog/agent-payload `process/message.go`, StackVista's copy in
//! `stackstate-process-agent/model/message.go`): byte 0 version, byte 1 encoding, byte 2
//! message type, byte 3 subscription id; version 2 adds an `i32` org id (bytes 4..8);
//! version 3 adds an `i64` timestamp in milliseconds (bytes 8..16). So the header is 4, 8
//! or 16 bytes. DataDog writes the multi-byte fields little-endian; StackState's writer
//! (`encodeHeaderV3`) writes them big-endian while its reader reads little-endian. Both
//! readings are kept here.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Encodings: 0 protobuf, 1 JSON, 2 zstd-compressed protobuf, 4 zstd 1.x protobuf.
pub const ENCODING_PROTOBUF: u8 = 0;
pub const ENCODING_JSON: u8 = 1;
pub const ENCODING_ZSTD_PB: u8 = 2;
pub const ENCODING_ZSTD1X_PB: u8 = 4;

/// Message types the process agent family sends.
pub const TYPE_COLLECTOR_PROC: u8 = 12;
pub const TYPE_COLLECTOR_COMMANDS: u8 = 13;
pub const TYPE_COLLECTOR_CONNECTIONS: u8 = 22;
pub const TYPE_COLLECTOR_REAL_TIME: u8 = 27;
pub const TYPE_COLLECTOR_CONTAINER: u8 = 39;
pub const TYPE_COLLECTOR_CONTAINER_REAL_TIME: u8 = 40;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    pub encoding: u8,
    pub msg_type: u8,
    pub subscription_id: u8,
    /// Version 2 and 3 only; little-endian (DataDog) and big-endian (StackState writer).
    pub org_id_le: Option<i32>,
    pub org_id_be: Option<i32>,
    /// Version 3 only, epoch milliseconds; both byte orders, as for the org id.
    pub timestamp_le: Option<i64>,
    pub timestamp_be: Option<i64>,
    /// Header length in bytes: the message starts here.
    pub header_len: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("collector body of {0} bytes is too short for a message header")]
    TooShort(usize),
    #[error("unknown message version {0}")]
    Version(u8),
}

impl Envelope {
    pub fn parse(data: &[u8]) -> Result<Self, EnvelopeError> {
        // The Go reader refuses anything of 4 bytes or less, even a V1 header alone.
        if data.len() <= 4 {
            return Err(EnvelopeError::TooShort(data.len()));
        }
        let header_len = match data[0] {
            1 => 4,
            2 => 8,
            3 => 16,
            v => return Err(EnvelopeError::Version(v)),
        };
        if data.len() < header_len {
            return Err(EnvelopeError::TooShort(data.len()));
        }
        let org: Option<[u8; 4]> = (header_len >= 8).then(|| data[4..8].try_into().unwrap());
        let ts: Option<[u8; 8]> = (header_len >= 16).then(|| data[8..16].try_into().unwrap());
        Ok(Self {
            version: data[0],
            encoding: data[1],
            msg_type: data[2],
            subscription_id: data[3],
            org_id_le: org.map(i32::from_le_bytes),
            org_id_be: org.map(i32::from_be_bytes),
            timestamp_le: ts.map(i64::from_le_bytes),
            timestamp_be: ts.map(i64::from_be_bytes),
            header_len,
        })
    }

    /// A version 3 header as StackState's process agent writes it (big-endian fields).
    pub fn encode_v3_stackstate(encoding: u8, msg_type: u8, timestamp_ms: i64) -> Vec<u8> {
        let mut out = vec![3, encoding, msg_type, 0];
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_version() {
        let v1 = Envelope::parse(&[1, 0, 12, 0, 0xAA]).unwrap();
        assert_eq!((v1.version, v1.msg_type, v1.header_len), (1, 12, 4));
        assert_eq!(v1.timestamp_be, None);

        let mut v2 = vec![2, 1, 22, 5];
        v2.extend_from_slice(&7i32.to_le_bytes());
        v2.push(0);
        let v2 = Envelope::parse(&v2).unwrap();
        assert_eq!((v2.encoding, v2.org_id_le, v2.header_len), (1, Some(7), 8));

        let mut v3 = Envelope::encode_v3_stackstate(ENCODING_ZSTD_PB, 27, 1_700_000_000_123);
        v3.push(1);
        let v3 = Envelope::parse(&v3).unwrap();
        assert_eq!(v3.timestamp_be, Some(1_700_000_000_123));
        assert_eq!(v3.org_id_be, Some(0));
        assert_eq!((v3.msg_type, v3.header_len), (27, 16));
    }

    #[test]
    fn refuses_short_and_unknown() {
        assert_eq!(
            Envelope::parse(&[1, 0, 12, 0]),
            Err(EnvelopeError::TooShort(4))
        );
        assert_eq!(
            Envelope::parse(&[3, 0, 12, 0, 0, 0]),
            Err(EnvelopeError::TooShort(6))
        );
        assert_eq!(
            Envelope::parse(&[9, 0, 12, 0, 0]),
            Err(EnvelopeError::Version(9))
        );
    }
}
