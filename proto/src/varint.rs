//! Protobuf varints read where they lie, for the hand-written readers of both binaries (the
//! sidecar's OTLP reader and the daemon's relay batch reader).
//!
//! A varint is read as prost reads it: at most ten bytes, the tenth holding the 64th bit
//! only.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The bytes end inside it.
    Truncated,
    /// It is longer than ten bytes, or its tenth byte holds more than the 64th bit.
    TooLong,
}

impl VarintError {
    /// What is wrong, in words.
    pub fn what(self) -> &'static str {
        match self {
            VarintError::Truncated => "the message ends inside a varint",
            VarintError::TooLong => "a varint longer than 64 bits",
        }
    }
}

/// The varint at `buf[*at..]`; `at` moves past it. On an error `at` is left where it was.
#[inline(always)]
pub fn read(buf: &[u8], at: &mut usize) -> Result<u64, VarintError> {
    // Keys, lengths and enums: nearly always one byte.
    match buf.get(*at) {
        Some(&b) if b < 0x80 => {
            *at += 1;
            Ok(u64::from(b))
        }
        _ => read_multi_byte(buf, at),
    }
}

/// A varint of more than one byte (ids, times): unrolled while ten bytes are left.
#[inline(always)]
fn read_multi_byte(buf: &[u8], at: &mut usize) -> Result<u64, VarintError> {
    let Some(bytes) = buf.get(*at..*at + 10) else {
        return read_near_the_end(buf, at);
    };
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == 9 && b > 1 {
                break;
            }
            *at += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::TooLong)
}

/// A varint that starts less than ten bytes before the end.
#[inline(never)]
fn read_near_the_end(buf: &[u8], at: &mut usize) -> Result<u64, VarintError> {
    let rest = buf.get(*at..).unwrap_or_default();
    let mut value = 0u64;
    for (i, &b) in rest.iter().enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *at += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::{read, VarintError};

    fn encode(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    #[test]
    fn reads_what_prost_writes_with_or_without_bytes_after_it() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let bytes = encode(v);
            for tail in [0usize, 1, 12] {
                let mut buf = bytes.clone();
                buf.resize(bytes.len() + tail, 0);
                let mut at = 0;
                assert_eq!(read(&buf, &mut at), Ok(v), "{v} with {tail} bytes after");
                assert_eq!(at, bytes.len());
            }
        }
    }

    #[test]
    fn a_cut_varint_is_truncated_and_leaves_the_position() {
        let bytes = encode(u64::MAX);
        for len in 0..bytes.len() {
            let mut at = 0;
            assert_eq!(read(&bytes[..len], &mut at), Err(VarintError::Truncated));
            assert_eq!(at, 0);
        }
    }

    #[test]
    fn more_than_64_bits_is_too_long_however_many_bytes_follow() {
        let mut ten = vec![0xff; 9];
        ten.push(0x02);
        let mut eleven = vec![0x80; 10];
        eleven.push(0x01);
        for bytes in [ten.clone(), eleven.clone()] {
            for tail in [0usize, 12] {
                let mut buf = bytes.clone();
                buf.resize(bytes.len() + tail, 0);
                let mut at = 0;
                assert_eq!(read(&buf, &mut at), Err(VarintError::TooLong));
                assert_eq!(at, 0);
            }
        }
    }
}
