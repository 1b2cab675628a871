//! OTLP requests transcoded into the relay's spans: ids, `_dd.p.tid`, kind, status,
//! attributes, events, the resource's `service.name` and `process.pid`; OTLP/JSON's quirks;
//! malformed requests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use trace_sidecar::otlp::transcode::{self, TranscodeError, Transcoded, NO_SERVICE};
use trace_sidecar::otlp::{decode_json, RequestError};

/// Transcodes `request` from its protobuf, as the intake does.
fn transcode(request: &ExportTraceServiceRequest) -> Result<Transcoded, TranscodeError> {
    transcode::transcode(&request.encode_to_vec())
}

const TRACE_ID: [u8; 16] = [
    0x6b, 0x06, 0xdd, 0x4a, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x30, 0x39,
];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn text(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn span(span_id: u64, parent: Option<u64>) -> Span {
    Span {
        trace_id: TRACE_ID.to_vec(),
        span_id: span_id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: "GET /users/{id}".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        ..Span::default()
    }
}

fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "checkout".into(),
                    version: "1.2".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

#[test]
fn ids_kind_resource_and_attributes() {
    let mut root = span(7, None);
    root.attributes = vec![
        kv("http.request.method", text("GET")),
        kv("http.route", text("/users/{id}")),
        kv("http.response.status_code", Value::IntValue(200)),
        kv("ratio", Value::DoubleValue(0.5)),
        kv("cached", Value::BoolValue(true)),
        kv(
            "tags",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(text("a")),
                }],
            }),
        ),
    ];
    let mut child = span(8, Some(7));
    child.kind = SpanKind::Client as i32;
    child.name = "SELECT users".into();
    child.attributes = vec![kv("db.system", text("postgresql"))];
    let resource = vec![
        kv("service.name", text("checkout")),
        kv("process.pid", Value::IntValue(4242)),
        kv("telemetry.sdk.language", text("python")),
    ];
    let out = transcode(&request(resource, vec![root, child])).unwrap();
    let traces = out.traces().unwrap();
    assert_eq!((out.spans, out.rejected, traces.len()), (2, 0, 1));
    let spans = &traces[0].spans;
    let (root, child) = (&spans[0], &spans[1]);
    assert_eq!(root.trace_id, 0x3039, "the low 64 bits");
    assert_eq!(
        root.meta["_dd.p.tid"], "6b06dd4a00000001",
        "the high 64 bits"
    );
    assert_eq!(
        root.meta["otel.trace_id"],
        "6b06dd4a000000010000000000003039"
    );
    assert_eq!((root.span_id, root.parent_id), (7, 0));
    assert_eq!((child.span_id, child.parent_id), (8, 7));
    assert_eq!(root.service, "checkout");
    assert_eq!(root.name, "checkout.server");
    assert_eq!(root.resource, "GET /users/{id}");
    assert_eq!(root.r#type, "web");
    assert_eq!(root.meta["span.kind"], "server");
    assert_eq!(root.start, 1_700_000_000_000_000_000);
    assert_eq!(root.duration, 250_000_000);
    assert_eq!(root.error, 0);
    assert_eq!(root.meta["http.route"], "/users/{id}");
    assert_eq!(root.metrics["http.response.status_code"], 200.0);
    assert_eq!(root.metrics["ratio"], 0.5);
    assert_eq!(root.meta["cached"], "true");
    assert_eq!(root.meta["tags"], r#"["a"]"#);
    assert_eq!(
        root.meta["telemetry.sdk.language"], "python",
        "resource attributes"
    );
    assert_eq!(root.meta["otel.library.name"], "checkout");
    assert_eq!(
        root.metrics["process_id"], 4242.0,
        "where the daemon reads the pid"
    );
    assert_eq!(child.meta["span.kind"], "client");
    assert_eq!(child.r#type, "db");
    assert_eq!(child.resource, "SELECT users");
    assert_eq!(child.metrics["process_id"], 4242.0);
}

#[test]
fn error_status_and_events() {
    let mut failed = span(9, None);
    failed.kind = SpanKind::Internal as i32;
    failed.status = Some(Status {
        code: StatusCode::Error as i32,
        message: "boom".into(),
    });
    failed.events = vec![Event {
        name: "exception".into(),
        time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![
            kv("exception.type", text("ValueError")),
            kv("exception.message", text("bad value")),
            kv("exception.stacktrace", text("Traceback ...")),
        ],
        dropped_attributes_count: 0,
    }];
    let out = transcode(&request(vec![], vec![failed])).unwrap();
    let traces = out.traces().unwrap();
    let s = &traces[0].spans[0];
    assert_eq!(s.error, 1);
    assert_eq!(s.meta["otel.status_code"], "Error");
    assert_eq!(
        s.meta["error.msg"], "bad value",
        "the exception's message wins"
    );
    assert_eq!(s.meta["error.type"], "ValueError");
    assert_eq!(s.meta["error.stack"], "Traceback ...");
    assert_eq!(s.meta["span.kind"], "internal");
    assert_eq!(s.r#type, "custom");
    assert_eq!(s.service, NO_SERVICE);
    assert!(!s.metrics.contains_key("process_id"), "no pid given");
    let events: serde_json::Value = serde_json::from_str(&s.meta["events"]).unwrap();
    assert_eq!(events[0]["name"], "exception");
    assert_eq!(events[0]["time_unix_nano"], 1_700_000_000_100_000_000u64);
    assert_eq!(events[0]["attributes"]["exception.type"], "ValueError");
}

#[test]
fn a_trace_id_of_64_bits_gives_no_tid_and_traces_are_grouped() {
    let mut low_only = span(1, None);
    low_only.trace_id = [0u8; 8]
        .iter()
        .chain(&42u64.to_be_bytes())
        .copied()
        .collect();
    let other = span(2, None);
    let out = transcode(&request(vec![], vec![low_only, other, span(3, Some(2))])).unwrap();
    let traces = out.traces().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[1].spans.len(), 2);
    let first = &traces[0].spans[0];
    assert_eq!(first.trace_id, 42);
    assert!(!first.meta.contains_key("_dd.p.tid"));
}

#[test]
fn invalid_ids_are_refused_as_a_partial_success() {
    let mut short = span(1, None);
    short.trace_id = vec![1, 2, 3];
    let mut zero = span(0, None);
    zero.name = "zero".into();
    let mut bad_parent = span(5, None);
    bad_parent.parent_span_id = vec![1];
    let out = transcode(&request(
        vec![],
        vec![short, zero, bad_parent, span(4, None)],
    ))
    .unwrap();
    assert_eq!((out.spans, out.rejected), (1, 3));
    let why = out.first_error.unwrap();
    assert!(why.contains("trace_id has 3 bytes, not 16"), "{why}");
}

#[test]
fn malformed_protobuf_and_json_bodies() {
    for body in [
        &b"\xff\xff\xff"[..],
        b"\x0a\x05\x01",
        b"not protobuf at all",
        // A span (in a scope, in a resource) whose name is not UTF-8.
        b"\x0a\x08\x12\x06\x12\x04\x2a\x02\xc3\x28",
    ] {
        let e = transcode::transcode(body).unwrap_err();
        assert!(matches!(e, TranscodeError::Wire(_)), "{e}");
    }
    assert_eq!(
        decode_json(b"{}").unwrap(),
        ExportTraceServiceRequest::default()
    );
    for body in [&b"{"[..], b"[]", br#"{"resourceSpans": 3}"#, b"\xff"] {
        let e = decode_json(body).unwrap_err();
        assert!(
            matches!(e, RequestError::Json(_) | RequestError::JsonNotObject),
            "{e}"
        );
    }
}

#[test]
fn a_json_body_that_would_decode_to_far_more_than_its_size_is_refused() {
    // Empty spans: two bytes each, hundreds as structs.
    let json = format!(r#"{{"resourceSpans":[{}]}}"#, vec!["{}"; 200_000].join(","));
    let e = decode_json(json.as_bytes()).unwrap_err();
    assert!(matches!(e, RequestError::Budget(_)), "{e}");
    assert!(e.to_string().contains("bytes decoded"), "{e}");
}

#[test]
fn json_quirks_hex_ids_int_enums_and_int64_strings() {
    let body = r#"{"resourceSpans":[{
        "resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"json-svc"}},
            {"key":"process.pid","value":{"intValue":"321"}}]},
        "scopeSpans":[{"scope":{"name":"lib"},"spans":[{
            "traceId":"5B8EFFF798038103D269B633813FC60C",
            "spanId":"EEE19B7EC3C1B174",
            "parentSpanId":"EEE19B7EC3C1B173",
            "name":"work","kind":3,
            "startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"n","value":{"intValue":7}},
                          {"key":"big","value":{"intValue":"9007199254740993"}}],
            "status":{"code":2,"message":"failed"}}]}]}]}"#;
    let out = transcode(&decode_json(body.as_bytes()).unwrap()).unwrap();
    let traces = out.traces().unwrap();
    assert_eq!((out.spans, out.rejected), (1, 0));
    let s = &traces[0].spans[0];
    assert_eq!(s.trace_id, 0xD269B633813FC60C);
    assert_eq!(s.meta["_dd.p.tid"], "5b8efff798038103");
    assert_eq!(
        (s.span_id, s.parent_id),
        (0xEEE19B7EC3C1B174, 0xEEE19B7EC3C1B173)
    );
    assert_eq!(s.meta["span.kind"], "client", "kind 3 is CLIENT");
    assert_eq!(s.service, "json-svc");
    assert_eq!(s.metrics["process_id"], 321.0, "an int64 given as a string");
    assert_eq!(s.metrics["n"], 7.0, "an int64 given as a number");
    assert_eq!(s.metrics["big"], 9007199254740993i64 as f64);
    assert_eq!(s.duration, 1_000_000_000);
    assert_eq!((s.error, s.meta["error.msg"].as_str()), (1, "failed"));
    let bad_hex = body.replace("EEE19B7EC3C1B174", "not-hex-at-all!!");
    assert!(decode_json(bad_hex.as_bytes()).is_err());
}

