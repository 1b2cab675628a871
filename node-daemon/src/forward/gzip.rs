//! gzip bodies (RFC 1952) at deflate's fastest level: the deflate stream is written
//! straight into the body and the checksum is crc32fast's (SIMD), where flate2's
//! `GzEncoder` goes through an intermediate buffer and a table-driven CRC. Input can come
//! in pieces ([`Gzip::write`]), so that a large body is never held uncompressed as a
//! whole.

use flate2::{Compress, Compression, FlushCompress, Status};

/// Magic, CM = deflate, no flags, no mtime, XFL = fastest, OS = Unix.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3];

/// One gzip member being written.
pub struct Gzip {
    deflate: Compress,
    crc: crc32fast::Hasher,
    body: Vec<u8>,
}

impl Gzip {
    /// `size_hint`: about how many bytes will be written (sizes the body's first buffer).
    pub fn new(size_hint: usize) -> Self {
        let mut body = Vec::with_capacity(HEADER.len() + size_hint / 4 + 64);
        body.extend_from_slice(&HEADER);
        Self {
            deflate: Compress::new(Compression::fast(), false),
            crc: crc32fast::Hasher::new(),
            body,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.deflate_all(data, FlushCompress::None);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.deflate_all(&[], FlushCompress::Finish);
        let Self {
            deflate,
            crc,
            mut body,
        } = self;
        body.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE: the input length modulo 2^32.
        body.extend_from_slice(&(deflate.total_in() as u32).to_le_bytes());
        body
    }

    /// Feeds all of `data`, growing the body as deflate fills it.
    fn deflate_all(&mut self, data: &[u8], flush: FlushCompress) {
        let mut read = 0;
        loop {
            if self.body.len() == self.body.capacity() {
                self.body.reserve(self.body.capacity() / 2 + 64);
            }
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(&data[read..], &mut self.body, flush)
                .expect("deflate into memory cannot fail");
            read += (self.deflate.total_in() - before) as usize;
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                // All taken in, and room left: deflate holds nothing back it could write.
                _ => read == data.len() && self.body.len() < self.body.capacity(),
            };
            if done {
                return;
            }
        }
    }
}

/// `data` as one gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::new(data.len());
    gz.write(data);
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn round_trips_empty_small_and_large_inputs() {
        let large: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 7 + b'a')
            .collect();
        for data in [Vec::new(), b"hello, receiver".to_vec(), large] {
            let body = gzip(&data);
            assert_eq!(&body[..2], &[0x1f, 0x8b]);
            assert_eq!(gunzip(&body), data);
        }
    }

    #[test]
    fn pieces_make_the_same_stream_as_the_whole() {
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        let mut gz = Gzip::new(0);
        for piece in data.chunks(7_777) {
            gz.write(piece);
        }
        gz.write(&[]);
        assert_eq!(gunzip(&gz.finish()), data);
    }

    #[test]
    fn incompressible_input_grows_the_body_past_its_first_guess() {
        // Checksums of consecutive numbers: bytes deflate cannot shrink.
        let noise: Vec<u8> = (0..50_000u32)
            .flat_map(|i| crc32fast::hash(&i.to_le_bytes()).to_le_bytes())
            .collect();
        let body = gzip(&noise);
        assert!(body.len() > noise.len() / 4);
        assert_eq!(gunzip(&body), noise);
    }
}
