//! The OTLP decoders stay within the decode budget they check before decoding: hostile
//! bodies of empty messages, as many as the check lets through, measured with the counting
//! allocator.

mod decode_common;

use decode_common::alloc::{peak_during, Counting};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use trace_sidecar::decode::Limits;
use trace_sidecar::otlp::decode;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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

/// Decodes `body`; when it is accepted, its peak heap must be within the budget. Whether
/// it was accepted.
fn within_budget(body: &[u8], json: bool) -> bool {
    let budget = Limits::DEFAULT.budget(body.len());
    let (decoded, peak) = peak_during(|| decode(body, json));
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
fn hostile_protobuf_bodies_decode_within_the_budget() {
    let with_attributes = Span {
        attributes: vec![KeyValue::default(); 8],
        ..Span::default()
    };
    let mut accepted = 0;
    for n in [100, 1_000, 10_000, 50_000, 100_000] {
        for span in [Span::default(), with_attributes.clone()] {
            accepted += usize::from(within_budget(&spans(n, span).encode_to_vec(), false));
        }
        let empty_resources = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(); n],
        };
        accepted += usize::from(within_budget(&empty_resources.encode_to_vec(), false));
    }
    assert!(accepted >= 3, "some bodies were small enough to be decoded");
}

#[test]
fn hostile_json_bodies_decode_within_the_budget() {
    let mut accepted = 0;
    for n in [100, 1_000, 10_000, 100_000] {
        let body = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            vec![r#"{"attributes":[{"key":"a","value":{"intValue":1}}]}"#; n].join(",")
        );
        accepted += usize::from(within_budget(body.as_bytes(), true));
        let body = format!(r#"{{"resourceSpans":[{}]}}"#, vec!["{}"; n].join(","));
        accepted += usize::from(within_budget(body.as_bytes(), true));
    }
    assert!(accepted >= 2, "some bodies were small enough to be decoded");
}

#[test]
fn realistic_bodies_pass_the_budget_in_both_encodings() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    let attribute = |i: usize| KeyValue {
        key: format!("http.attribute.{i}"),
        value: Some(AnyValue {
            value: Some(Value::StringValue("GET".into())),
        }),
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
    let protobuf = request.encode_to_vec();
    assert!(within_budget(&protobuf, false));
    let json = serde_json::to_vec(&request).unwrap();
    assert!(within_budget(&json, true), "{} bytes of JSON", json.len());
}
