//! A small test encoder for the three payload formats, written independently of the
//! decoders (with rmp's writers and serde_json), plus realistic spans for benchmarks.
#![allow(dead_code)]

use std::collections::HashMap;

use rmp::encode as mp;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::Format;

/// Encoding choices a client may make, all of which the decoders accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Ids as signed int64 (negative above 2^63) instead of uint64.
    pub signed_ids: bool,
    /// Metric values that are exact in f32 as float32, integral ones as integers.
    pub compact_metrics: bool,
    /// Leave out fields at their default value, as ddtrace does.
    pub skip_defaults: bool,
    /// Add fields the decoder does not know (meta_struct, span_links, span_events).
    pub unknown_fields: bool,
    /// Strings as msgpack bin instead of str.
    pub bin_strings: bool,
}

fn w_str(buf: &mut Vec<u8>, s: &str, style: Style) {
    if style.bin_strings {
        mp::write_bin(buf, s.as_bytes()).unwrap();
    } else {
        mp::write_str(buf, s).unwrap();
    }
}

fn w_id(buf: &mut Vec<u8>, id: u64, style: Style) {
    if style.signed_ids {
        mp::write_sint(buf, id as i64).unwrap();
    } else {
        mp::write_uint(buf, id).unwrap();
    }
}

fn w_f64(buf: &mut Vec<u8>, v: f64, style: Style) {
    if style.compact_metrics && v.fract() == 0.0 && v.abs() < 1e15 {
        mp::write_sint(buf, v as i64).unwrap();
    } else if style.compact_metrics && f64::from(v as f32) == v {
        mp::write_f32(buf, v as f32).unwrap();
    } else {
        mp::write_f64(buf, v).unwrap();
    }
}

