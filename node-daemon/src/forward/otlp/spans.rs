//! Correlated spans as OTLP: the reverse of Datadog's published OTel mapping, as the
//! sidecar applies it (`trace-sidecar/src/otlp/transcode.rs`). The 128-bit trace id from
//! `otel.trace_id`, else `_dd.p.tid` and the 64-bit id; `span.kind` as the kind; `error`
//! as an error status with `error.msg`; the `events` JSON as events; the resource as the
//! span's name (the Datadog name in `operation.name`, the resource in `resource.name`);
//! `service.name` and the process, container and task the span was correlated with as
//! resource attributes; the other meta entries and metrics as attributes.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sts_proto::daemon::v1::Span as RelaySpan;

use super::known::Known;
use super::resource::{double, int, string};
use crate::span::{
    CorrelatedSpan, META_CONTAINER_ID, META_CONTAINER_NAME, META_KIND, META_PID, META_STARTTIME,
    META_TASK_ARN, META_TASK_FAMILY, META_TASK_REVISION, METRIC_PROCESS_ID,
};

/// Meta entries the mapping turns into something else than an attribute.
const MAPPED: [&str; 8] = [
    "_dd.p.tid",
    "otel.trace_id",
    META_KIND,
    "otel.status_code",
    "otel.status_description",
    "events",
    "otel.library.name",
    "otel.library.version",
];

/// The spans as one request, grouped by resource (service, process, container) and
/// scope. Spans that do not decode are left out and counted in the second value.
pub(super) fn request(spans: &[CorrelatedSpan], known: &Known) -> (ExportTraceServiceRequest, u64) {
    let mut request = ExportTraceServiceRequest::default();
    let mut resources: HashMap<(String, String, String), usize> = HashMap::new();
    let mut undecodable = 0;
    for correlated in spans {
        let Ok(span) = correlated.decode() else {
            undecodable += 1;
            continue;
        };
        let meta = |key: &str| span.meta.get(key).map(String::as_str).unwrap_or_default();
        let key = (
            span.service.clone(),
            meta(META_PID).to_string(),
            meta(META_CONTAINER_ID).to_string(),
        );
        let at = *resources.entry(key).or_insert_with(|| {
            request.resource_spans.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: resource_of(&span, known),
                    dropped_attributes_count: 0,
                }),
                scope_spans: Vec::new(),
                schema_url: String::new(),
            });
            request.resource_spans.len() - 1
        });
        let scope = InstrumentationScope {
            name: meta("otel.library.name").to_string(),
            version: meta("otel.library.version").to_string(),
            ..InstrumentationScope::default()
        };
        let scopes = &mut request.resource_spans[at].scope_spans;
        let index = match scopes.iter().position(|s| s.scope.as_ref() == Some(&scope)) {
            Some(index) => index,
            None => {
                scopes.push(ScopeSpans {
                    scope: Some(scope),
                    spans: Vec::new(),
                    schema_url: String::new(),
                });
                scopes.len() - 1
            }
        };
        scopes[index].spans.push(otlp_span(&span));
    }
    (request, undecodable)
}

/// `service.name`, the host's, and the process's (from the last cycle, when the pid and
/// its start time match) or else what correlation wrote on the span.
fn resource_of(span: &RelaySpan, known: &Known) -> Vec<KeyValue> {
    let meta = |key: &str| span.meta.get(key).filter(|v| !v.is_empty());
    let mut attributes = vec![string("service.name", span.service.as_str())];
    attributes.extend(known.host.iter().cloned());
    let pid: Option<u32> = meta(META_PID).and_then(|p| p.parse().ok());
    let started: Option<u64> = meta(META_STARTTIME).and_then(|t| t.parse().ok());
    if let Some(process) = pid.and_then(|pid| known.process(pid, started)) {
        attributes.extend(process.iter().cloned());
        return attributes;
    }
    if let Some(pid) = pid {
        attributes.push(int("process.pid", i64::from(pid)));
    }
    let from_meta = [
        (META_CONTAINER_ID, "container.id"),
        (META_CONTAINER_NAME, "container.name"),
        (META_TASK_ARN, "aws.ecs.task.arn"),
        (META_TASK_FAMILY, "aws.ecs.task.family"),
        (META_TASK_REVISION, "aws.ecs.task.revision"),
    ];
    for (from, to) in from_meta {
        if let Some(value) = meta(from) {
            attributes.push(string(to, value.as_str()));
        }
    }
    attributes
}

