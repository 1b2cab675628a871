//! Protobuf written field by field into one buffer, for the messages that carry many small
//! items (connections): no message structs and none of their strings are built on the way.
//! Zero values are left out, as proto3 encoders do.

use prost::encoding::{encode_key, encode_varint, WireType};

pub(crate) fn string(buf: &mut Vec<u8>, tag: u32, value: &str) {
    if value.is_empty() {
        return;
    }
    bytes(buf, tag, value.as_bytes());
}

pub(crate) fn bytes(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(value.len() as u64, buf);
    buf.extend_from_slice(value);
}

/// `int32`, `int64`, `uint32`, enums: negative numbers take ten bytes, as in proto3.
pub(crate) fn int(buf: &mut Vec<u8>, tag: u32, value: i64) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(value as u64, buf);
    }
}

pub(crate) fn float(buf: &mut Vec<u8>, tag: u32, value: f32) {
    if value != 0.0 {
        encode_key(tag, WireType::ThirtyTwoBit, buf);
        buf.extend_from_slice(&value.to_le_bytes());
    }
}

/// A `double` even when 0 (a oneof member is written when set).
pub(crate) fn double_always(buf: &mut Vec<u8>, tag: u32, value: f64) {
    encode_key(tag, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// A nested message (or string) written by `write`, its length in front of it: one byte
/// is kept for it, and the content moved only when it is 128 bytes or more.
pub(crate) fn message(buf: &mut Vec<u8>, tag: u32, write: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, buf);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let mut len = (buf.len() - at - 1) as u64;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let mut prefix = [0u8; 10];
    let mut n = 0;
    while len >= 0x80 {
        prefix[n] = (len as u8 & 0x7f) | 0x80;
        len >>= 7;
        n += 1;
    }
    prefix[n] = len as u8;
    n += 1;
    buf[at] = prefix[0];
    buf.extend_from_slice(&prefix[1..n]);
    buf[at + 1..].rotate_right(n - 1);
}

/// Decimal digits of `n`, without the formatting machinery.
pub(crate) fn decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// An IP address as text (dotted quad, or IPv6 as Rust writes it).
pub(crate) fn ip(buf: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                decimal(buf, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(buf, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_nested_content_gets_a_longer_length() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let mut buf = vec![0xAA];
            message(&mut buf, 3, |b| b.extend(std::iter::repeat_n(7u8, len)));
            let mut expected = vec![0xAA, 3 << 3 | 2];
            encode_varint(len as u64, &mut expected);
            expected.extend(std::iter::repeat_n(7u8, len));
            assert_eq!(buf, expected, "{len}");
        }
    }

    #[test]
    fn numbers_and_addresses_as_text() {
        let mut buf = Vec::new();
        decimal(&mut buf, 0);
        buf.push(b' ');
        decimal(&mut buf, 4_026_531_840);
        buf.push(b' ');
        ip(&mut buf, "10.0.255.7".parse().unwrap());
        buf.push(b' ');
        ip(&mut buf, "fd00::1".parse().unwrap());
        assert_eq!(buf, b"0 4026531840 10.0.255.7 fd00::1");
    }
}
