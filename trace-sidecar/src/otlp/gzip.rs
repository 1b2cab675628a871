//! gzip request bodies (RFC 1952; members one after another, as `gzip` concatenates them)
//! inflated within a bound: a few kilobytes of gzip can inflate to gigabytes, so inflating
//! stops one byte past the limit, never holding more than that.

use std::io::Read;

use flate2::read::MultiGzDecoder;

/// The first buffer for the inflated body, grown by doubling up to the limit.
const FIRST_CAPACITY: usize = 16 << 10;

/// Why a gzip body was not inflated.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("the gzip body inflates to more than {0} bytes")]
    TooLarge(usize),
    #[error("not a valid gzip body: {0}")]
    Corrupt(std::io::Error),
}

/// Inflates `body`, at most `limit` bytes of it.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    if body.is_empty() {
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        return Err(GzipError::Corrupt(eof));
    }
    let mut decoder = MultiGzDecoder::new(body);
    // One byte past the limit tells a body of exactly `limit` bytes from a larger one.
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut len = 0;
    loop {
        if len == out.len() {
            if len == cap {
                return Err(GzipError::TooLarge(limit));
            }
            let grown = len.saturating_mul(2).clamp(FIRST_CAPACITY.min(cap), cap);
            out.resize(grown, 0);
        }
        match decoder.read(&mut out[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(GzipError::Corrupt(e)),
        }
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflates_up_to_exactly_the_limit() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let body = gzip(&data);
        assert_eq!(gunzip(&body, data.len()).unwrap(), data);
        let refused = gunzip(&body, data.len() - 1).unwrap_err();
        assert!(matches!(refused, GzipError::TooLarge(n) if n == data.len() - 1));
    }

    #[test]
    fn a_bomb_is_refused_holding_at_most_the_limit() {
        // 1 GiB of zeroes: about 1 MB of gzip.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        let zeroes = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            encoder.write_all(&zeroes).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let refused = gunzip(&bomb, 4 << 20).unwrap_err();
        assert!(matches!(refused, GzipError::TooLarge(_)), "{refused}");
    }

    #[test]
    fn members_are_concatenated() {
        let mut body = gzip(b"hello, ");
        body.extend(gzip(b"world"));
        assert_eq!(gunzip(&body, 1 << 20).unwrap(), b"hello, world");
    }

    #[test]
    fn corrupt_bodies_are_refused() {
        let good = gzip(b"some spans, some spans, some spans");
        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        let truncated = &good[..good.len() - 3];
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        for body in [
            &b""[..],
            b"\x1f\x8b",
            b"not gzip",
            &bad_crc,
            truncated,
            &trailing,
        ] {
            let refused = gunzip(body, 1 << 20).unwrap_err();
            assert!(
                matches!(refused, GzipError::Corrupt(_)),
                "{body:?}: {refused}"
            );
        }
    }
}