/// Sorted map entries, so that payloads are deterministic.
fn sorted<V: Copy>(map: &HashMap<String, V>) -> Vec<(&str, V)> {
    let mut entries: Vec<_> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn sorted_meta(map: &HashMap<String, String>) -> Vec<(&str, &str)> {
    let mut entries: Vec<_> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    entries.sort();
    entries
}

/// v0.4 (and msgpack v0.3): `[[{span}, ...], ...]`.
pub fn v04(traces: &[Trace], style: Style) -> Vec<u8> {
    let mut buf = Vec::new();
    mp::write_array_len(&mut buf, traces.len() as u32).unwrap();
    for trace in traces {
        mp::write_array_len(&mut buf, trace.spans.len() as u32).unwrap();
        for span in &trace.spans {
            v04_span(&mut buf, span, style);
        }
    }
    buf
}

/// Writes one field value.
type Writer<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;

fn v04_span(buf: &mut Vec<u8>, span: &Span, style: Style) {
    let mut fields: Vec<(&str, Writer<'_>)> = Vec::new();
    let keep = |default: bool| !(style.skip_defaults && default);
    if keep(span.service.is_empty()) {
        fields.push(("service", Box::new(|b| w_str(b, &span.service, style))));
    }
    if keep(span.name.is_empty()) {
        fields.push(("name", Box::new(|b| w_str(b, &span.name, style))));
    }
    if keep(span.resource.is_empty()) {
        fields.push(("resource", Box::new(|b| w_str(b, &span.resource, style))));
    }
    fields.push(("trace_id", Box::new(|b| w_id(b, span.trace_id, style))));
    fields.push(("span_id", Box::new(|b| w_id(b, span.span_id, style))));
    if keep(span.parent_id == 0) {
        fields.push(("parent_id", Box::new(|b| w_id(b, span.parent_id, style))));
    }
    fields.push((
        "start",
        Box::new(|b| mp::write_i64(b, span.start).map(drop).unwrap()),
    ));
    fields.push((
        "duration",
        Box::new(|b| mp::write_sint(b, span.duration).map(drop).unwrap()),
    ));
    if keep(span.error == 0) {
        fields.push((
            "error",
            Box::new(|b| mp::write_sint(b, i64::from(span.error)).map(drop).unwrap()),
        ));
    }
    if style.unknown_fields {
        fields.push((
            "meta_struct",
            Box::new(|b| {
                mp::write_map_len(b, 1).unwrap();
                mp::write_str(b, "appsec").unwrap();
                mp::write_bin(b, &[0x81, 0xa1, b'x', 0x01]).unwrap();
            }),
        ));
        fields.push((
            "span_links",
            Box::new(|b| {
                mp::write_array_len(b, 1).unwrap();
                mp::write_map_len(b, 2).unwrap();
                mp::write_str(b, "trace_id").unwrap();
                mp::write_uint(b, 7).unwrap();
                mp::write_str(b, "attributes").unwrap();
                mp::write_map_len(b, 1).unwrap();
                mp::write_str(b, "link.kind").unwrap();
                mp::write_array_len(b, 2).unwrap();
                mp::write_nil(b).unwrap();
                mp::write_f64(b, 1.5).unwrap();
            }),
        ));
        fields.push(("span_events", Box::new(|b| mp::write_nil(b).unwrap())));
    }
    if keep(span.meta.is_empty()) {
        fields.push((
            "meta",
            Box::new(|b| {
                mp::write_map_len(b, span.meta.len() as u32).unwrap();
                for (k, v) in sorted_meta(&span.meta) {
                    w_str(b, k, style);
                    w_str(b, v, style);
                }
            }),
        ));
    }
    if keep(span.metrics.is_empty()) {
        fields.push((
            "metrics",
            Box::new(|b| {
                mp::write_map_len(b, span.metrics.len() as u32).unwrap();
                for (k, v) in sorted(&span.metrics) {
                    w_str(b, k, style);
                    w_f64(b, v, style);
                }
            }),
        ));
    }
    if keep(span.r#type.is_empty()) {
        fields.push(("type", Box::new(|b| w_str(b, &span.r#type, style))));
    }
    mp::write_map_len(buf, fields.len() as u32).unwrap();
    for (key, write) in fields {
        mp::write_str(buf, key).unwrap();
        write(buf);
    }
}

/// The v0.5 string table being built.
#[derive(Default)]
struct Table {
    strings: Vec<String>,
    index: HashMap<String, u32>,
}

impl Table {
    fn write(&mut self, body: &mut Vec<u8>, s: &str) {
        let i = match self.index.get(s) {
            Some(&i) => i,
            None => {
                self.strings.push(s.to_owned());
                let i = self.strings.len() as u32 - 1;
                self.index.insert(s.to_owned(), i);
                i
            }
        };
        mp::write_uint(body, u64::from(i)).unwrap();
    }
}

/// v0.5: `[[strings...], [[[12 fields], ...], ...]]`, strings deduplicated in the table
/// (the empty string first, as ddtrace does).
pub fn v05(traces: &[Trace], style: Style) -> Vec<u8> {
    let mut table = Table::default();
    let mut body = Vec::new();
    table.write(&mut Vec::new(), "");
    mp::write_array_len(&mut body, traces.len() as u32).unwrap();
    for trace in traces {
        mp::write_array_len(&mut body, trace.spans.len() as u32).unwrap();
        for span in &trace.spans {
            mp::write_array_len(&mut body, 12).unwrap();
            table.write(&mut body, &span.service);
            table.write(&mut body, &span.name);
            table.write(&mut body, &span.resource);
            w_id(&mut body, span.trace_id, style);
            w_id(&mut body, span.span_id, style);
            w_id(&mut body, span.parent_id, style);
            mp::write_sint(&mut body, span.start).unwrap();
            mp::write_sint(&mut body, span.duration).unwrap();
            mp::write_sint(&mut body, i64::from(span.error)).unwrap();
            mp::write_map_len(&mut body, span.meta.len() as u32).unwrap();
            for (k, v) in sorted_meta(&span.meta) {
                table.write(&mut body, k);
                table.write(&mut body, v);
            }
            mp::write_map_len(&mut body, span.metrics.len() as u32).unwrap();
            for (k, v) in sorted(&span.metrics) {
                table.write(&mut body, k);
                w_f64(&mut body, v, style);
            }
            table.write(&mut body, &span.r#type);
        }
    }
    let mut buf = Vec::new();
    mp::write_array_len(&mut buf, 2).unwrap();
    mp::write_array_len(&mut buf, table.strings.len() as u32).unwrap();
    for s in &table.strings {
        w_str(&mut buf, s, style);
    }
    buf.extend_from_slice(&body);
    buf
}

/// v0.3 JSON.
pub fn v03_json(traces: &[Trace]) -> Vec<u8> {
    use serde_json::{json, Map, Value};
    let traces: Vec<Value> = traces
        .iter()
        .map(|trace| {
            Value::Array(
                trace
                    .spans
                    .iter()
                    .map(|s| {
                        let meta: Map<String, Value> = s
                            .meta
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                            .collect();
                        let metrics: Map<String, Value> = s
                            .metrics
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(v)))
                            .collect();
                        json!({
                            "service": s.service, "name": s.name, "resource": s.resource,
                            "trace_id": s.trace_id, "span_id": s.span_id,
                            "parent_id": s.parent_id, "start": s.start,
                            "duration": s.duration, "error": s.error, "meta": meta,
                            "metrics": metrics, "type": s.r#type,
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    serde_json::to_vec(&traces).unwrap()
}

/// A span as a Python web app sends it: 10 meta entries, 3 metrics.
pub fn realistic_span(trace: u64, i: u64) -> Span {
    let meta = [
        ("env", "production".to_owned()),
        ("version", "2.14.1".to_owned()),
        ("language", "python".to_owned()),
        ("component", "flask".to_owned()),
        ("span.kind", "server".to_owned()),
        ("http.method", "GET".to_owned()),
        ("http.status_code", "200".to_owned()),
        (
            "http.url",
            format!("http://shop.internal:8080/api/v1/items/{}", i % 97),
        ),
        ("runtime-id", "3d440d753efa4b4b9cb9ed1695f9d9e0".to_owned()),
        (
            "_dd.p.tid",
            format!("{:016x}", 0x6b06_dd4a_0000_0000u64 + trace),
        ),
    ];
    let metrics = [
        ("_dd.top_level", 1.0),
        ("_sampling_priority_v1", 1.0),
        ("process_id", 22840.0),
    ];
    Span {
        service: "shop-web".to_owned(),
        name: "flask.request".to_owned(),
        resource: format!("GET /api/v1/items/{}", i % 13),
        trace_id: 0xca3c_690b_8c05_94f5 ^ trace.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        span_id: 0xfc61_454b_c093_48d3 ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        parent_id: if i % 10 == 0 { 0 } else { i },
        start: 1_795_611_978_022_760_357 + (i as i64) * 1_000,
        duration: 349_151 + (i as i64) * 17,
        error: i32::from(i % 50 == 0),
        meta: meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        metrics: metrics
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        r#type: "web".to_owned(),
    }
}

/// `realistic_traces(n)`, and the payloads ddtrace would write of them (fields at their
/// default left out) in each format.
pub fn realistic_payloads(n: u64) -> (Vec<Trace>, [(Format, Vec<u8>); 3]) {
    let traces = realistic_traces(n);
    let ddtrace = Style {
        skip_defaults: true,
        ..Style::default()
    };
    let payloads = [
        (Format::V04, v04(&traces, ddtrace)),
        (Format::V05, v05(&traces, ddtrace)),
        (Format::V03Json, v03_json(&traces)),
    ];
    (traces, payloads)
}

/// `n_spans` realistic spans in traces of 10 spans.
pub fn realistic_traces(n_spans: u64) -> Vec<Trace> {
    (0..n_spans.div_ceil(10))
        .map(|t| Trace {
            common: None,
            spans: (t * 10..((t + 1) * 10).min(n_spans))
                .map(|i| realistic_span(t, i))
                .collect(),
        })
        .collect()
}

/// A span field: its name and what writes its value.
pub type Field<'a> = (&'a str, &'a dyn Fn(&mut Vec<u8>));

/// `[[span]]` where the span map has the given (key, value writer) fields.
pub fn v04_one_span(fields: &[Field<'_>]) -> Vec<u8> {
    let mut buf = vec![0x91, 0x91];
    mp::write_map_len(&mut buf, fields.len() as u32).unwrap();
    for (key, write) in fields {
        mp::write_str(&mut buf, key).unwrap();
        write(&mut buf);
    }
    buf
}

/// A v0.5 payload of 260 KB whose one 64 KiB string is every meta key and value of 2,000
/// spans: 2000 * 2 * 64 KiB = 262 MB if each use were a copy.
pub fn v05_string_bomb() -> Vec<u8> {
    let big = "x".repeat(64 << 10);
    let mut body = vec![0x92, 0x92, 0xa0];
    mp::write_str(&mut body, &big).unwrap();
    body.extend_from_slice(&[0x91, 0xdc, 0x07, 0xd0]); // one trace of 2000 spans
    for _ in 0..2000 {
        body.extend_from_slice(&[0x9c, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0x81, 1, 1, 0x80, 0]);
    }
    body
}
