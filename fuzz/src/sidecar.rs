//! The sidecar's trace decoders and transcoder (`trace_sidecar::decode`), one target per
//! payload format (`/v0.3/traces` msgpack is read by the v0.4 decoder).

use trace_sidecar::decode::{Format, Limits};

use crate::checks::{agree, decode_checked, tight, transcode_checked};

/// Decodes and transcodes `body` as `format`:
/// - under tight limits (2x the body + 3 KiB, which random bodies reach), each stays within
///   its budget plus the error value (`checks::ERROR_BYTES`): peak heap measured by the
///   counting allocator;
/// - under the default limits, both stay within their budgets too, and the transcoder's
///   protobuf reads back as the traces the decoder makes, or both fail alike.
pub fn decode_and_transcode(format: Format, body: &[u8]) {
    let tight = tight();
    let _ = decode_checked(format, body, &tight);
    let _ = transcode_checked(format, body, &tight);
    agree(format, body, &Limits::DEFAULT);
}
