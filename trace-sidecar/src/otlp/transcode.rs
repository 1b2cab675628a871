//! OTLP spans as the relay's spans, as Datadog's published OTLP mapping has them: the low
//! 64 bits of the trace id as the trace id and the high half in `_dd.p.tid`; the kind in
//! `span.kind`; an error status as `error` = 1 with `error.msg`; `service.name` as the
//! service; string attributes in `meta`, numbers in `metrics`; events as JSON in `events`.
//!
//! Read from the request's protobuf where it lies (`wire.rs`) and written straight as the
//! relay's protobuf, as the Datadog formats are (`decode`'s `ProtoSink`): no message
//! structs, owned strings or hash maps in between. A key given twice (a resource attribute
//! a span attribute repeats) is written twice and the later one wins when read, as a map
//! built in that order keeps it.
//!
//! The spans of one trace that follow each other in a `ScopeSpans` make one relay
//! `Trace`, whose `common` span holds what they all carry (relay.proto): the service, the
//! trace id, the resource's attributes, `_dd.p.tid`, `otel.trace_id` and
//! `otel.library.*`, written once rather than into every span; the daemon forwards each
//! span with them. Spans are read and written in one pass, in request order: a trace's
//! spans given apart (another trace's in between) make a `Trace` each, as a Datadog
//! tracer's chunks of one trace do. Those fields are written again for every `Trace`, so
//! a request's transcoded size is not bounded by its own: the output is charged to a
//! budget, and a request past it is refused whole.

use std::borrow::Cow;
use std::mem::size_of;

use prost::Message;
use sts_proto::daemon::v1::Trace;

use super::wire::{any, key_value, Any, Field, Fields, WireError, MAX_DEPTH};
use crate::decode::{self, Budget, Fail, Id, Limits, ProtoSink, Sink, Text, Time};

/// The service of spans whose resource has no `service.name` (Datadog's name for it).
pub const NO_SERVICE: &str = "otlpresourcenoservicename";

/// The metric the mapping sets from the resource's `process.pid`.
const METRIC_PID: &str = "process_id";

/// OTLP's enums, by number: `SpanKind`, `StatusCode`.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;
const KIND_PRODUCER: i32 = 4;
const KIND_CONSUMER: i32 = 5;
const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// What a request transcodes to: its valid spans as relay protobuf, and the spans refused.
#[derive(Debug, Default)]
pub struct Transcoded {
    /// `TracePayload.traces` fields, one per trace id (see [`decode::Transcoded`]).
    pub payload: decode::Transcoded,
    pub spans: usize,
    pub rejected: usize,
    /// Why the first refused span was refused.
    pub first_error: Option<String>,
    /// The SDK as the first resource names it.
    pub sdk: Sdk,
}

/// `telemetry.sdk.language`, `telemetry.sdk.version` and `container.id` of the first
/// resource (string values; empty when not given).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sdk {
    pub language: String,
    pub version: String,
    pub container_id: String,
}

impl Transcoded {
    /// The traces, decoded, each span with its trace's `common` fields merged in as the
    /// daemon forwards it (for tests and tools; the relay sends the bytes).
    pub fn traces(&self) -> Result<Vec<Trace>, prost::DecodeError> {
        let mut traces = self.payload.decode()?;
        for trace in &mut traces {
            if let Some(common) = trace.common.take() {
                for span in &mut trace.spans {
                    let mut merged = common.clone();
                    merged.merge(span.encode_to_vec().as_slice())?;
                    *span = merged;
                }
            }
        }
        Ok(traces)
    }
}

/// Why a request was not transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Wire(#[from] WireError),
    #[error("its spans would take more than {0} bytes transcoded (the resource's attributes are written into every trace)")]
    TooLarge(usize),
}

/// Transcodes the protobuf `ExportTraceServiceRequest` `body` within the default decode
/// budget of its size; a span with an invalid id is refused (counted, not relayed).
pub fn transcode(body: &[u8]) -> Result<Transcoded, TranscodeError> {
    transcode_within(body, Limits::DEFAULT.budget(body.len()))
}

/// The output's first allocation for a request of `body` bytes: about what a request of
/// small spans transcodes to (a span's mapped fields make up for the attribute wrapping it
/// loses); the buffer grows past it, and the relay trims what is left over.
fn capacity(body: usize) -> usize {
    body.saturating_add(body / 2).saturating_add(4096)
}