#[test]
fn a_resource_written_into_every_trace_is_bounded() {
    // 1 MiB of resource attribute and 1,000 small spans of as many traces: 1 MB on the
    // wire, a gigabyte with the attribute in each trace's common span.
    let resource = vec![kv("big", text(&"x".repeat(1 << 20)))];
    let spans = (1..=1000u64)
        .map(|i| {
            let mut s = span(i, None);
            s.trace_id[..8].copy_from_slice(&i.to_be_bytes());
            s
        })
        .collect();
    let large = request(resource, spans);
    let e = transcode(&large).unwrap_err();
    assert!(e.to_string().contains("bytes transcoded"), "{e}");
    // The same attribute on one span goes through.
    let one = request(
        vec![kv("big", text(&"x".repeat(1 << 20)))],
        vec![span(1, None)],
    );
    let out = transcode(&one).unwrap();
    assert_eq!(out.traces().unwrap()[0].spans[0].meta["big"].len(), 1 << 20);
}

#[test]
fn a_key_given_twice_keeps_the_later_value_and_empty_values_are_left_out() {
    let mut s = span(1, None);
    s.attributes = vec![
        kv("env", text("from-span")),
        kv("empty", text("")),
        kv("n", Value::IntValue(1)),
        kv("n", Value::IntValue(2)),
    ];
    let resource = vec![
        kv("deployment.environment", text("prod")),
        kv("n", Value::IntValue(0)),
    ];
    let out = transcode(&request(resource, vec![s])).unwrap();
    let traces = out.traces().unwrap();
    let s = &traces[0].spans[0];
    assert_eq!(
        s.meta["env"], "from-span",
        "the span's attribute after the resource's"
    );
    assert_eq!(s.meta["deployment.environment"], "prod");
    assert!(!s.meta.contains_key("empty"));
    assert_eq!(s.metrics["n"], 2.0);
}

