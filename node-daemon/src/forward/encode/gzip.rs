//! gzip bodies (RFC 1952) written by ISA-L's igzip at its level 1: SIMD match finding and
//! a Huffman code fitted to each block. On 10,000 spans it takes 25-50% less CPU than
//! zlib-rs at its fastest level and makes a 10-34% smaller body (docs/BENCHMARKS.md,
//! "Forwarding"). The deflate stream is written straight into the body, header, CRC-32 and
//! length by igzip. Input can come in pieces ([`Gzip::write`]), so that a large body is
//! never held uncompressed as a whole.

use std::mem::MaybeUninit;

use isal_sys::igzip_lib as isal;

/// igzip's level 1, and the working buffer it asks for at that level.
const LEVEL: u32 = 1;
const LEVEL_BUF: usize = isal::ISAL_DEF_LVL1_DEFAULT as usize;
/// The least room given to igzip for output (a block header fits).
const MIN_ROOM: usize = 4 << 10;
/// The most input handed to igzip in one call (its counters are 32 bits).
const MAX_PIECE: usize = 1 << 30;

/// igzip's state (360 KB with its working buffer), writing one gzip member after another:
/// [`Gzip::begin`], [`Gzip::write`] as often as needed, [`Gzip::finish`]. Kept from one
/// member to the next, its memory is not fresh pages to fault in each time.
pub(crate) struct Gzip {
    /// Boxed: igzip's state (80 KB) stays at one address, off the stack.
    stream: Box<isal::isal_zstream>,
    /// igzip's working buffer; `stream.level_buf` points into it.
    _level_buf: Box<[u8]>,
    /// The member being written.
    body: Vec<u8>,
}

// SAFETY: the stream's pointers are to memory this Gzip owns (the working buffer, on the
// heap, moving with it) or, during a call of `deflate` only, to its arguments and body;
// igzip keeps no thread-local or global state for a stream.
unsafe impl Send for Gzip {}

impl Gzip {
    /// igzip's state, ready for a first member (as after `begin(0)`).
    pub(crate) fn new() -> Self {
        let layout = std::alloc::Layout::new::<isal::isal_zstream>();
        // SAFETY: isal_zstream is plain data (integers, pointers, arrays of them), for
        // which all-zero bytes are a valid value, and not zero-sized; the allocation has
        // its layout and the Box owns it. isal_deflate_init then sets it up.
        let mut stream = unsafe {
            let zeroed = std::alloc::alloc_zeroed(layout).cast::<isal::isal_zstream>();
            if zeroed.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(zeroed)
        };
        // SAFETY: `stream` is a valid, exclusively borrowed isal_zstream.
        unsafe { isal::isal_deflate_init(&mut *stream) };
        let mut level_buf = vec![0u8; LEVEL_BUF].into_boxed_slice();
        stream.level = LEVEL;
        stream.level_buf = level_buf.as_mut_ptr();
        stream.level_buf_size = LEVEL_BUF as u32;
        let mut gzip = Self {
            stream,
            _level_buf: level_buf,
            body: Vec::new(),
        };
        gzip.begin(0);
        gzip
    }

    /// Starts a new member, dropping any half-written one. `size_hint`: about how many
    /// bytes will be written (sizes the body's first buffer).
    pub(crate) fn begin(&mut self, size_hint: usize) {
        // SAFETY: a valid isal_zstream; reset keeps the level and working buffer.
        unsafe { isal::isal_deflate_reset(&mut *self.stream) };
        // Once it has written a member's header, igzip marks the stream header-less.
        self.stream.gzip_flag = isal::IGZIP_GZIP as u16;
        self.body = Vec::with_capacity(size_hint / 4 + MIN_ROOM);
    }

    pub(crate) fn write(&mut self, data: &[u8]) {
        for piece in data.chunks(MAX_PIECE) {
            self.deflate(piece, false);
        }
    }

    /// The member, complete. The next one starts with [`Gzip::begin`].
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.deflate(&[], true);
        std::mem::take(&mut self.body)
    }

    /// Feeds all of `data` (at most `MAX_PIECE` bytes), growing the body as igzip fills
    /// it; with `end`, until the member's trailer is written.
    fn deflate(&mut self, data: &[u8], end: bool) {
        let stream = &mut *self.stream;
        // igzip only reads through next_in.
        stream.next_in = data.as_ptr().cast_mut();
        stream.avail_in = data.len() as u32;
        stream.end_of_stream = u16::from(end);
        loop {
            if self.body.capacity() - self.body.len() < MIN_ROOM {
                self.body.reserve(self.body.capacity() / 2 + MIN_ROOM);
            }
            let room: &mut [MaybeUninit<u8>] = self.body.spare_capacity_mut();
            let room_len = room.len().min(u32::MAX as usize) as u32;
            stream.next_out = room.as_mut_ptr().cast();
            stream.avail_out = room_len;
            // SAFETY: next_in/avail_in describe `data`, next_out/avail_out the body's spare
            // capacity, level_buf/level_buf_size the buffer this Gzip owns; all outlive
            // the call.
            let status = unsafe { isal::isal_deflate(stream) };
            // Only a bad level, flush or buffer is refused: constants here.
            assert_eq!(status, isal::COMP_OK as i32, "igzip refused its settings");
            let written = (room_len - stream.avail_out) as usize;
            // SAFETY: igzip wrote `written` bytes at the start of the spare capacity.
            unsafe { self.body.set_len(self.body.len() + written) };
            let done = if end {
                stream.internal_state.state == isal::isal_zstate_state_ZSTATE_END
            } else {
                // All taken in, and room left: igzip holds nothing back it could write.
                stream.avail_in == 0 && stream.avail_out > 0
            };
            if done {
                break;
            }
        }
        stream.next_in = std::ptr::null_mut();
        stream.next_out = std::ptr::null_mut();
    }
}

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

/// `data` as one gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::new();
    gz.begin(data.len());
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
            assert_eq!(&body[..3], &[0x1f, 0x8b, 8]);
            assert_eq!(gunzip(&body), data);
            // The trailer: CRC-32 and length of what went in.
            let trailer = &body[body.len() - 8..];
            assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
            assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
        }
    }

    #[test]
    fn pieces_make_the_same_stream_as_the_whole() {
        let data: Vec<u8> = (0..400_000u32)
            .flat_map(|i| (i % 1000).to_le_bytes())
            .collect();
        let mut gz = Gzip::new();
        // A member left half-written is dropped by the next begin; members after one
        // another are each whole.
        gz.write(b"never finished");
        for _ in 0..2 {
            gz.begin(0);
            for piece in data.chunks(7_777) {
                gz.write(piece);
            }
            gz.write(&[]);
            assert_eq!(gunzip(&gz.finish()), data);
        }
        gz.begin(0);
        assert_eq!(gunzip(&gz.finish()), b"");
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