/// Transcodes `body`, its output and what the transcoder holds taking at most `limit`
/// bytes.
pub fn transcode_within(body: &[u8], limit: usize) -> Result<Transcoded, TranscodeError> {
    let too_large = |_: Fail| TranscodeError::TooLarge(limit);
    let mut budget = Budget::new(limit, body.len());
    let mut out = Transcoded::default();
    let mut sink = ProtoSink::new(&mut budget, capacity(body.len())).map_err(too_large)?;
    let mut scratch = Scratch::default();
    // The trace being written: its id and its `ScopeSpans` (numbered in request order).
    let mut open: Option<(u128, usize)> = None;
    let mut scopes = 0usize;
    let mut first_resource = true;
    for field in Fields::new(body, 0) {
        let field = field?;
        if field.number != 1 {
            continue;
        }
        let resource_spans = field.message()?;
        let common = Common::new(resource_spans, sink.budget()).map_err(|e| e.error(limit))?;
        if std::mem::take(&mut first_resource) {
            out.sdk = common.sdk.clone();
        }
        for scope_spans in resource_spans {
            let scope_spans = scope_spans?;
            if scope_spans.number != 2 {
                continue;
            }
            let scope_spans = scope_spans.message()?;
            let scope = scope(scope_spans)?;
            scopes += 1;
            for span in scope_spans {
                let span = span?;
                if span.number != 2 {
                    continue;
                }
                scratch.attributes.clear();
                let span = match read_span(span.message()?, &mut scratch.attributes)? {
                    Ok(span) => span,
                    Err(e) => {
                        out.rejected += 1;
                        out.first_error.get_or_insert(e);
                        continue;
                    }
                };
                let group = Group {
                    scope,
                    trace_id: span.trace_id,
                };
                if open != Some((span.trace_id, scopes)) {
                    if open.is_some() {
                        sink.trace_end(0).map_err(too_large)?;
                    }
                    sink.trace(0, 0).map_err(too_large)?;
                    write_common(&mut sink, &group, &common).map_err(too_large)?;
                    open = Some((span.trace_id, scopes));
                }
                write_span(&mut sink, &span, &group, &common, &mut scratch)
                    .map_err(|e| e.error(limit))?;
                out.spans += 1;
            }
        }
    }
    if open.is_some() {
        sink.trace_end(0).map_err(too_large)?;
    }
    out.payload = decode::Transcoded {
        bytes: sink.out,
        traces: sink.traces,
        spans: sink.spans,
    };
    Ok(out)
}

/// Why reading or writing stopped: the request is malformed, or past the budget.
enum Refused {
    Wire(WireError),
    Budget,
}

impl Refused {
    fn error(self, limit: usize) -> TranscodeError {
        match self {
            Refused::Wire(e) => TranscodeError::Wire(e),
            Refused::Budget => TranscodeError::TooLarge(limit),
        }
    }
}

impl From<WireError> for Refused {
    fn from(e: WireError) -> Self {
        Refused::Wire(e)
    }
}

impl From<Fail> for Refused {
    fn from(_: Fail) -> Self {
        Refused::Budget
    }
}

/// What the spans of one relay `Trace` share besides their resource: their scope and
/// trace id.
struct Group<'a> {
    scope: (&'a str, &'a str),
    trace_id: u128,
}

/// The meta keys the mapping gives each span of a group, in its `common` span; a span
/// attribute of one of these keys is overridden by the mapping's value, as it would be
/// with these written after the span's attributes.
const GROUP_META: [&str; 4] = [
    "_dd.p.tid",
    "otel.trace_id",
    "otel.library.name",
    "otel.library.version",
];

impl Group<'_> {
    /// The mapping's meta entries for every span of the group (see [`GROUP_META`]); an
    /// empty value is left out.
    fn mapped_meta(&self, sink: &mut ProtoSink<'_>) -> Result<(), Fail> {
        let mut hex = [0u8; 32];
        let high = (self.trace_id >> 64) as u64;
        if high != 0 {
            put_meta(
                sink,
                GROUP_META[0],
                hex_digits(u128::from(high), 16, &mut hex),
            )?;
        }
        put_meta(sink, GROUP_META[1], hex_digits(self.trace_id, 32, &mut hex))?;
        put_meta(sink, GROUP_META[2], self.scope.0)?;
        put_meta(sink, GROUP_META[3], self.scope.1)
    }
}

