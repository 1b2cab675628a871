//! OTLP spans as the relay's spans, as Datadog's published OTLP mapping has them: the low
//! 64 bits of the trace id as the trace id and the high half in `_dd.p.tid`; the kind in
//! `span.kind`; an error status as `error` = 1 with `error.msg`; `service.name` as the
//! service; string attributes in `meta`, numbers in `metrics`; events as JSON in `events`.
//!
//! Written straight as the relay's protobuf, as the Datadog formats are (`decode`'s
//! `ProtoSink`), with no `Span` structs, owned strings or hash maps in between: text is
//! borrowed from the request. A key given twice (a resource attribute a span attribute
//! repeats) is written twice and the later one wins when read, as a map built in that order
//! keeps it. Every resource attribute is written into each of its spans, so a request's
//! transcoded size is not bounded by its own: the output is charged to a budget, and a
//! request past it is refused whole.

use std::borrow::Cow;
use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;
use sts_proto::daemon::v1::Trace;

use crate::decode::{self, Budget, Fail, Id, Limits, ProtoSink, Sink, Text, Time};

/// The service of spans whose resource has no `service.name` (Datadog's name for it).
pub const NO_SERVICE: &str = "otlpresourcenoservicename";

/// What a request transcodes to: its valid spans as relay protobuf, and the spans refused.
#[derive(Debug, Default)]
pub struct Transcoded {
    /// `TracePayload.traces` fields, one per trace id (see [`decode::Transcoded`]).
    pub payload: decode::Transcoded,
    pub spans: usize,
    pub rejected: usize,
    /// Why the first refused span was refused.
    pub first_error: Option<String>,
}

impl Transcoded {
    /// The traces, decoded (for tests and tools; the relay sends the bytes).
    pub fn traces(&self) -> Result<Vec<Trace>, prost::DecodeError> {
        self.payload.decode()
    }
}

/// Why a request was not transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("its spans would take more than {0} bytes transcoded (the resource's attributes are written into every span)")]
    TooLarge(usize),
}

/// Transcodes every span within the default budget of a body the request's size; a span
/// with an invalid id is refused (counted, not relayed).
pub fn transcode(request: &ExportTraceServiceRequest) -> Result<Transcoded, TranscodeError> {
    transcode_within(request, Limits::DEFAULT.budget(request.encoded_len()))
}

