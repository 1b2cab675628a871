//! Unary gRPC calls over the client's HTTP/2 connections: the message in gRPC's frame
//! (gzip-compressed when the batch is), `grpc-status` read from the trailers (or from the
//! head of a trailers-only answer) and sorted as OTLP says: the codes a retry may cure
//! (CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE,
//! UNAVAILABLE, DATA_LOSS) are retried, the others refuse the batch.

use bytes::{BufMut, Bytes, BytesMut};
use hyper::{HeaderMap, Request};
use url::Url;

use super::{read_body, ReceiverClient, SendError, MAX_ERROR_BODY, REQUEST_TIMEOUT};
use crate::config::otlp::percent_decode;
use crate::config::secret::redact_url;

const RETRYABLE: [u32; 7] = [1, 4, 8, 10, 11, 14, 15];

impl ReceiverClient {
    /// Calls `url`'s method with the message `body`; Ok with the answer's message (empty
    /// when it was compressed or longer than `keep` bytes framed). A batch's
    /// `Content-Encoding: gzip` becomes the frame's compressed flag and
    /// `grpc-encoding: gzip`; its `Content-Type` is gRPC's.
    pub(super) async fn unary(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        keep: usize,
    ) -> Result<Bytes, SendError> {
        let shown = redact_url(url);
        let mut compressed = false;
        let mut sent: Vec<(&str, String)> = Vec::with_capacity(headers.len() + 3);
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-encoding") {
                compressed = value == "gzip";
            } else if !name.eq_ignore_ascii_case("content-type") {
                sent.push((name, value.clone()));
            }
        }
        sent.push(("content-type", "application/grpc".into()));
        sent.push(("te", "trailers".into()));
        if compressed {
            sent.push(("grpc-encoding", "gzip".into()));
        }
        let response = self
            .send(
                Request::post(url.as_str()),
                &shown,
                &sent,
                frame(&body, compressed),
            )
            .await?;
        let status = response.status();
        let head = response.headers().clone();
        let kept = keep.max(MAX_ERROR_BODY);
        let answer = read_body(response.into_body(), REQUEST_TIMEOUT, kept).await;
        if !status.is_success() {
            // Not a gRPC answer (a proxy's): sorted as HTTP.
            let message = format!("{shown}: HTTP {status}");
            return match status.as_u16() {
                408 | 429 | 500..=599 => Err(SendError::Retry(message)),
                _ => Err(SendError::Rejected(message)),
            };
        }
        let trailers = answer.trailers.unwrap_or_default();
        let (code, text) = grpc_status(&head)
            .or_else(|| grpc_status(&trailers))
            .unwrap_or((2, "the answer has no grpc-status".into()));
        match code {
            0 => Ok(unframe(answer.body)),
            code => {
                let message = format!("{shown}: gRPC status {code}: {text}");
                match RETRYABLE.contains(&code) {
                    true => Err(SendError::Retry(message)),
                    false => Err(SendError::Rejected(message)),
                }
            }
        }
    }
}

/// gRPC's length-prefixed message.
fn frame(message: &[u8], compressed: bool) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(u8::from(compressed));
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// The message of a length-prefixed answer; empty unless it is whole and uncompressed
/// (the call does not offer `grpc-accept-encoding`, so a server has no reason to
/// compress).
fn unframe(mut answer: Bytes) -> Bytes {
    let whole = answer.len() >= 5
        && answer[0] == 0
        && u32::from_be_bytes([answer[1], answer[2], answer[3], answer[4]]) as usize
            == answer.len() - 5;
    match whole {
        true => answer.split_off(5),
        false => Bytes::new(),
    }
}

/// `grpc-status` and its `grpc-message` (percent-decoded as gRPC encodes it).
fn grpc_status(headers: &HeaderMap) -> Option<(u32, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|text| String::from_utf8_lossy(&percent_decode(text).0).into_owned())
        .unwrap_or_default();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_the_flag_the_length_and_the_message() {
        assert_eq!(&frame(b"abc", true)[..], b"\x01\x00\x00\x00\x03abc");
        assert_eq!(&frame(b"", false)[..], b"\x00\x00\x00\x00\x00");
    }

    #[test]
    fn an_answer_is_unframed_only_when_whole_and_plain() {
        assert_eq!(&unframe(frame(b"abc", false))[..], b"abc");
        assert_eq!(&unframe(frame(b"", false))[..], b"");
        assert!(unframe(frame(b"abc", true)).is_empty(), "compressed");
        assert!(unframe(frame(b"abc", false).slice(..6)).is_empty(), "cut");
        assert!(
            unframe(Bytes::from_static(b"\x00\x00")).is_empty(),
            "no prefix"
        );
    }

    #[test]
    fn status_and_message_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", "14".parse().unwrap());
        headers.insert("grpc-message", "no%20backend%3A down".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some((14, "no backend: down".into())));
    }
}
