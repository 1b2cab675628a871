//! OTLP spans as the relay's spans, as Datadog's published OTLP mapping has them: the low
//! 64 bits of the trace id as the trace id and the high half in `_dd.p.tid`; the kind in
//! `span.kind`; an error status as `error` = 1 with `error.msg`; `service.name` as the
//! service; string attributes in `meta`, numbers in `metrics`; events as JSON in `events`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use sts_proto::daemon::v1::{Span, Trace};

/// The service of spans whose resource has no `service.name` (Datadog's name for it).
pub const NO_SERVICE: &str = "otlpresourcenoservicename";

/// What a request transcodes to: traces of valid spans, and the spans refused.
#[derive(Debug, Default)]
pub struct Transcoded {
    pub traces: Vec<Trace>,
    pub spans: usize,
    pub rejected: usize,
    /// Why the first refused span was refused.
    pub first_error: Option<String>,
}

/// Transcodes every span; a span with an invalid id is refused (counted, not relayed).
pub fn transcode(request: &ExportTraceServiceRequest) -> Transcoded {
    let mut out = Transcoded::default();
    // Spans grouped by their 128-bit trace id, in arrival order.
    let mut by_trace: HashMap<u128, usize> = HashMap::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let common = Common::new(resource);
        for scope_spans in &resource_spans.scope_spans {
            let (scope, version) = scope_spans
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for span in &scope_spans.spans {
                match transcode_span(span, &common, scope, version) {
                    Ok((trace_id, span)) => {
                        let next = out.traces.len();
                        let at = *by_trace.entry(trace_id).or_insert(next);
                        if at == next {
                            out.traces.push(Trace::default());
                        }
                        out.traces[at].spans.push(span);
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
    out
}

/// What every span of a resource gets.
struct Common {
    service: String,
    pid: Option<f64>,
    meta: Vec<(String, String)>,
    metrics: Vec<(String, f64)>,
}

impl Common {
    fn new(resource: &[KeyValue]) -> Self {
        let mut common = Common {
            service: NO_SERVICE.to_string(),
            pid: None,
            meta: Vec::new(),
            metrics: Vec::new(),
        };
        for kv in resource {
            match (
                kv.key.as_str(),
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
            ) {
                ("service.name", Some(Value::StringValue(s))) if !s.is_empty() => {
                    common.service = s.clone()
                }
                ("process.pid", Some(Value::IntValue(pid))) if u32::try_from(*pid).is_ok() => {
                    common.pid = Some(*pid as f64)
                }
                ("deployment.environment" | "deployment.environment.name", Some(v)) => {
                    common.meta.push(("env".into(), text(v)))
                }
                ("service.version", Some(v)) => common.meta.push(("version".into(), text(v))),
                _ => {}
            }
            attribute(kv, &mut common.meta, &mut common.metrics);
        }
        common
    }
}

/// An attribute into `meta` (text) or `metrics` (numbers).
fn attribute(kv: &KeyValue, meta: &mut Vec<(String, String)>, metrics: &mut Vec<(String, f64)>) {
    if kv.key.is_empty() {
        return;
    }
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::IntValue(n)) => metrics.push((kv.key.clone(), *n as f64)),
        Some(Value::DoubleValue(x)) => metrics.push((kv.key.clone(), *x)),
        Some(v) => meta.push((kv.key.clone(), text(v))),
        None => {}
    }
}

/// A value as the text `meta` holds: strings as they are, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        other => json(other).to_string(),
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

/// An 8-byte id; `field` names it in the error.
fn id64(bytes: &[u8], field: &str) -> Result<u64, String> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{field} has {} bytes, not 8", bytes.len()))?;
    Ok(u64::from_be_bytes(array))
}

fn transcode_span(
    span: &OtlpSpan,
    common: &Common,
    scope: &str,
    scope_version: &str,
) -> Result<(u128, Span), String> {
    let trace_id: [u8; 16] = span.trace_id.as_slice().try_into().map_err(|_| {
        format!(
            "span {:?}: trace_id has {} bytes, not 16",
            span.name,
            span.trace_id.len()
        )
    })?;
    let trace_id = u128::from_be_bytes(trace_id);
    let span_id =
        id64(&span.span_id, "span_id").map_err(|e| format!("span {:?}: {e}", span.name))?;
    if trace_id == 0 || span_id == 0 {
        return Err(format!("span {:?}: an id is all zeroes", span.name));
    }
    let parent_id = if span.parent_span_id.is_empty() {
        0
    } else {
        id64(&span.parent_span_id, "parent_span_id")
            .map_err(|e| format!("span {:?}: {e}", span.name))?
    };
    let mut meta: Vec<(String, String)> = common.meta.clone();
    let mut metrics: Vec<(String, f64)> = common.metrics.clone();
    for kv in &span.attributes {
        attribute(kv, &mut meta, &mut metrics);
    }
    let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
    let kind_name = match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal | SpanKind::Unspecified => "internal",
    };
    meta.push(("span.kind".into(), kind_name.into()));
    let high = (trace_id >> 64) as u64;
    if high != 0 {
        meta.push(("_dd.p.tid".into(), format!("{high:016x}")));
    }
    meta.push(("otel.trace_id".into(), format!("{trace_id:032x}")));
    if !scope.is_empty() {
        meta.push(("otel.library.name".into(), scope.into()));
    }
    if !scope_version.is_empty() {
        meta.push(("otel.library.version".into(), scope_version.into()));
    }
    let status = span.status.as_ref();
    let code = status
        .and_then(|s| StatusCode::try_from(s.code).ok())
        .unwrap_or(StatusCode::Unset);
    let error = code == StatusCode::Error;
    meta.push((
        "otel.status_code".into(),
        match code {
            StatusCode::Unset => "Unset",
            StatusCode::Ok => "Ok",
            StatusCode::Error => "Error",
        }
        .into(),
    ));
    if error {
        let message = status.map(|s| s.message.as_str()).unwrap_or_default();
        if !message.is_empty() {
            meta.push(("otel.status_description".into(), message.into()));
            meta.push(("error.msg".into(), message.into()));
        }
        if let Some(exception) = span.events.iter().find(|e| e.name == "exception") {
            exception_meta(exception, &mut meta);
        }
    }
    if !span.events.is_empty() {
        meta.push(("events".into(), events_json(&span.events)));
    }
    if let Some(pid) = common.pid {
        metrics.push(("process_id".into(), pid));
    }
    let start = i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX);
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    let r#type = match kind {
        SpanKind::Server => "web",
        SpanKind::Client if meta.iter().any(|(k, _)| k == "db.system") => "db",
        SpanKind::Client => "http",
        _ => "custom",
    };
    let library = if scope.is_empty() {
        "opentelemetry"
    } else {
        scope
    };
    let resource = resource_name(span, kind, &meta);
    Ok((
        trace_id,
        Span {
            service: common.service.clone(),
            name: format!("{library}.{kind_name}"),
            resource,
            trace_id: trace_id as u64,
            span_id,
            parent_id,
            start,
            duration: i64::try_from(duration).unwrap_or(i64::MAX),
            error: i32::from(error),
            // Later entries win, as in the Datadog path.
            meta: meta.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            metrics: metrics.into_iter().collect(),
            r#type: r#type.into(),
        },
    ))
}

/// The resource: `<method> <route>` for an HTTP server span, else the span's name.
fn resource_name(span: &OtlpSpan, kind: SpanKind, meta: &[(String, String)]) -> String {
    let get = |key: &str| {
        meta.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let method = get("http.request.method").or_else(|| get("http.method"));
    match (kind, method, get("http.route")) {
        (SpanKind::Server, Some(method), Some(route)) => format!("{method} {route}"),
        (SpanKind::Server, Some(method), None) => method.to_string(),
        _ if span.name.is_empty() => "unnamed".to_string(),
        _ => span.name.clone(),
    }
}

/// `error.type`, `error.msg` and `error.stack` from an `exception` event.
fn exception_meta(event: &Event, meta: &mut Vec<(String, String)>) {
    for kv in &event.attributes {
        let key = match kv.key.as_str() {
            "exception.type" => "error.type",
            "exception.message" => "error.msg",
            "exception.stacktrace" => "error.stack",
            _ => continue,
        };
        if let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            meta.push((key.into(), text(value)));
        }
    }
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
