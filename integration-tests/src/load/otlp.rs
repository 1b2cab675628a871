//! The OTLP form of the load: an `ExportTraceServiceRequest` of the same web-app spans
//! (`bench_support::web_spans`) as an OpenTelemetry SDK sends them. What the Datadog
//! tracer puts in each span but OTLP says once or in a field of its own goes there: the
//! service, environment, version, language and pid in the resource, `span.kind` as the
//! kind, `_dd.p.tid` as the high half of the 128-bit trace id, an error as the status.
//! Every other meta entry is a string attribute and every metric a double one, so a span
//! carries what its v0.4 form does.

use bench_support::web_spans::{web_span, WebSpan};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::IdSlots;

/// The meta entries and metrics OTLP carries elsewhere than in a span's attributes.
const NOT_ATTRIBUTES: [&str; 6] = [
    "env",
    "version",
    "language",
    "span.kind",
    "_dd.p.tid",
    "process_id",
];

/// The high half of trace `t`'s 128-bit id, as `web_span` writes it in `_dd.p.tid`.
fn trace_id_high(t: u64) -> u64 {
    0x6920_0000_0000_0000 | t
}

/// A stand-in id, distinct for every `n` and unlike the bytes around it, found again in
/// the encoded body to learn where the id sits.
fn marker(n: u64) -> u64 {
    // splitmix64's finalizer: a bijection, so distinct for distinct n.
    let mut z = (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, Value::StringValue(value.to_string()))
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// Span `s` of trace `t`, with the stand-in ids of span number `i` of the request.
fn span(web: &WebSpan, t: u64, s: u64, i: u64) -> Span {
    let mut trace_id = trace_id_high(t).to_be_bytes().to_vec();
    trace_id.extend(marker(3 * i).to_be_bytes());
    let attributes = web
        .meta
        .iter()
        .filter(|(k, _)| !NOT_ATTRIBUTES.contains(k))
        .map(|(k, v)| text(k, v))
        .chain(
            web.metrics
                .iter()
                .filter(|(k, _)| !NOT_ATTRIBUTES.contains(k))
                .map(|(k, v)| attribute(k, Value::DoubleValue(*v))),
        )
        .collect();
    let root = s == 0;
    Span {
        trace_id,
        span_id: marker(3 * i + 1).to_be_bytes().to_vec(),
        parent_span_id: if root {
            Vec::new()
        } else {
            marker(3 * i + 2).to_be_bytes().to_vec()
        },
        name: web.resource.clone(),
        kind: if root {
            SpanKind::Server
        } else {
            SpanKind::Client
        } as i32,
        start_time_unix_nano: web.start as u64,
        end_time_unix_nano: (web.start + web.duration) as u64,
        attributes,
        status: web.error.then(|| Status {
            code: StatusCode::Error as i32,
            message: "internal error".into(),
        }),
        ..Span::default()
    }
}

/// The protobuf body of `traces` traces of `spans` spans from `pid`, and where each span's
/// ids sit in it (the trace id's low half, the span id, the parent's; 8 bytes each).
pub(super) fn body(traces: usize, spans: usize, pid: u32) -> (Vec<u8>, Vec<IdSlots>) {
    let first = web_span(0, 0, pid);
    let resource = Resource {
        attributes: vec![
            text("service.name", first.service),
            attribute("process.pid", Value::IntValue(i64::from(pid))),
            text("deployment.environment", "production"),
            text("service.version", "2.14.1"),
            text("telemetry.sdk.language", "python"),
            text("telemetry.sdk.name", "opentelemetry"),
            text("telemetry.sdk.version", "1.36.0"),
        ],
        ..Resource::default()
    };
    let mut all = Vec::with_capacity(traces * spans);
    for t in 0..traces as u64 {
        for s in 0..spans as u64 {
            let i = t * spans as u64 + s;
            all.push(span(&web_span(t, s, pid), t, s, i));
        }
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    version: "0.57b0".into(),
                    ..InstrumentationScope::default()
                }),
                spans: all,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let body = request.encode_to_vec();
    // prost writes the spans in order and each span's fields by number: trace id (1), span
    // id (2), parent (4).
    let mut at = 0;
    let mut find = |id: u64| {
        let bytes = id.to_be_bytes();
        let found = body[at..]
            .windows(8)
            .position(|w| w == bytes)
            .expect("a stand-in id is in the body");
        at += found + 8;
        at - 8
    };
    let slots = (0..(traces * spans) as u64)
        .map(|i| IdSlots {
            trace: find(marker(3 * i)),
            span: find(marker(3 * i + 1)),
            parent: (i % spans as u64 != 0).then(|| find(marker(3 * i + 2))),
        })
        .collect();
    (body, slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{span_id, trace_id, TracesRequest};

    #[test]
    fn stamped_requests_decode_with_their_ids_and_the_spans_fields() {
        let mut request = TracesRequest::otlp_http(4318, 3, 4, 42);
        request.stamp(5);
        let body = &request.bytes()[request.bytes().len() - request.body_len()..];
        let decoded = ExportTraceServiceRequest::decode(body).unwrap();
        let resource = decoded.resource_spans[0].resource.as_ref().unwrap();
        assert!(resource.attributes.iter().any(|kv| kv.key == "process.pid"));
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        let expected: Vec<(u64, u64)> = request.span_ids().collect();
        assert_eq!(spans.len(), expected.len());
        for (i, (span, (trace, id))) in spans.iter().zip(expected).enumerate() {
            let (t, s) = (i as u64 / 4, i as u64 % 4);
            assert_eq!(trace, trace_id(15 + t));
            let high = u64::from_be_bytes(span.trace_id[..8].try_into().unwrap());
            let low = u64::from_be_bytes(span.trace_id[8..].try_into().unwrap());
            assert_eq!((high, low), (trace_id_high(t), trace));
            assert_eq!(span.span_id, id.to_be_bytes());
            let parent = span_id(trace, 0).to_be_bytes().to_vec();
            assert_eq!(
                span.parent_span_id,
                if s == 0 { Vec::new() } else { parent }
            );
            let web = web_span(t, s, 42);
            assert_eq!(span.name, web.resource);
            // 10 meta and 3 metrics, less what the resource, kind and trace id carry.
            let left = if s == 0 { 13 - 6 } else { 13 - 5 };
            assert_eq!(span.attributes.len(), left, "{:?}", span.attributes);
        }
        assert!(request.bytes().starts_with(b"POST /v1/traces HTTP/1.1\r\n"));
    }
}
