//! The OTLP intake stays within its memory budget: protobuf bodies transcoded where they
//! lie (the output and the spans' index charged to the budget), JSON bodies decoded into
//! structs within the budget checked before decoding; hostile bodies, as many as the
//! checks let through, measured with the counting allocator.

mod decode_common;

use decode_common::alloc::{peak_during, Counting};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use trace_sidecar::decode::Limits;
use trace_sidecar::otlp::decode_json;
use trace_sidecar::otlp::transcode::transcode;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What a transcode allocates besides its budget: the resources' and the trace ids' small
/// tables, the scratch buffers, an error.
const SLACK: usize = 64 << 10;

fn spans(n: usize, span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span; n],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// Transcodes `body`; its peak heap must be within the budget and the slack. Whether it
/// was accepted.
fn transcoded_within_budget(body: &[u8]) -> bool {
    let budget = Limits::DEFAULT.budget(body.len());
    let (transcoded, peak) = peak_during(|| transcode(body));
    assert!(
        peak <= budget + SLACK,
        "peak {peak} > budget {budget} ({} bytes)",
        body.len()
    );
    transcoded.is_ok()
}

/// Decodes a JSON `body`; when it is accepted, its peak heap must be within the budget.
fn decoded_within_budget(body: &[u8]) -> bool {
    let budget = Limits::DEFAULT.budget(body.len());
    let (decoded, peak) = peak_during(|| decode_json(body));
    if decoded.is_ok() {
        assert!(
            peak <= budget,
            "peak {peak} > budget {budget} ({} bytes)",
            body.len()
        );
    }
    decoded.is_ok()
}

#[test]
fn hostile_protobuf_bodies_transcode_within_the_budget() {
    let valid = |i: u64| Span {
        trace_id: (i + 1).to_be_bytes().repeat(2),
        span_id: (i + 1).to_be_bytes().to_vec(),
        ..Span::default()
    };
    let mut accepted = 0;
    for n in [100, 1_000, 10_000, 100_000] {
        // Spans of one trace id, each of a trace of its own, and with empty attributes.
        let one_trace = spans(n, valid(0));
        let mut many = spans(0, Span::default());
        many.resource_spans[0].scope_spans[0].spans = (0..n as u64).map(valid).collect();
        let mut attributes = valid(0);
        attributes.attributes = vec![KeyValue::default(); 8];
        let empty_resources = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(); n],
        };
        for request in [one_trace, many, spans(n, attributes), empty_resources] {
            accepted += usize::from(transcoded_within_budget(&request.encode_to_vec()));
        }
        // A resource attribute written into each of the spans: refused past the budget.
        let mut resource = spans(n, valid(0));
        resource.resource_spans[0].resource = Some(Resource {
            attributes: vec![kv("big", Value::StringValue("x".repeat(64 << 10)))],
            ..Resource::default()
        });
        transcoded_within_budget(&resource.encode_to_vec());
        // Arrays nested 50 deep: JSON text in meta.
        let mut nested = Value::BoolValue(true);
        for _ in 0..50 {
            nested = Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(nested),
                }],
            });
        }
        let mut deep = valid(0);
        deep.attributes = vec![kv("nested", nested)];
        transcoded_within_budget(&spans(n.min(1_000), deep).encode_to_vec());
    }
    assert!(
        accepted >= 8,
        "some bodies were small enough to be transcoded"
    );
}

#[test]
fn hostile_json_bodies_decode_within_the_budget() {
    let mut accepted = 0;
    for n in [100, 1_000, 10_000, 100_000] {
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec![r#"{"attributes":[{"key":"a","value":{"intValue":1}}]}"#; n].join(",")
        );
        accepted += usize::from(decoded_within_budget(body.as_bytes()));
        let body = format!(r#"{{"resourceSpans":[{}]}}"#, vec!["{}"; n].join(","));
        accepted += usize::from(decoded_within_budget(body.as_bytes()));
    }
    assert!(accepted >= 2, "some bodies were small enough to be decoded");
}

#[test]
fn realistic_bodies_pass_in_both_encodings() {
    let attribute = |i: usize| {
        kv(
            &format!("http.attribute.{i}"),
            Value::StringValue("GET".into()),
        )
    };
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /users/{id}".into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: (0..10).map(attribute).collect(),
        ..Span::default()
    };
    let request = spans(512, span);
    assert!(transcoded_within_budget(&request.encode_to_vec()));
    let json = serde_json::to_vec(&request).unwrap();
    assert!(decoded_within_budget(&json), "{} bytes of JSON", json.len());
}