/// A meta entry, left out when its value is empty as the Datadog path leaves it out.
fn put_meta(sink: &mut ProtoSink<'_>, key: &str, value: &str) -> Result<(), Fail> {
    if value.is_empty() {
        Ok(())
    } else {
        sink.meta_entry(key.as_bytes(), value.as_bytes(), 0)
    }
}

/// The scope's name and version (`ScopeSpans.scope`, its occurrences merged).
fn scope(scope_spans: Fields<'_>) -> Result<(&str, &str), WireError> {
    let (mut name, mut version) = ("", "");
    for field in Fields::of(scope_spans, 1) {
        let field = field?;
        match field.number {
            1 => name = field.text()?,
            2 => version = field.text()?,
            _ => {}
        }
    }
    Ok((name, version))
}

/// What every span of a resource gets.
struct Common<'a> {
    service: &'a str,
    pid: Option<f64>,
    meta: Vec<(&'a str, Cow<'a, str>)>,
    metrics: Vec<(&'a str, f64)>,
    /// `meta` and `metrics` as the relay's map entries, written once for all the spans.
    meta_entries: Vec<u8>,
    metric_entries: Vec<u8>,
    sdk: Sdk,
}

impl<'a> Common<'a> {
    /// The resource of `resource_spans` (`ResourceSpans.resource`, merged).
    fn new(resource_spans: Fields<'a>, budget: &mut Budget) -> Result<Self, Refused> {
        let mut common = Common {
            service: NO_SERVICE,
            pid: None,
            meta: Vec::new(),
            metrics: Vec::new(),
            meta_entries: Vec::new(),
            metric_entries: Vec::new(),
            sdk: Sdk::default(),
        };
        let mut seen = [
            ("telemetry.sdk.language", false),
            ("telemetry.sdk.version", false),
            ("container.id", false),
        ];
        for field in Fields::of(resource_spans, 1) {
            let field = field?;
            if field.number != 1 {
                continue;
            }
            let (key, value) = key_value(field.message()?)?;
            let Some(value) = value else {
                seen.iter_mut()
                    .filter(|(k, _)| *k == key)
                    .for_each(|s| s.1 = true);
                continue;
            };
            let sdk = match key {
                "telemetry.sdk.language" => Some(&mut common.sdk.language),
                "telemetry.sdk.version" => Some(&mut common.sdk.version),
                "container.id" => Some(&mut common.sdk.container_id),
                _ => None,
            };
            // The first attribute of the key decides, a string or not.
            if let Some((sdk, first)) = sdk.zip(seen.iter_mut().find(|(k, _)| *k == key)) {
                if !first.1 {
                    first.1 = true;
                    if let Any::Str(s) = &value {
                        (*s).clone_into(sdk);
                    }
                }
            }
            match (key, &value) {
                ("service.name", Any::Str(s)) if !s.is_empty() => common.service = s,
                ("process.pid", Any::Int(pid)) if u32::try_from(*pid).is_ok() => {
                    common.pid = Some(*pid as f64)
                }
                ("deployment.environment" | "deployment.environment.name", v) => {
                    common.meta.push(("env", text(v)?))
                }
                ("service.version", v) => common.meta.push(("version", text(v)?)),
                _ => {}
            }
            match attribute(key, value)? {
                Some(Attribute::Meta(key, v)) => {
                    budget.charge(3 * size_of::<(&str, Cow<str>)>(), field.at)?;
                    common.meta.push((key, v))
                }
                Some(Attribute::Metric(key, x)) => {
                    budget.charge(3 * size_of::<(&str, f64)>(), field.at)?;
                    common.metrics.push((key, x))
                }
                None => {}
            }
        }
        // Empty values left out, as for a span's own.
        let mut entries = ProtoSink::new(budget, 0)?;
        for (key, value) in common.meta.iter().filter(|(_, v)| !v.is_empty()) {
            entries.meta_entry(key.as_bytes(), value.as_bytes(), 0)?;
        }
        common.meta_entries = entries.out;
        let mut entries = ProtoSink::new(budget, 0)?;
        for (key, value) in &common.metrics {
            entries.metric_entry(key.as_bytes(), *value, 0)?;
        }
        common.metric_entries = entries.out;
        Ok(common)
    }

    /// The mapping's metrics for every span of the resource: `process_id` from
    /// `process.pid`.
    fn mapped_metrics(&self, sink: &mut ProtoSink<'_>) -> Result<(), Fail> {
        match self.pid {
            Some(pid) => sink.metric_entry(METRIC_PID.as_bytes(), pid, 0),
            None => Ok(()),
        }
    }

