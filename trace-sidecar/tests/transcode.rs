//! The transcoder (msgpack straight to the relay's protobuf) against the decoder: for every
//! payload, valid, malformed or random, `transcode` read back as protobuf gives exactly the
//! traces `decode` makes, or fails with the same error (each may run out of its own memory
//! budget first); its peak heap use stays within its budget; its bytes are protobuf as prost
//! writes it.

mod decode_common;

use std::collections::HashMap;

use decode_common::alloc::{peak_during, Counting};
use decode_common::checks::{agree, comparable, transcode_checked};
use decode_common::encode::{self, v04_one_span, Style};
use decode_common::strategies::{encode_as, style, traces};
use proptest::prelude::*;
use prost::Message;
use rmp::encode as mp;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::{decode, transcode, transcode_with, Format, Limits, Reason};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FORMATS: [Format; 4] = [
    Format::V03Json,
    Format::V03Msgpack,
    Format::V04,
    Format::V05,
];

const V04: &[u8] = include_bytes!("../testdata/ddtrace-v0.4.msgpack");
const V05: &[u8] = include_bytes!("../testdata/ddtrace-v0.5.msgpack");

#[test]
fn ddtrace_recordings_transcode_to_what_they_decode_to() {
    for (format, body) in [
        (Format::V04, V04),
        (Format::V03Msgpack, V04),
        (Format::V05, V05),
    ] {
        let t = transcode(format, body).unwrap();
        assert_eq!(t.decode().unwrap(), decode(format, body).unwrap());
        assert_eq!((t.traces, t.spans), (2, 3));
        agree(format, body, &Limits::DEFAULT);
    }
}

#[test]
fn realistic_batches_in_every_format() {
    let (traces, payloads) = encode::realistic_payloads(1000);
    for (format, body) in payloads {
        let t = transcode_checked(format, &body, &Limits::DEFAULT).unwrap();
        assert_eq!(t.decode().unwrap(), traces, "{format:?}");
        let ratio = t.bytes.len() as f64 / body.len() as f64;
        println!(
            "{format:?}: {} bytes to {} ({ratio:.2}x)",
            body.len(),
            t.bytes.len()
        );
    }
}

#[test]
fn bytes_are_what_prost_writes_for_the_same_trace() {
    // Fields in field-number order, one entry per map, every value set: prost's own bytes.
    let span = Span {
        service: "web".into(),
        name: "flask.request".into(),
        resource: "GET /".into(),
        trace_id: u64::MAX,
        span_id: 2,
        parent_id: 1,
        start: 1_700_000_000_000_000_000,
        duration: -5,
        error: -1,
        meta: HashMap::from([("_dd.p.tid".into(), "6b06dd4a00000000".into())]),
        metrics: HashMap::from([("process_id".into(), 42.0)]),
        r#type: "web".into(),
    };
    let trace = Trace {
        common: None,
        spans: vec![span.clone(), Span::default()],
    };
    let body = encode::v04(std::slice::from_ref(&trace), Style::default());
    let mut want = Vec::new();
    prost::encoding::message::encode(2, &trace, &mut want);
    let t = transcode(Format::V04, &body).unwrap();
    assert_eq!(t.bytes, want);
    // What ddtrace leaves out is left out of the protobuf too.
    let body = encode::v04(
        &[trace],
        Style {
            skip_defaults: true,
            ..Style::default()
        },
    );
    assert_eq!(transcode(Format::V04, &body).unwrap().bytes, want);
}

