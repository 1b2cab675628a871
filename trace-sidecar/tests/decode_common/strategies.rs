//! proptest strategies for the decode and transcode tests: random spans and traces, the
//! encoding choices a client may make, and payloads in each format.
#![allow(dead_code)]

use proptest::prelude::*;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::Format;

use super::encode::{self, Style};

/// Texts: short keys, any printable text, empty, and keys the pipeline treats specially.
pub fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        "[a-z._]{0,12}",
        "\\PC{0,24}",
        Just(String::new()),
        Just("_dd.p.tid".to_owned()),
        Just("span.pid".to_owned()),
    ]
}

/// Finite metric values of the three shapes clients send: integers, f32s and f64s.
pub fn finite_metric() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        any::<f32>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(f64::from),
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
}

/// Spans with every field random, metrics drawn from `metric`.
pub fn span(metric: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = Span> {
    (
        (text(), text(), text(), text()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<i64>(), any::<i64>(), any::<i32>()),
        prop::collection::hash_map(text(), text(), 0..12),
        prop::collection::hash_map(text(), metric, 0..5),
    )
        .prop_map(
            |(
                (service, name, resource, r#type),
                (trace_id, span_id, parent_id),
                (start, duration, error),
                meta,
                metrics,
            )| Span {
                service,
                name,
                resource,
                trace_id,
                span_id,
                parent_id,
                start,
                duration,
                error,
                meta,
                metrics,
                r#type,
            },
        )
}

/// Up to 5 traces of up to 6 spans.
pub fn traces(metric: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = Vec<Trace>> {
    prop::collection::vec(
        prop::collection::vec(span(metric), 0..6).prop_map(|spans| Trace {
            common: None,
            spans,
        }),
        0..5,
    )
}

pub fn style() -> impl Strategy<Value = Style> {
    any::<[bool; 5]>().prop_map(|b| Style {
        signed_ids: b[0],
        compact_metrics: b[1],
        skip_defaults: b[2],
        unknown_fields: b[3],
        bin_strings: b[4],
    })
}

/// `traces` as a client writes them in `format`.
pub fn encode_as(format: Format, traces: &[Trace], style: Style) -> Vec<u8> {
    match format {
        Format::V03Json => encode::v03_json(traces),
        Format::V03Msgpack | Format::V04 => encode::v04(traces, style),
        Format::V05 => encode::v05(traces, style),
    }
}
