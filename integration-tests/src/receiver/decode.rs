//! Turning a request body into `Decoded` with the public formats.

use std::io::Read;

use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use prost::Message;
use thiserror::Error;

use super::captured::{CollectorMessage, Decoded, Endpoint};
use super::envelope::{
    Envelope, EnvelopeError, ENCODING_PROTOBUF, ENCODING_ZSTD1X_PB, ENCODING_ZSTD_PB,
};
use super::proto::{TracePayload, TracePayloadIds};

/// How much of a traces request the receiver keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TraceDetail {
    /// The whole decoded `TracePayload` ([`Decoded::Traces`]).
    #[default]
    Full,
    /// The (trace id, span id) of each span only ([`Decoded::TraceIds`]): 16 bytes a
    /// span, for tests that forward millions of them.
    IdsOnly,
}

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("Content-Encoding {0}: {1}")]
    Content(String, std::io::Error),
    #[error("intake body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("traces body is not a TracePayload: {0}")]
    Traces(#[from] prost::DecodeError),
    #[error("collector envelope: {0}")]
    Envelope(#[from] EnvelopeError),
}

/// Undoes `Content-Encoding` gzip / deflate (zlib or raw); other values (identity, the
/// process agent's `x-zip`, which names no transfer compression) leave the body as is.
pub fn content_decode(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let name = encoding.unwrap_or("").trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let result = match name.as_str() {
        "gzip" | "x-gzip" => GzDecoder::new(body).read_to_end(&mut out),
        "deflate" => {
            let zlib = ZlibDecoder::new(body).read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                DeflateDecoder::new(body).read_to_end(&mut out)
            } else {
                zlib
            }
        }
        _ => return Ok(body.to_vec()),
    };
    result.map_err(|e| DecodeError::Content(name, e))?;
    Ok(out)
}

/// Decodes a complete body for `endpoint`.
pub fn decode(
    endpoint: Endpoint,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<Decoded, DecodeError> {
    decode_as(endpoint, content_encoding, body, TraceDetail::Full)
}

/// As [`decode`], keeping traces requests with the given detail.
pub fn decode_as(
    endpoint: Endpoint,
    content_encoding: Option<&str>,
    body: &[u8],
    traces: TraceDetail,
) -> Result<Decoded, DecodeError> {
    if endpoint == Endpoint::Unknown {
        return Ok(Decoded::Unknown);
    }
    let plain = content_decode(content_encoding, body)?;
    Ok(match endpoint {
        Endpoint::Intake => Decoded::IntakeJson(serde_json::from_slice(&plain)?),
        Endpoint::Traces => match traces {
            TraceDetail::Full => Decoded::Traces(TracePayload::decode(plain.as_slice())?),
            TraceDetail::IdsOnly => {
                Decoded::TraceIds(TracePayloadIds::decode(plain.as_slice())?.ids())
            }
        },
        Endpoint::Collector | Endpoint::Connections => Decoded::Collector(collector(plain)?),
        Endpoint::Features => Decoded::Features,
        Endpoint::Unknown => Decoded::Unknown,
    })
}

fn collector(raw: Vec<u8>) -> Result<CollectorMessage, DecodeError> {
    let envelope = Envelope::parse(&raw)?;
    let payload = &raw[envelope.header_len..];
    let (message, message_error) = match envelope.encoding {
        ENCODING_PROTOBUF => (Some(payload.to_vec()), None),
        ENCODING_ZSTD_PB | ENCODING_ZSTD1X_PB => match zstd_decode(payload) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(format!("zstd: {e}"))),
        },
        other => (None, Some(format!("encoding {other} is not protobuf"))),
    };
    Ok(CollectorMessage {
        envelope,
        raw,
        message,
        message_error,
    })
}

fn zstd_decode(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    #[test]
    fn undoes_gzip_and_deflate() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b"{\"a\":1}").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(content_decode(Some("gzip"), &gz).unwrap(), b"{\"a\":1}");
        let mut zl = ZlibEncoder::new(Vec::new(), Compression::default());
        zl.write_all(b"xyz").unwrap();
        let zl = zl.finish().unwrap();
        assert_eq!(content_decode(Some("Deflate"), &zl).unwrap(), b"xyz");
        assert_eq!(content_decode(Some("x-zip"), b"raw").unwrap(), b"raw");
        assert!(content_decode(Some("gzip"), b"not gzip").is_err());
    }

    #[test]
    fn intake_must_be_json() {
        let ok = decode(Endpoint::Intake, None, br#"{"internalHostname":"h"}"#).unwrap();
        assert_eq!(
            ok,
            Decoded::IntakeJson(serde_json::json!({"internalHostname": "h"}))
        );
        assert!(matches!(
            decode(Endpoint::Intake, None, b"{oops"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn collector_keeps_raw_and_message() {
        let mut body = Envelope::encode_v3_stackstate(ENCODING_PROTOBUF, 12, 5);
        body.extend_from_slice(&[0x12, 0x01, b'h']);
        let Decoded::Collector(c) = decode(Endpoint::Collector, None, &body).unwrap() else {
            panic!("not a collector message");
        };
        assert_eq!(c.envelope.msg_type, 12);
        assert_eq!(c.raw, body);
        assert_eq!(c.message.as_deref(), Some(&[0x12, 0x01, b'h'][..]));
    }

    #[test]
    fn collector_zstd_body_is_undone_or_explained() {
        // `printf hi | zstd -c`: one raw block and a checksum.
        let frame = [
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x11, 0x00, 0x00, b'h', b'i', 0xfa, 0x38, 0x26,
            0xea,
        ];
        let mut body = Envelope::encode_v3_stackstate(ENCODING_ZSTD_PB, 27, 5);
        body.extend_from_slice(&frame);
        let Decoded::Collector(c) = decode(Endpoint::Collector, None, &body).unwrap() else {
            panic!("not a collector message");
        };
        assert_eq!(
            c.message.as_deref(),
            Some(&b"hi"[..]),
            "{:?}",
            c.message_error
        );

        let mut bad = Envelope::encode_v3_stackstate(ENCODING_ZSTD_PB, 27, 5);
        bad.extend_from_slice(b"not zstd");
        let Decoded::Collector(c) = decode(Endpoint::Collector, None, &bad).unwrap() else {
            panic!("not a collector message");
        };
        assert_eq!(c.message, None);
        assert!(c.message_error.unwrap().starts_with("zstd"));
    }
}