#[test]
fn a_field_given_twice_keeps_the_last_value_and_maps_merge() {
    let body = v04_one_span(&[
        ("service", &|b| mp::write_str(b, "first").unwrap()),
        ("trace_id", &|b| mp::write_u64(b, 7).unwrap()),
        ("meta", &|b| {
            mp::write_map_len(b, 2).unwrap();
            for (k, v) in [("a", "1"), ("b", "1")] {
                mp::write_str(b, k).unwrap();
                mp::write_str(b, v).unwrap();
            }
        }),
        ("service", &|b| mp::write_nil(b).unwrap()),
        ("trace_id", &|b| mp::write_u64(b, 0).unwrap()),
        ("meta", &|b| mp::write_nil(b).unwrap()),
        ("meta", &|b| {
            mp::write_map_len(b, 2).unwrap();
            for (k, v) in [("b", "2"), ("b", "3")] {
                mp::write_str(b, k).unwrap();
                mp::write_str(b, v).unwrap();
            }
        }),
        ("metrics", &|b| {
            mp::write_map_len(b, 2).unwrap();
            mp::write_str(b, "m").unwrap();
            mp::write_f64(b, 1.0).unwrap();
            mp::write_str(b, "m").unwrap();
            mp::write_nil(b).unwrap();
        }),
        ("metrics", &|b| {
            mp::write_map_len(b, 1).unwrap();
            mp::write_str(b, "z").unwrap();
            mp::write_f64(b, -0.0).unwrap();
        }),
    ]);
    let decoded = decode(Format::V04, &body).unwrap();
    let span = &decoded[0].spans[0];
    assert_eq!(span.service, "");
    assert_eq!(span.trace_id, 0);
    assert_eq!(
        span.meta,
        HashMap::from([("a".into(), "1".into()), ("b".into(), "3".into())])
    );
    assert_eq!(span.metrics.len(), 2);
    assert!(span.metrics["z"].is_sign_negative());
    agree(Format::V04, &body, &Limits::DEFAULT);
}

#[test]
fn invalid_utf8_is_repaired_everywhere() {
    let body = v04_one_span(&[
        ("service", &|b| {
            mp::write_bin(b, b"caf\xc3\xa9 \xff").unwrap()
        }),
        ("meta", &|b| {
            mp::write_map_len(b, 1).unwrap();
            mp::write_bin(b, b"k\xfe").unwrap();
            mp::write_bin(b, b"\xc3(").unwrap();
        }),
        ("metrics", &|b| {
            mp::write_map_len(b, 1).unwrap();
            mp::write_bin(b, b"\x80").unwrap();
            mp::write_f64(b, 2.0).unwrap();
        }),
    ]);
    let span = transcode(Format::V04, &body).unwrap().decode().unwrap()[0].spans[0].clone();
    assert_eq!(span.service, "café \u{fffd}");
    assert_eq!(span.meta["k\u{fffd}"], "\u{fffd}(");
    assert_eq!(span.metrics["\u{fffd}"], 2.0);
    agree(Format::V04, &body, &Limits::DEFAULT);
}

#[test]
fn spans_and_traces_of_every_size() {
    // Lengths of 1, 2 and 3 varint bytes for spans and traces.
    for resource in [0usize, 10, 120, 200, 16_000, 20_000, 70_000] {
        for spans in [1usize, 3, 40] {
            let trace = Trace {
                common: None,
                spans: (0..spans)
                    .map(|i| Span {
                        span_id: i as u64,
                        resource: "r".repeat(resource),
                        ..Span::default()
                    })
                    .collect(),
            };
            for format in [Format::V04, Format::V05] {
                let body = match format {
                    // v0.5 repeats one table entry: 64x the body at most.
                    Format::V05 if resource * spans > 200_000 => continue,
                    Format::V05 => encode::v05(std::slice::from_ref(&trace), Style::default()),
                    _ => encode::v04(std::slice::from_ref(&trace), Style::default()),
                };
                let t = transcode(format, &body).unwrap();
                assert_eq!(
                    t.decode().unwrap(),
                    vec![trace.clone()],
                    "{resource} x {spans}"
                );
            }
        }
    }
}