/// Transcodes every span, the output taking at most `limit` bytes.
pub fn transcode_within(
    request: &ExportTraceServiceRequest,
    limit: usize,
) -> Result<Transcoded, TranscodeError> {
    let mut out = Transcoded::default();
    let resources: Vec<Common> = request
        .resource_spans
        .iter()
        .map(|r| Common::new(r.resource.as_ref().map_or(&[], |r| &r.attributes[..])))
        .collect();
    // Valid spans grouped by their 128-bit trace id, in arrival order.
    let mut by_trace: HashMap<u128, usize> = HashMap::new();
    let mut traces: Vec<Vec<Valid>> = Vec::new();
    for (resource, resource_spans) in request.resource_spans.iter().enumerate() {
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for span in &scope_spans.spans {
                match ids(span) {
                    Ok((trace_id, span_id, parent_id)) => {
                        let next = traces.len();
                        let at = *by_trace.entry(trace_id).or_insert(next);
                        if at == next {
                            traces.push(Vec::new());
                        }
                        traces[at].push(Valid {
                            span,
                            resource,
                            scope,
                            trace_id,
                            span_id,
                            parent_id,
                        });
                        out.spans += 1;
                    }
                    Err(e) => {
                        out.rejected += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    let too_large = |_: Fail| TranscodeError::TooLarge(limit);
    let mut budget = Budget::new(limit, 0);
    // About the request's own size, as a first guess.
    let capacity = request.encoded_len().saturating_add(256);
    let mut sink = ProtoSink::new(&mut budget, capacity).map_err(too_large)?;
    let mut scratch = Scratch::default();
    for trace in &traces {
        sink.trace(trace.len(), 0).map_err(too_large)?;
        for valid in trace {
            let common = &resources[valid.resource];
            write_span(&mut sink, valid, common, &mut scratch).map_err(too_large)?;
        }
        sink.trace_end(0).map_err(too_large)?;
    }
    out.payload = decode::Transcoded {
        bytes: sink.out,
        traces: sink.traces,
        spans: sink.spans,
    };
    Ok(out)
}

/// A span with valid ids, where it came from.
struct Valid<'a> {
    span: &'a OtlpSpan,
    resource: usize,
    scope: (&'a str, &'a str),
    trace_id: u128,
    span_id: u64,
    parent_id: u64,
}

/// What every span of a resource gets.
struct Common<'a> {
    service: &'a str,
    pid: Option<f64>,
    meta: Vec<(&'a str, Cow<'a, str>)>,
    metrics: Vec<(&'a str, f64)>,
}

impl<'a> Common<'a> {
    fn new(resource: &'a [KeyValue]) -> Self {
        let mut common = Common {
            service: NO_SERVICE,
            pid: None,
            meta: Vec::new(),
            metrics: Vec::new(),
        };
        for kv in resource {
            match (kv.key.as_str(), value(kv)) {
                ("service.name", Some(Value::StringValue(s))) if !s.is_empty() => {
                    common.service = s
                }
                ("process.pid", Some(Value::IntValue(pid))) if u32::try_from(*pid).is_ok() => {
                    common.pid = Some(*pid as f64)
                }
                ("deployment.environment" | "deployment.environment.name", Some(v)) => {
                    common.meta.push(("env", text(v)))
                }
                ("service.version", Some(v)) => common.meta.push(("version", text(v))),
                _ => {}
            }
            match attribute(kv) {
                Some(Attribute::Meta(key, v)) => common.meta.push((key, v)),
                Some(Attribute::Metric(key, x)) => common.metrics.push((key, x)),
                None => {}
            }
        }
        common
    }

    /// The text value of `key` as a span's meta has it: its own attributes first, the
    /// resource's after, the later of two given.
    fn meta_of<'s>(&'s self, span: &'s OtlpSpan, key: &str) -> Option<Cow<'s, str>> {
        let own = span
            .attributes
            .iter()
            .rev()
            .find_map(|kv| match attribute(kv) {
                Some(Attribute::Meta(k, v)) if k == key => Some(v),
                _ => None,
            });
        own.or_else(|| {
            let found = self.meta.iter().rev().find(|(k, _)| *k == key);
            found.map(|(_, v)| Cow::Borrowed(v.as_ref()))
        })
    }
}

fn value(kv: &KeyValue) -> Option<&Value> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

/// An attribute as the relay keeps it: text in `meta`, numbers in `metrics`.
enum Attribute<'a> {
    Meta(&'a str, Cow<'a, str>),
    Metric(&'a str, f64),
}

fn attribute(kv: &KeyValue) -> Option<Attribute<'_>> {
    if kv.key.is_empty() {
        return None;
    }
    Some(match value(kv)? {
        Value::IntValue(n) => Attribute::Metric(&kv.key, *n as f64),
        Value::DoubleValue(x) => Attribute::Metric(&kv.key, *x),
        v => Attribute::Meta(&kv.key, text(v)),
    })
}

/// A value as the text `meta` holds: strings as they are, the rest as JSON.
fn text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::StringValue(s) => Cow::Borrowed(s),
        Value::BoolValue(true) => Cow::Borrowed("true"),
        Value::BoolValue(false) => Cow::Borrowed("false"),
        other => Cow::Owned(json(other).to_string()),
    }
}

fn json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::from(s.as_str()),
        Value::BoolValue(b) => J::from(*b),
        Value::IntValue(n) => J::from(*n),
        Value::DoubleValue(x) => J::from(*x),
        Value::BytesValue(b) => J::from(hex(b)),
        Value::ArrayValue(a) => J::Array(a.values.iter().filter_map(any_json).collect()),
        Value::KvlistValue(kv) => J::Object(attributes_json(&kv.values)),
    }
}