    /// The text value of `key` as a span's meta has it: its own attributes first, the
    /// resource's after, the later of two given.
    fn meta_of<'s>(&'s self, attributes: &'s [Attribute<'_>], key: &str) -> Option<&'s str> {
        let own = attributes.iter().rev().find_map(|a| match a {
            Attribute::Meta(k, v) if *k == key => Some(v.as_ref()),
            _ => None,
        });
        own.or_else(|| {
            let found = self.meta.iter().rev().find(|(k, _)| *k == key);
            found.map(|(_, v)| v.as_ref())
        })
    }
}

/// An attribute as the relay keeps it: text in `meta`, numbers in `metrics`.
enum Attribute<'a> {
    Meta(&'a str, Cow<'a, str>),
    Metric(&'a str, f64),
}

fn attribute<'a>(key: &'a str, value: Any<'a>) -> Result<Option<Attribute<'a>>, WireError> {
    if key.is_empty() {
        return Ok(None);
    }
    Ok(Some(match value {
        Any::Int(n) => Attribute::Metric(key, n as f64),
        Any::Double(x) => Attribute::Metric(key, x),
        v => Attribute::Meta(key, text(&v)?),
    }))
}

/// A value as the text `meta` holds: strings as they are, the rest as JSON.
fn text<'a>(value: &Any<'a>) -> Result<Cow<'a, str>, WireError> {
    Ok(match value {
        Any::Str(s) => Cow::Borrowed(s),
        Any::Bool(true) => Cow::Borrowed("true"),
        Any::Bool(false) => Cow::Borrowed("false"),
        other => Cow::Owned(json(other, 0)?.to_string()),
    })
}

fn json(value: &Any<'_>, depth: usize) -> Result<serde_json::Value, WireError> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    Ok(match value {
        Any::Str(s) => J::from(*s),
        Any::Bool(b) => J::from(*b),
        Any::Int(n) => J::from(*n),
        Any::Double(x) => J::from(*x),
        Any::Bytes(b) => J::from(hex(b)),
        Any::Array(bytes, at) => {
            let mut values = Vec::new();
            for field in Fields::new(bytes, *at) {
                let field = field?;
                if field.number == 1 {
                    if let Some(v) = any(field.message()?)? {
                        values.push(json(&v, depth + 1)?);
                    }
                }
            }
            J::Array(values)
        }
        Any::Kvlist(bytes, at) => {
            J::Object(attributes_json(Fields::new(bytes, *at), 1, depth + 1)?)
        }
    })
}

/// The `KeyValue`s of field `number` of `message` as a JSON object (a later key wins, a
/// key without a value is left out), and whether there was any.
fn attributes_json(
    message: Fields<'_>,
    number: u32,
    depth: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, WireError> {
    let mut map = serde_json::Map::new();
    for field in message {
        let field = field?;
        if field.number != number {
            continue;
        }
        let (key, value) = key_value(field.message()?)?;
        if let Some(value) = value {
            map.insert(key.to_string(), json(&value, depth)?);
        }
    }
    Ok(map)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The low `digits` (16 or 32) lowercase hex digits of `value`, into `buf`.
fn hex_digits(value: u128, digits: usize, buf: &mut [u8; 32]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in buf.chunks_exact_mut(2).zip(value.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    std::str::from_utf8(&buf[32 - digits..]).unwrap_or_default()
}

/// An 8-byte id; `field` names it in the error.
fn id64(bytes: &[u8], field: &str) -> Result<u64, String> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("{field} has {} bytes, not 8", bytes.len()))?;
    Ok(u64::from_be_bytes(array))
}

/// A span as read in one pass: its ids (checked) and the fields the mapping uses.
struct SpanFields<'a> {
    /// The span's own fields, read again for its events.
    fields: Fields<'a>,
    trace_id: u128,
    span_id: u64,
    parent_id: u64,
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    status_code: i32,
    status_message: &'a str,
    events: usize,
}