#[test]
fn what_a_trace_s_spans_share_is_written_once_in_its_common_span() {
    let resource = vec![
        kv("service.name", text("checkout")),
        kv("deployment.environment", text("prod")),
        kv("process.pid", Value::IntValue(4242)),
    ];
    let mut own = span(8, Some(7));
    // A span attribute of a key the mapping sets: the mapping's value wins, as before.
    own.attributes = vec![
        kv("otel.library.name", text("mine")),
        kv("process_id", Value::DoubleValue(1.0)),
    ];
    let out = transcode(&request(resource, vec![span(7, None), own])).unwrap();
    let raw = out.payload.decode().unwrap();
    assert_eq!(raw.len(), 1);
    let common = raw[0].common.as_ref().expect("a common span");
    assert_eq!(common.service, "checkout");
    assert_eq!(common.meta["deployment.environment"], "prod");
    assert_eq!(common.meta["otel.library.name"], "checkout");
    assert_eq!(common.metrics["process_id"], 4242.0);
    for s in &raw[0].spans {
        assert!(
            s.service.is_empty() && s.trace_id == 0,
            "in common only: {s:?}"
        );
        assert!(!s.meta.contains_key("deployment.environment"));
    }
    let traces = out.traces().unwrap();
    let [root, child] = &traces[0].spans[..] else {
        panic!("two spans")
    };
    assert_eq!((root.service.as_str(), root.trace_id), ("checkout", 0x3039));
    assert_eq!(root.meta["deployment.environment"], "prod");
    assert_eq!(child.meta["otel.library.name"], "checkout");
    assert_eq!(child.metrics["process_id"], 4242.0);
    // Spans of another scope make a trace of their own, with its scope's name.
    let mut two = request(
        vec![kv("service.name", text("checkout"))],
        vec![span(7, None)],
    );
    let mut other = two.resource_spans[0].scope_spans[0].clone();
    other.scope.as_mut().unwrap().name = "db".into();
    other.spans[0].span_id = 9u64.to_be_bytes().to_vec();
    two.resource_spans[0].scope_spans.push(other);
    let traces = transcode(&two).unwrap().traces().unwrap();
    let names: Vec<&str> = traces
        .iter()
        .map(|t| t.spans[0].meta["otel.library.name"].as_str())
        .collect();
    assert_eq!(names, ["checkout", "db"]);
}

#[test]
fn a_trace_s_spans_given_apart_make_a_trace_each_with_its_common_span() {
    let mut other = span(2, None);
    other.trace_id[15] ^= 0xff;
    let spans = vec![span(1, None), other, span(3, Some(1)), span(4, Some(1))];
    let resource = vec![kv("service.name", text("checkout"))];
    let out = transcode(&request(resource, spans)).unwrap();
    assert_eq!((out.spans, out.payload.traces), (4, 3));
    let traces = out.traces().unwrap();
    let ids: Vec<Vec<u64>> = traces
        .iter()
        .map(|t| t.spans.iter().map(|s| s.span_id).collect())
        .collect();
    assert_eq!(
        ids,
        vec![vec![1], vec![2], vec![3, 4]],
        "request order kept"
    );
    for trace in &traces {
        for span in &trace.spans {
            assert_eq!(span.service, "checkout");
            assert_eq!(span.meta["otel.library.name"], "checkout");
        }
    }
    assert_eq!(traces[0].spans[0].trace_id, traces[2].spans[1].trace_id);
    assert_ne!(traces[0].spans[0].trace_id, traces[1].spans[0].trace_id);
}