fn any_json(value: &AnyValue) -> Option<serde_json::Value> {
    value.value.as_ref().map(json)
}

fn attributes_json(kvs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), any_json(kv.value.as_ref()?)?)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` in `digits` lowercase hex digits (at most 32), into `buf`.
fn hex_digits(value: u128, digits: usize, buf: &mut [u8; 32]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *b = HEX[((value >> shift) & 0xf) as usize];
    }
    &buf[..digits]
}

/// An 8-byte id; `field` names it in the error.
fn id64(bytes: &[u8], field: &str) -> Result<u64, String> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{field} has {} bytes, not 8", bytes.len()))?;
    Ok(u64::from_be_bytes(array))
}

/// The span's trace, span and parent ids, or why they are invalid.
fn ids(span: &OtlpSpan) -> Result<(u128, u64, u64), String> {
    let named = |e: String| format!("span {:?}: {e}", span.name);
    let trace_id: [u8; 16] = span.trace_id.as_slice().try_into().map_err(|_| {
        named(format!(
            "trace_id has {} bytes, not 16",
            span.trace_id.len()
        ))
    })?;
    let trace_id = u128::from_be_bytes(trace_id);
    let span_id = id64(&span.span_id, "span_id").map_err(named)?;
    if trace_id == 0 || span_id == 0 {
        return Err(named("an id is all zeroes".into()));
    }
    let parent_id = if span.parent_span_id.is_empty() {
        0
    } else {
        id64(&span.parent_span_id, "parent_span_id").map_err(named)?
    };
    Ok((trace_id, span_id, parent_id))
}

/// Buffers reused from span to span.
#[derive(Default)]
struct Scratch {
    name: String,
    resource: String,
}

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal | SpanKind::Unspecified => "internal",
    }
}

/// One span, its fields and then its meta and metrics in the order a map built from them
/// would be: the resource's, the span's attributes, then what the mapping adds.
fn write_span(
    sink: &mut ProtoSink<'_>,
    valid: &Valid<'_>,
    common: &Common<'_>,
    scratch: &mut Scratch,
) -> Result<(), Fail> {
    let span = valid.span;
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let kind_name = kind_name(kind);
    let (scope, scope_version) = valid.scope;
    let library = if scope.is_empty() {
        "opentelemetry"
    } else {
        scope
    };
    scratch.name.clear();
    scratch.name.push_str(library);
    scratch.name.push('.');
    scratch.name.push_str(kind_name);
    let resource = resource_name(span, kind, common, &mut scratch.resource);
    let r#type = match kind {
        SpanKind::Server => "web",
        SpanKind::Client if common.meta_of(span, "db.system").is_some() => "db",
        SpanKind::Client => "http",
        _ => "custom",
    };
    let status = span.status.as_ref();
    let code = status
        .and_then(|s| StatusCode::try_from(s.code).ok())
        .unwrap_or(StatusCode::Unset);
    let error = code == StatusCode::Error;
    let start = i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX);
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);

    sink.span(0)?;
    sink.text(Text::Service, common.service.as_bytes(), 0)?;
    sink.text(Text::Name, scratch.name.as_bytes(), 0)?;
    sink.text(Text::Resource, resource.as_bytes(), 0)?;
    sink.id(Id::Trace, valid.trace_id as u64, 0)?;
    sink.id(Id::Span, valid.span_id, 0)?;
    sink.id(Id::Parent, valid.parent_id, 0)?;
    sink.time(Time::Start, start, 0)?;
    sink.time(
        Time::Duration,
        i64::try_from(duration).unwrap_or(i64::MAX),
        0,
    )?;
    sink.error(i32::from(error), 0)?;
    sink.text(Text::Type, r#type.as_bytes(), 0)?;

    // Meta: an empty value is left out, as the Datadog path leaves it out.
    let mut meta = |key: &str, value: &str| {
        if value.is_empty() {
            Ok(())
        } else {
            sink.meta_entry(key.as_bytes(), value.as_bytes(), 0)
        }
    };
    for (key, value) in &common.meta {
        meta(key, value)?;
    }
    for kv in &span.attributes {
        if let Some(Attribute::Meta(key, value)) = attribute(kv) {
            meta(key, &value)?;
        }
    }
    meta("span.kind", kind_name)?;
    let mut hex = [0u8; 32];
    let high = (valid.trace_id >> 64) as u64;
    if high != 0 {
        let digits = hex_digits(u128::from(high), 16, &mut hex);
        meta("_dd.p.tid", std::str::from_utf8(digits).unwrap_or_default())?;
    }
    let digits = hex_digits(valid.trace_id, 32, &mut hex);
    meta(
        "otel.trace_id",
        std::str::from_utf8(digits).unwrap_or_default(),
    )?;
    meta("otel.library.name", scope)?;
    meta("otel.library.version", scope_version)?;
    meta(
        "otel.status_code",
        match code {
            StatusCode::Unset => "Unset",
            StatusCode::Ok => "Ok",
            StatusCode::Error => "Error",
        },
    )?;
    if error {
        let message = status.map(|s| s.message.as_str()).unwrap_or_default();
        meta("otel.status_description", message)?;
        meta("error.msg", message)?;
        if let Some(exception) = span.events.iter().find(|e| e.name == "exception") {
            for (key, value) in exception_meta(exception) {
                meta(key, &value)?;
            }
        }
    }
    if !span.events.is_empty() {
        meta("events", &events_json(&span.events))?;
    }

    for (key, value) in &common.metrics {
        sink.metric_entry(key.as_bytes(), *value, 0)?;
    }
    for kv in &span.attributes {
        if let Some(Attribute::Metric(key, value)) = attribute(kv) {
            sink.metric_entry(key.as_bytes(), value, 0)?;
        }
    }
    if let Some(pid) = common.pid {
        sink.metric_entry(b"process_id", pid, 0)?;
    }
    sink.span_end(0)
}

/// The resource: `<method> <route>` for an HTTP server span, else the span's name.
fn resource_name<'s>(
    span: &'s OtlpSpan,
    kind: SpanKind,
    common: &Common<'_>,
    buf: &'s mut String,
) -> &'s str {
    if kind == SpanKind::Server {
        let method = common
            .meta_of(span, "http.request.method")
            .or_else(|| common.meta_of(span, "http.method"));
        if let Some(method) = method {
            buf.clear();
            buf.push_str(&method);
            if let Some(route) = common.meta_of(span, "http.route") {
                buf.push(' ');
                buf.push_str(&route);
            }
            return buf;
        }
    }
    if span.name.is_empty() {
        "unnamed"
    } else {
        &span.name
    }
}

/// `error.type`, `error.msg` and `error.stack` from an `exception` event.
fn exception_meta(event: &Event) -> impl Iterator<Item = (&'static str, Cow<'_, str>)> {
    event.attributes.iter().filter_map(|kv| {
        let key = match kv.key.as_str() {
            "exception.type" => "error.type",
            "exception.message" => "error.msg",
            "exception.stacktrace" => "error.stack",
            _ => return None,
        };
        Some((key, text(value(kv)?)))
    })
}

/// The events as the JSON array Datadog keeps in `events`.
fn events_json(events: &[Event]) -> String {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let mut event = serde_json::json!({
                "name": e.name,
                "time_unix_nano": e.time_unix_nano,
            });
            if !e.attributes.is_empty() {
                event["attributes"] = serde_json::Value::Object(attributes_json(&e.attributes));
            }
            if e.dropped_attributes_count > 0 {
                event["dropped_attributes_count"] = e.dropped_attributes_count.into();
            }
            event
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}