#[test]
fn malformed_payloads_fail_as_decode_fails() {
    let cases: Vec<(Format, Vec<u8>)> = vec![
        (Format::V04, vec![]),
        (Format::V04, vec![0x81, 0xa0, 0x90]),
        (Format::V04, vec![0x91, 0x91, 0x81, 0x01, 0x02]),
        (Format::V04, vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        (
            Format::V04,
            vec![0x91, 0x91, 0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff, b'x'],
        ),
        (Format::V04, vec![0x90, 0x00]),
        (
            Format::V04,
            vec![
                0x91, 0x91, 0x81, 0xa5, b's', b't', b'a', b'r', b't', 0xcf, 1, 2,
            ],
        ),
        (
            Format::V04,
            vec![0x91, 0x91, 0x81, 0xa4, b'm', b'e', b't', b'a', 0xa1, b'x'],
        ),
        (Format::V04, vec![0x91, 0x91, 0x81, 0xa1, b'x', 0xc1]),
        (Format::V05, vec![0x93, 0x90, 0x90, 0x90]),
        (Format::V05, vec![0x92, 0x92, 0xa0, 0x01, 0x90]),
        (
            Format::V05,
            vec![
                0x92, 0x91, 0xa0, 0x91, 0x91, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        (Format::V03Json, b"[[{\"meta\": 5}]]".to_vec()),
        (Format::V03Json, b"[] x".to_vec()),
    ];
    for (format, body) in cases {
        let t = transcode(format, &body).expect_err("refused");
        let d = decode(format, &body).expect_err("refused");
        assert_eq!(t, d, "{format:?} {body:x?}");
    }
    // Every cut of a real payload.
    for (format, body) in [(Format::V04, V04), (Format::V05, V05)] {
        for len in 0..body.len() {
            let t = transcode(format, &body[..len]).expect_err("truncated");
            assert_eq!(t, decode(format, &body[..len]).unwrap_err());
        }
    }
}

#[test]
fn v05_string_bomb_is_bounded() {
    let body = encode::v05_string_bomb();
    let (result, peak) = peak_during(|| transcode(Format::V05, &body));
    decode_common::assert_too_large_within_budget(result, peak, &body);
}

#[test]
fn tight_budgets_refuse_with_too_large() {
    let traces = encode::realistic_traces(100);
    let body = encode::v05(&traces, Style::default());
    let tight = Limits {
        expansion: 2,
        slack: 0,
        max_bytes: usize::MAX,
    };
    let e = transcode_with(Format::V05, &body, &tight).unwrap_err();
    assert_eq!(
        e.reason,
        Reason::TooLarge {
            limit: 2 * body.len(),
            body: body.len()
        }
    );
    // v0.4's protobuf is about as large as the body: it fits in 2x.
    let body = encode::v04(&traces, Style::default());
    let t = transcode_checked(Format::V04, &body, &tight).unwrap();
    assert_eq!(t.decode().unwrap(), traces);
}

#[test]
fn probes_and_empty_traces() {
    for (format, body) in [
        (Format::V04, vec![0x90]),
        (Format::V05, vec![0x92, 0x90, 0x90]),
        (Format::V03Json, b"[]".to_vec()),
    ] {
        let t = transcode(format, &body).unwrap();
        assert_eq!((t.traces, t.spans, t.bytes.len()), (0, 0, 0));
    }
    // [[], nil, [nil]]: two traces without spans.
    let t = transcode(Format::V04, &[0x93, 0x90, 0xc0, 0x91, 0xc0]).unwrap();
    assert_eq!((t.traces, t.spans), (2, 0));
    assert_eq!(
        t.decode().unwrap(),
        vec![Trace::default(), Trace::default()]
    );
    let payload = sts_proto::daemon::v1::TracePayload::decode(t.bytes.as_slice()).unwrap();
    assert_eq!(payload.traces.len(), 2);
}

// ---------------------------------------------------------------------------------------

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::DEFAULT),
        (1usize..8, 0usize..4096).prop_map(|(expansion, slack)| Limits {
            expansion,
            slack,
            max_bytes: usize::MAX
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_spans_transcode_to_themselves(
        traces in traces(any::<f64>()),
        style in style(),
        format in prop::sample::select(vec![Format::V04, Format::V05]),
    ) {
        let body = encode_as(format, &traces, style);
        let t = transcode_checked(format, &body, &Limits::DEFAULT).expect("valid payload");
        prop_assert_eq!(comparable(&t.decode().unwrap()), comparable(&traces));
    }

    #[test]
    fn mutated_payloads_agree_with_decode(
        traces in traces(any::<f64>()),
        style in style(),
        format in prop::sample::select(FORMATS.to_vec()),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        limits in limits(),
    ) {
        let mut body = encode_as(format, &traces, style);
        for (at, byte) in &cuts {
            if body.is_empty() {
                break;
            }
            match byte % 3 {
                0 => { let i = at.index(body.len()); body[i] = *byte; }
                1 => { let i = at.index(body.len()); body.truncate(i); }
                _ => { let i = at.index(body.len()); body.insert(i, *byte); }
            }
        }
        for other in FORMATS {
            agree(other, &body, &limits);
        }
    }

    #[test]
    fn random_bytes_agree_with_decode(body in prop::collection::vec(any::<u8>(), 0..1024)) {
        for format in FORMATS {
            agree(format, &body, &Limits::DEFAULT);
        }
    }
}