/// Reads `span`, its attributes into `attributes`: the span, or why its ids are invalid
/// (the inner error); the outer one when the span cannot be read.
fn read_span<'a>(
    span: Fields<'a>,
    attributes: &mut Vec<Attribute<'a>>,
) -> Result<Result<SpanFields<'a>, String>, WireError> {
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut out = SpanFields {
        fields: span,
        trace_id: 0,
        span_id: 0,
        parent_id: 0,
        name: "",
        kind: 0,
        start: 0,
        end: 0,
        status_code: 0,
        status_message: "",
        events: 0,
    };
    for field in span {
        let field = field?;
        match field.number {
            1 => trace_id = field.bytes()?,
            2 => span_id = field.bytes()?,
            4 => parent = field.bytes()?,
            5 => out.name = field.text()?,
            6 => out.kind = field.int32()?,
            7 => out.start = field.fixed64()?,
            8 => out.end = field.fixed64()?,
            9 => {
                let (key, value) = key_value(field.message()?)?;
                if let Some(value) = value {
                    if let Some(a) = attribute(key, value)? {
                        attributes.push(a);
                    }
                }
            }
            11 => {
                field.message()?;
                out.events += 1;
            }
            // Each occurrence in turn: the status messages merged.
            15 => {
                for status in field.message()? {
                    let status = status?;
                    match status.number {
                        2 => out.status_message = status.text()?,
                        3 => out.status_code = status.int32()?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let name = out.name;
    let named = |e: String| format!("span {name:?}: {e}");
    let Ok(trace_id) = <[u8; 16]>::try_from(trace_id) else {
        let why = format!("trace_id has {} bytes, not 16", trace_id.len());
        return Ok(Err(named(why)));
    };
    out.trace_id = u128::from_be_bytes(trace_id);
    out.span_id = match id64(span_id, "span_id") {
        Ok(id) => id,
        Err(e) => return Ok(Err(named(e))),
    };
    if out.trace_id == 0 || out.span_id == 0 {
        return Ok(Err(named("an id is all zeroes".into())));
    }
    if !parent.is_empty() {
        match id64(parent, "parent_span_id") {
            Ok(id) => out.parent_id = id,
            Err(e) => return Ok(Err(named(e))),
        }
    }
    Ok(Ok(out))
}

/// Buffers reused from span to span.
#[derive(Default)]
struct Scratch<'a> {
    name: String,
    resource: String,
    attributes: Vec<Attribute<'a>>,
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        KIND_SERVER => "server",
        KIND_CLIENT => "client",
        KIND_PRODUCER => "producer",
        KIND_CONSUMER => "consumer",
        _ => "internal",
    }
}

/// The events of `span` (field 11), each as its fields.
fn events<'a>(span: Fields<'a>) -> impl Iterator<Item = Result<Fields<'a>, WireError>> {
    span.filter_map(|f| match f {
        Ok(f) if f.number == 11 => Some(f.message()),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

/// The `common` span of `group`'s trace: the service, the trace id, the resource's
/// entries and the mapping's for every span of the group, in that order.
fn write_common(
    sink: &mut ProtoSink<'_>,
    group: &Group<'_>,
    common: &Common<'_>,
) -> Result<(), Fail> {
    sink.common(0)?;
    sink.text(Text::Service, common.service.as_bytes(), 0)?;
    sink.id(Id::Trace, group.trace_id as u64, 0)?;
    sink.encoded(&common.meta_entries, 0)?;
    group.mapped_meta(sink)?;
    sink.encoded(&common.metric_entries, 0)?;
    common.mapped_metrics(sink)?;
    sink.common_end(0)
}

/// One span of `group`: its fields and then its meta and metrics in the order a map
/// built from them would be, after its trace's `common` span: the span's attributes, then
/// what the mapping adds.
fn write_span<'a>(
    sink: &mut ProtoSink<'_>,
    span: &SpanFields<'a>,
    group: &Group<'a>,
    common: &Common<'a>,
    scratch: &mut Scratch<'a>,
) -> Result<(), Refused> {
    let Scratch {
        name,
        resource,
        attributes,
    } = scratch;
    let kind_name = kind_name(span.kind);
    let library = if group.scope.0.is_empty() {
        "opentelemetry"
    } else {
        group.scope.0
    };
    name.clear();
    name.push_str(library);
    name.push('.');
    name.push_str(kind_name);
    let resource = resource_name(span, attributes, common, resource);
    let r#type = match span.kind {
        KIND_SERVER => "web",
        KIND_CLIENT if common.meta_of(attributes, "db.system").is_some() => "db",
        KIND_CLIENT => "http",
        _ => "custom",
    };
    // An unknown status code is Unset.
    let error = span.status_code == STATUS_ERROR;
    let start = i64::try_from(span.start).unwrap_or(i64::MAX);
    let duration = span.end.saturating_sub(span.start);

    sink.span(0)?;
    sink.text(Text::Name, name.as_bytes(), 0)?;
    sink.text(Text::Resource, resource.as_bytes(), 0)?;
    sink.id(Id::Span, span.span_id, 0)?;
    sink.id(Id::Parent, span.parent_id, 0)?;
    sink.time(Time::Start, start, 0)?;
    sink.time(
        Time::Duration,
        i64::try_from(duration).unwrap_or(i64::MAX),
        0,
    )?;
    sink.error(i32::from(error), 0)?;
    sink.text(Text::Type, r#type.as_bytes(), 0)?;

    let mut overrides_group = false;
    for a in attributes.iter() {
        if let Attribute::Meta(key, value) = a {
            overrides_group |= GROUP_META.contains(key);
            put_meta(sink, key, value)?;
        }
    }
    if overrides_group {
        group.mapped_meta(sink)?;
    }
    put_meta(sink, "span.kind", kind_name)?;
    let status = match span.status_code {
        STATUS_OK => "Ok",
        STATUS_ERROR => "Error",
        _ => "Unset",
    };
    put_meta(sink, "otel.status_code", status)?;
    if error {
        put_meta(sink, "otel.status_description", span.status_message)?;
        put_meta(sink, "error.msg", span.status_message)?;
        for event in events(span.fields) {
            let event = event?;
            if event_name(event)? == "exception" {
                for (key, value) in exception_meta(event)? {
                    put_meta(sink, key, &value)?;
                }
                break;
            }
        }
    }
    if span.events > 0 {
        put_meta(sink, "events", &events_json(span.fields)?)?;
    }

    let mut overrides_pid = false;
    for a in attributes.iter() {
        if let Attribute::Metric(key, value) = a {
            overrides_pid |= *key == METRIC_PID;
            sink.metric_entry(key.as_bytes(), *value, 0)?;
        }
    }
    if overrides_pid {
        common.mapped_metrics(sink)?;
    }
    sink.span_end(0)?;
    Ok(())
}

/// The resource: `<method> <route>` for an HTTP server span, else the span's name.
fn resource_name<'s>(
    span: &SpanFields<'s>,
    attributes: &[Attribute<'_>],
    common: &Common<'_>,
    buf: &'s mut String,
) -> &'s str {
    if span.kind == KIND_SERVER {
        let method = common
            .meta_of(attributes, "http.request.method")
            .or_else(|| common.meta_of(attributes, "http.method"));
        if let Some(method) = method {
            buf.clear();
            buf.push_str(method);
            if let Some(route) = common.meta_of(attributes, "http.route") {
                buf.push(' ');
                buf.push_str(route);
            }
            return buf;
        }
    }
    if span.name.is_empty() {
        "unnamed"
    } else {
        span.name
    }
}

fn event_name(event: Fields<'_>) -> Result<&str, WireError> {
    let mut name = "";
    for field in event {
        let field = field?;
        if field.number == 2 {
            name = field.text()?;
        }
    }
    Ok(name)
}

/// `error.type`, `error.msg` and `error.stack` from an `exception` event.
fn exception_meta(event: Fields<'_>) -> Result<Vec<(&'static str, Cow<'_, str>)>, WireError> {
    let mut out = Vec::new();
    for field in event {
        let field = field?;
        if field.number != 3 {
            continue;
        }
        let (key, value) = key_value(field.message()?)?;
        let key = match key {
            "exception.type" => "error.type",
            "exception.message" => "error.msg",
            "exception.stacktrace" => "error.stack",
            _ => continue,
        };
        if let Some(value) = value {
            out.push((key, text(&value)?));
        }
    }
    Ok(out)
}

/// The events as the JSON array Datadog keeps in `events`.
fn events_json(span: Fields<'_>) -> Result<String, WireError> {
    let mut list = Vec::new();
    for event in events(span) {
        let event = event?;
        let (mut name, mut time, mut dropped, mut attributes) = ("", 0u64, 0u32, 0usize);
        for field in event {
            let field: Field<'_> = field?;
            match field.number {
                1 => time = field.fixed64()?,
                2 => name = field.text()?,
                3 => attributes += 1,
                4 => dropped = field.varint()? as u32,
                _ => {}
            }
        }
        let mut json = serde_json::json!({ "name": name, "time_unix_nano": time });
        if attributes > 0 {
            json["attributes"] = serde_json::Value::Object(attributes_json(event, 3, 0)?);
        }
        if dropped > 0 {
            json["dropped_attributes_count"] = dropped.into();
        }
        list.push(json);
    }
    Ok(serde_json::Value::Array(list).to_string())
}
