//! The sidecar's OTLP intake (`trace_sidecar::otlp`): a body read as OTLP/HTTP reads it
//! (protobuf, or JSON when the first byte of the input is odd; the rest is the body), plain
//! and as a gzip stream, then transcoded into the relay's spans.
//!
//! - **Decoding stays within the budget it checks first.** A body the decoder accepts
//!   peaks within `Limits::DEFAULT.budget(body.len())` (the counting allocator), as
//!   `trace-sidecar/tests/otlp_budget.rs` has it for hostile bodies.
//! - **gzip changes nothing.** The body gzip'd here and read through the gzip path decodes
//!   to the same request, or fails as the plain body does.
//! - **Inflating is bounded.** The input itself read as a gzip stream, under a small limit
//!   so that bombs among the inputs reach it: inflated to at most the limit, with at most
//!   `INFLATE_SLACK` more at peak than the limit and half of it again (the buffer growing);
//!   what it gives decodes as the gzip path of OTLP/HTTP decodes the input.
//! - **The transcoder accounts for every span.** Unless the request is refused whole (past
//!   its budget), its protobuf decodes, spans relayed plus spans refused are the request's
//!   spans, each trace holds spans of one trace id, and a refusal says why.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use trace_sidecar::decode::Limits;
use trace_sidecar::otlp::gzip::{gunzip, GzipError};
use trace_sidecar::otlp::transcode::transcode;
use trace_sidecar::otlp::{decode, decode_body, RequestError};

use crate::alloc::peak_during;

/// The inflate limit of the bounded-inflating check: small, for bombs to reach it.
const INFLATE_LIMIT: usize = 64 << 10;

/// What inflating takes besides its output: the gzip decoder's state and input buffer,
/// and its error.
const INFLATE_SLACK: usize = 96 << 10;

pub fn decode_and_transcode(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let json = mode & 1 == 1;

    let (plain, peak) = peak_during(|| decode(body, json));
    if plain.is_ok() {
        let budget = Limits::DEFAULT.budget(body.len());
        assert!(peak <= budget, "peak {peak} > budget {budget}");
    }

    let gzipped = gzip(body);
    match (&plain, decode_body(&gzipped, json, true)) {
        (Ok(a), Ok(b)) => assert!(*a == b, "gzip'd, the body decodes otherwise"),
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
            let through_http = decode_body(body, json, true).ok();
            assert!(through_http == decode(&inflated, json).ok());
        }
        Err(GzipError::TooLarge(limit)) => assert_eq!(limit, INFLATE_LIMIT),
        Err(GzipError::Corrupt(_)) => {}
    }

    if let Ok(request) = plain {
        transcoded_whole(&request);
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(body).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// Every span of `request` is relayed or refused, and the traces are of one trace id each.
fn transcoded_whole(request: &ExportTraceServiceRequest) {
    let spans: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    // Refused whole when its spans would take more than the budget transcoded.
    let Ok(out) = transcode(request) else {
        return;
    };
    assert_eq!(out.spans + out.rejected, spans, "every span counted once");
    let traces = out.traces().expect("the relay's protobuf decodes");
    let relayed: usize = traces.iter().map(|t| t.spans.len()).sum();
    assert_eq!(relayed, out.spans);
    assert_eq!(out.payload.spans, out.spans);
    assert_eq!(out.payload.traces, traces.len());
    assert_eq!(out.first_error.is_some(), out.rejected > 0);
    for trace in &traces {
        let first = trace.spans.first().expect("no empty trace");
        for span in &trace.spans {
            assert_eq!(span.trace_id, first.trace_id, "one trace id a trace");
            assert_ne!(span.span_id, 0);
        }
    }
}