fn otlp_span(span: &RelaySpan) -> Span {
    let meta = |key: &str| span.meta.get(key).map(String::as_str).unwrap_or_default();
    let trace_id = u128::from_str_radix(meta("otel.trace_id"), 16).unwrap_or_else(|_| {
        let high = u64::from_str_radix(meta("_dd.p.tid"), 16).unwrap_or(0);
        u128::from(high) << 64 | u128::from(span.trace_id)
    });
    let kind = match meta(META_KIND) {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    };
    let status = match (span.error != 0, meta("otel.status_code")) {
        (true, _) => Status {
            code: StatusCode::Error.into(),
            message: meta("error.msg").to_string(),
        },
        (false, "Ok") => Status {
            code: StatusCode::Ok.into(),
            message: String::new(),
        },
        _ => Status::default(),
    };
    let mut attributes = vec![
        string("operation.name", span.name.as_str()),
        string("resource.name", span.resource.as_str()),
    ];
    if !span.r#type.is_empty() {
        attributes.push(string("span.type", span.r#type.as_str()));
    }
    let mut meta_entries: Vec<(&String, &String)> = span
        .meta
        .iter()
        .filter(|(k, _)| !MAPPED.contains(&k.as_str()))
        .collect();
    meta_entries.sort_unstable();
    attributes.extend(meta_entries.into_iter().map(|(k, v)| string(k, v.as_str())));
    let mut metrics: Vec<(&String, &f64)> = span
        .metrics
        .iter()
        .filter(|(k, _)| k.as_str() != METRIC_PROCESS_ID)
        .collect();
    metrics.sort_unstable_by(|a, b| a.0.cmp(b.0));
    attributes.extend(metrics.into_iter().map(|(k, v)| double(k, *v)));
    let start = u64::try_from(span.start).unwrap_or(0);
    let name = match span.resource.is_empty() {
        true => span.name.clone(),
        false => span.resource.clone(),
    };
    Span {
        trace_id: trace_id.to_be_bytes().to_vec(),
        span_id: span.span_id.to_be_bytes().to_vec(),
        parent_span_id: match span.parent_id {
            0 => Vec::new(),
            id => id.to_be_bytes().to_vec(),
        },
        name,
        kind: kind.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(u64::try_from(span.duration).unwrap_or(0)),
        attributes,
        events: events(meta("events")),
        status: Some(status),
        ..Span::default()
    }
}

/// The events of the `events` JSON (`[{"name", "time_unix_nano", "attributes"}]`);
/// none when it does not parse.
fn events(json: &str) -> Vec<Event> {
    if json.is_empty() {
        return Vec::new();
    }
    let Ok(serde_json::Value::Array(list)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|event| {
            let attributes = event
                .get("attributes")
                .and_then(|a| a.as_object())
                .map(|object| {
                    object
                        .iter()
                        .filter_map(|(k, v)| json_attribute(k, v))
                        .collect()
                })
                .unwrap_or_default();
            Some(Event {
                name: event.get("name")?.as_str()?.to_string(),
                time_unix_nano: event
                    .get("time_unix_nano")
                    .and_then(|t| t.as_u64())
                    .unwrap_or(0),
                attributes,
                dropped_attributes_count: 0,
            })
        })
        .collect()
}

fn json_attribute(key: &str, value: &serde_json::Value) -> Option<KeyValue> {
    let value = match value {
        serde_json::Value::String(s) => Value::StringValue(s.clone()),
        serde_json::Value::Bool(b) => Value::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64()?),
        },
        other => Value::StringValue(other.to_string()),
    };
    Some(KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn relay_span(meta: &[(&str, &str)]) -> RelaySpan {
        RelaySpan {
            service: "web".into(),
            name: "flask.request".into(),
            resource: "GET /item".into(),
            trace_id: 0x1122,
            span_id: 7,
            parent_id: 3,
            start: 1_000,
            duration: 50,
            error: 1,
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics: Map::from([("it.value".into(), 2.5), ("process_id".into(), 42.0)]),
            r#type: "web".into(),
        }
    }

    #[test]
    fn ids_kind_status_and_events_map_back() {
        let span = otlp_span(&relay_span(&[
            ("_dd.p.tid", "00000000000000ff"),
            ("span.kind", "server"),
            ("error.msg", "bad row"),
            (
                "events",
                r#"[{"name":"exception","time_unix_nano":5,"attributes":{"exception.type":"ValueError","n":3}}]"#,
            ),
            ("env", "prod"),
        ]));
        let mut want = [0u8; 16];
        want[7] = 0xff;
        want[14] = 0x11;
        want[15] = 0x22;
        assert_eq!(span.trace_id, want);
        assert_eq!(span.span_id, 7u64.to_be_bytes());
        assert_eq!(span.parent_span_id, 3u64.to_be_bytes());
        assert_eq!(span.name, "GET /item");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (1_000, 1_050)
        );
        let status = span.status.unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "bad row");
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "exception");
        assert_eq!(span.events[0].attributes.len(), 2);
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(
            keys.contains(&"env") && keys.contains(&"it.value"),
            "{keys:?}"
        );
        for dropped in ["_dd.p.tid", "span.kind", "events", "process_id"] {
            assert!(!keys.contains(&dropped), "{dropped} in {keys:?}");
        }
    }

    #[test]
    fn an_otel_trace_id_is_taken_whole() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let span = otlp_span(&relay_span(&[("otel.trace_id", id)]));
        assert_eq!(
            span.trace_id,
            u128::from_str_radix(id, 16).unwrap().to_be_bytes()
        );
    }

    #[test]
    fn spans_group_by_service_and_process_and_undecodable_ones_are_counted() {
        let a = relay_span(&[("span.pid", "10")]);
        let mut b = relay_span(&[("span.pid", "11"), ("container.id", "c1")]);
        b.span_id = 8;
        let mut spans: Vec<CorrelatedSpan> = [&a, &b, &a]
            .iter()
            .map(|s| CorrelatedSpan::from_span(s))
            .collect();
        spans.push(CorrelatedSpan {
            raw: bytes::Bytes::from_static(b"\xff\xff"),
            ..CorrelatedSpan::default()
        });
        let (request, undecodable) = request(&spans, &Known::default());
        assert_eq!(undecodable, 1);
        assert_eq!(request.resource_spans.len(), 2);
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2);
        let attributes = &request.resource_spans[1]
            .resource
            .as_ref()
            .unwrap()
            .attributes;
        assert!(attributes.contains(&string("container.id", "c1")));
        assert!(attributes.contains(&int("process.pid", 11)));
        assert!(attributes.contains(&string("service.name", "web")));
    }
}
