//! gzip'd OTLP/gRPC requests (`grpc-encoding: gzip`), inflated within
//! [`MAX_REQUEST_BYTES`] before tonic reads them. tonic's own decompression inflates a
//! message whole, with no bound on what it inflates to; here the request's message is read
//! (at most the limit, compressed), inflated with [`gunzip`]'s bound, and handed on as an
//! uncompressed message. Refused: RESOURCE_EXHAUSTED past the limit, compressed or
//! inflated; INVALID_ARGUMENT for a body that is not one well-formed message.

use bytes::{BufMut, Bytes};
use http_body_util::{BodyExt, Full, Limited};
use tonic::codegen::{http, Body, StdError};
use tonic::Status;

use super::gzip::{gunzip, GzipError};
use super::MAX_REQUEST_BYTES;

const ENCODING: &str = "grpc-encoding";

/// A gRPC message's prefix: the compressed flag and the length.
const PREFIX: usize = 5;

/// Whether the request says its messages are gzip'd.
pub fn is_gzip(headers: &http::HeaderMap) -> bool {
    headers
        .get(ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
}

/// Why a gzip'd request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the request's message is larger than {MAX_REQUEST_BYTES} bytes {0}")]
    TooLarge(&'static str),
    #[error("the request's message is cut short")]
    CutShort,
    #[error("more than one message in the request of a unary call")]
    MoreThanOne,
    #[error("compressed flag {0}: 0 or 1 expected")]
    Flag(u8),
    #[error("cannot read the request: {0}")]
    Read(StdError),
    #[error(transparent)]
    Corrupt(GzipError),
}

impl From<MessageError> for Status {
    /// RESOURCE_EXHAUSTED past the limit (the OTLP spec's non-retryable code for it, as
    /// no RetryInfo comes with it), INVALID_ARGUMENT for the rest.
    fn from(error: MessageError) -> Status {
        match error {
            MessageError::TooLarge(_) => Status::resource_exhausted(error.to_string()),
            _ => Status::invalid_argument(error.to_string()),
        }
    }
}

/// The request with its message inflated and `grpc-encoding` removed.
pub async fn inflate<B>(
    request: http::Request<B>,
) -> Result<http::Request<Full<Bytes>>, MessageError>
where
    B: Body,
    B::Error: Into<StdError>,
{
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(ENCODING);
    let body = Limited::new(body, PREFIX + MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                MessageError::TooLarge("compressed")
            } else {
                MessageError::Read(e)
            }
        })?
        .to_bytes();
    let message = inflate_message(&body)?;
    Ok(http::Request::from_parts(parts, Full::new(message)))
}

/// The one message of a unary call's `body`, inflated if its flag says so, as an
/// uncompressed message.
fn inflate_message(body: &[u8]) -> Result<Bytes, MessageError> {
    let prefix = body.get(..PREFIX).ok_or(MessageError::CutShort)?;
    let mut length = [0; 4];
    length.copy_from_slice(&prefix[1..]);
    let length = u32::from_be_bytes(length) as usize;
    let message = &body[PREFIX..];
    if message.len() < length {
        return Err(MessageError::CutShort);
    }
    if message.len() > length {
        return Err(MessageError::MoreThanOne);
    }
    let inflated = match prefix[0] {
        0 if length > MAX_REQUEST_BYTES => return Err(MessageError::TooLarge("uncompressed")),
        0 => message.to_vec(),
        1 => gunzip(message, MAX_REQUEST_BYTES).map_err(|e| match e {
            GzipError::TooLarge(_) => MessageError::TooLarge("inflated"),
            GzipError::Corrupt(_) => MessageError::Corrupt(e),
        })?,
        flag => return Err(MessageError::Flag(flag)),
    };
    let mut out = Vec::with_capacity(PREFIX + inflated.len());
    out.put_u8(0);
    out.put_u32(inflated.len() as u32);
    out.extend_from_slice(&inflated);
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;
    use tonic::Code;

    use super::*;

    fn message(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend((payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_gzipd_message_is_handed_on_uncompressed() {
        let payload = b"an ExportTraceServiceRequest".repeat(100);
        let inflated = inflate_message(&message(1, &gzip(&payload))).unwrap();
        assert_eq!(&inflated[..], &message(0, &payload)[..]);
        let plain = inflate_message(&message(0, &payload)).unwrap();
        assert_eq!(&plain[..], &message(0, &payload)[..]);
    }

    #[test]
    fn bombs_and_malformed_bodies_are_refused() {
        let bomb = gzip(&vec![0; MAX_REQUEST_BYTES + 1]);
        let refused = Status::from(inflate_message(&message(1, &bomb)).unwrap_err());
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
        let mut two = message(1, &gzip(b"a"));
        two.extend(message(1, &gzip(b"b")));
        let truncated = &message(0, b"abc")[..7];
        for (body, says) in [
            (&message(1, b"not gzip")[..], "not a valid gzip body"),
            (&two, "more than one message"),
            (truncated, "cut short"),
            (b"\x01\x00", "cut short"),
            (&message(2, b"abc"), "compressed flag 2"),
        ] {
            let refused = Status::from(inflate_message(body).unwrap_err());
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
            assert!(refused.message().contains(says), "{refused}");
        }
    }
}
