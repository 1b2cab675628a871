//! The sidecar's OTLP intake (`trace_sidecar::otlp`): a body read as OTLP/HTTP reads it
//! (protobuf, or JSON when the first byte of the input is odd; the rest is the body), plain
//! and as a gzip stream, then transcoded into the relay's spans.
//!
//! - **Reading stays within the budget.** Transcoding the protobuf peaks within
//!   `Limits::DEFAULT.budget(body.len())` and `TRANSCODE_SLACK` (the counting allocator);
//!   a JSON body the decoder accepts peaks within its budget.
//! - **Reading the protobuf where it lies is reading what prost reads.** Where prost
//!   decodes the body, the transcoder takes it too, and transcodes it as it transcodes
//!   prost's encoding of what prost decoded (unless one of the two is past its budget).
//! - **gzip changes nothing.** The body gzip'd here and read through the gzip path gives
//!   the same protobuf, or fails as the plain body does.
//! - **Inflating is bounded.** The input itself read as a gzip stream, under a small limit
//!   so that bombs among the inputs reach it: inflated to at most the limit, with at most
//!   `INFLATE_SLACK` more at peak than the limit and half of it again (the buffer growing);
//!   what it gives is what the gzip path of OTLP/HTTP gives.
//! - **The transcoder accounts for every span.** Unless the request is refused, its
//!   protobuf decodes, spans relayed plus spans refused are the request's spans, each
//!   trace holds spans of one trace id, and a refusal says why.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use trace_sidecar::decode::Limits;
use trace_sidecar::otlp::gzip::{gunzip, GzipError};
use trace_sidecar::otlp::transcode::{transcode, TranscodeError, Transcoded};
use trace_sidecar::otlp::{decode_json, protobuf_body, RequestError};

use crate::alloc::peak_during;
use crate::checks::comparable;

/// The inflate limit of the bounded-inflating check: small, for bombs to reach it.
const INFLATE_LIMIT: usize = 64 << 10;

/// What inflating takes besides its output: the gzip decoder's state and input buffer,
/// and its error.
const INFLATE_SLACK: usize = 96 << 10;

/// What transcoding takes besides its budget: scratch buffers, JSON text of array values,
/// an error.
const TRANSCODE_SLACK: usize = 64 << 10;

pub fn decode_and_transcode(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let json = mode & 1 == 1;

    if json {
        let (decoded, peak) = peak_during(|| decode_json(body));
        if decoded.is_ok() {
            let budget = Limits::DEFAULT.budget(body.len());
            assert!(peak <= budget, "JSON: peak {peak} > budget {budget}");
        }
    }
    let plain = protobuf_body(body, json, false);

    let gzipped = gzip(body);
    match (&plain, protobuf_body(&gzipped, json, true)) {
        (Ok(a), Ok(b)) => assert!(**a == *b, "gzip'd, the body reads otherwise"),
        (Err(_), Err(RequestError::Gzip(e))) => panic!("a valid gzip stream refused: {e}"),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("refused gzip'd, accepted plain: {e}"),
        (Err(e), Ok(_)) => panic!("accepted gzip'd, refused plain: {e}"),
    }

    let (inflated, peak) = peak_during(|| gunzip(body, INFLATE_LIMIT));
    let bound = INFLATE_LIMIT + INFLATE_LIMIT / 2 + INFLATE_SLACK;
    assert!(peak <= bound, "inflating peaked at {peak} > {bound}");
    match inflated {
        Ok(inflated) => {
            assert!(inflated.len() <= INFLATE_LIMIT);
            let through_http = protobuf_body(body, json, true).ok();
            let inflated = protobuf_body(&inflated, json, false).ok();
            assert!(through_http == inflated);
        }
        Err(GzipError::TooLarge(limit)) => assert_eq!(limit, INFLATE_LIMIT),
        Err(GzipError::Corrupt(_)) => {}
    }

    let Ok(protobuf) = plain else {
        return;
    };
    let budget = Limits::DEFAULT.budget(protobuf.len());
    let (ours, peak) = peak_during(|| transcode(&protobuf));
    let bound = budget + TRANSCODE_SLACK;
    assert!(peak <= bound, "transcoding peaked at {peak} > {bound}");
    if let Ok(out) = &ours {
        transcoded_whole(out, &protobuf);
    }
    reads_as_prost(&protobuf, &ours);
}

/// Where prost decodes `body`, the transcoder read it as prost's encoding of it.
fn reads_as_prost(body: &[u8], ours: &Result<Transcoded, TranscodeError>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return;
    };
    let canonical = request.encode_to_vec();
    let theirs = transcode(&canonical);
    match (ours, &theirs) {
        (Ok(a), Ok(b)) => {
            // Metrics compared by their bits (a NaN is one value).
            let spans = |t: &Transcoded| t.traces().ok().map(|t| comparable(&t));
            assert_eq!(spans(a), spans(b), "the spans differ");
            assert_eq!((a.spans, a.rejected), (b.spans, b.rejected));
            assert_eq!(a.first_error, b.first_error);
            assert_eq!(a.sdk, b.sdk);
        }
        (Err(TranscodeError::Wire(e)), _) => panic!("prost reads what the reader refuses: {e}"),
        (_, Err(TranscodeError::Wire(e))) => {
            panic!("the reader refuses prost's encoding of what it read: {e}")
        }
        // One of the two past its budget (the bodies differ in size).
        (Err(TranscodeError::TooLarge(_)), _) | (_, Err(TranscodeError::TooLarge(_))) => {}
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(body).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Every span of the request is relayed or refused, and the traces are of one trace id
/// each.
fn transcoded_whole(out: &Transcoded, body: &[u8]) {
    let traces = out.traces().expect("the relay's protobuf decodes");
    let relayed: usize = traces.iter().map(|t| t.spans.len()).sum();
    assert_eq!(relayed, out.spans);
    assert_eq!(out.payload.spans, out.spans);
    assert_eq!(out.payload.traces, traces.len());
    assert_eq!(out.first_error.is_some(), out.rejected > 0);
    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(out.spans + out.rejected, spans, "every span counted once");
    }
    for trace in &traces {
        let first = trace.spans.first().expect("no empty trace");
        for span in &trace.spans {
            assert_eq!(span.trace_id, first.trace_id, "one trace id a trace");
            assert_ne!(span.span_id, 0);
        }
    }
}
