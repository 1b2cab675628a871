//! What the decoders accept, how they read each field, and how they say what is wrong.

mod decode_common;

use std::collections::HashMap;

use decode_common::encode::v04_one_span;
use rmp::encode as mp;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::{decode, decode_with, DecodeError, Format, Limits, Reason};

fn one_span(traces: Vec<Trace>) -> Span {
    assert_eq!(traces.len(), 1, "one trace");
    assert_eq!(traces[0].spans.len(), 1, "one span");
    traces.into_iter().next().unwrap().spans.remove(0)
}

fn err(format: Format, body: &[u8]) -> DecodeError {
    decode(format, body).expect_err("the payload is refused")
}

#[test]
fn empty_probe_decodes_to_no_traces() {
    assert_eq!(decode(Format::V04, &[0x90]).unwrap(), vec![]);
    assert_eq!(decode(Format::V03Msgpack, &[0x90]).unwrap(), vec![]);
    assert_eq!(decode(Format::V03Json, b"[]").unwrap(), vec![]);
    assert_eq!(decode(Format::V03Json, b" [ ]\n").unwrap(), vec![]);
    assert_eq!(decode(Format::V05, &[0x92, 0x90, 0x90]).unwrap(), vec![]);
}

#[test]
fn empty_body_is_an_error() {
    for format in [
        Format::V03Json,
        Format::V03Msgpack,
        Format::V04,
        Format::V05,
    ] {
        let e = err(format, b"");
        assert_eq!(e.offset, 0, "{format:?}: {e}");
    }
    assert_eq!(
        err(Format::V04, b"").to_string(),
        "payload: the payload ends early (1 more bytes needed) (at byte 0)"
    );
}

#[test]
fn every_int_width_and_sign_is_read() {
    let body = v04_one_span(&[
        ("trace_id", &|b| mp::write_u64(b, u64::MAX).unwrap()),
        ("span_id", &|b| mp::write_i64(b, -2).unwrap()),
        ("parent_id", &|b| mp::write_u8(b, 7).unwrap()),
        ("start", &|b| {
            mp::write_u64(b, 1_700_000_000_000_000_000).unwrap()
        }),
        ("duration", &|b| mp::write_i32(b, 1234).unwrap()),
        ("error", &|b| mp::write_u16(b, 1).unwrap()),
    ]);
    let span = one_span(decode(Format::V04, &body).unwrap());
    assert_eq!(span.trace_id, u64::MAX);
    assert_eq!(
        span.span_id,
        u64::MAX - 1,
        "int64 -2 is the unsigned id 2^64-2"
    );
    assert_eq!(span.parent_id, 7);
    assert_eq!(span.start, 1_700_000_000_000_000_000);
    assert_eq!(span.duration, 1234);
    assert_eq!(span.error, 1);
}

#[test]
fn error_may_be_a_boolean_and_metrics_any_number() {
    let body = v04_one_span(&[
        ("error", &|b| mp::write_bool(b, true).unwrap()),
        ("metrics", &|b| {
            mp::write_map_len(b, 4).unwrap();
            mp::write_str(b, "f32").unwrap();
            mp::write_f32(b, 0.25).unwrap();
            mp::write_str(b, "f64").unwrap();
            mp::write_f64(b, 1e300).unwrap();
            mp::write_str(b, "int").unwrap();
            mp::write_sint(b, -5).unwrap();
            mp::write_str(b, "uint").unwrap();
            mp::write_u64(b, 1 << 40).unwrap();
        }),
    ]);
    let span = one_span(decode(Format::V04, &body).unwrap());
    assert_eq!(span.error, 1);
    let want: HashMap<String, f64> = [
        ("f32", 0.25),
        ("f64", 1e300),
        ("int", -5.0),
        ("uint", 2f64.powi(40)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(span.metrics, want);
}

#[test]
fn unknown_fields_and_nil_values_are_skipped() {
    let body = v04_one_span(&[
        ("name", &|b| mp::write_str(b, "web.request").unwrap()),
        ("meta_struct", &|b| {
            mp::write_map_len(b, 1).unwrap();
            mp::write_str(b, "_dd.stack").unwrap();
            mp::write_bin(b, &[0x81, 0xa1, b'a', 0x90]).unwrap();
        }),
        ("span_links", &|b| {
            mp::write_array_len(b, 1).unwrap();
            mp::write_map_len(b, 1).unwrap();
            mp::write_str(b, "attributes").unwrap();
            mp::write_map_len(b, 1).unwrap();
            mp::write_str(b, "k").unwrap();
            mp::write_ext_meta(b, 1, 5).unwrap();
            b.push(0);
        }),
        ("span_events", &|b| {
            mp::write_array_len(b, 0).map(drop).unwrap()
        }),
        ("service", &|b| mp::write_nil(b).unwrap()),
        ("trace_id", &|b| mp::write_nil(b).unwrap()),
        ("meta", &|b| mp::write_nil(b).unwrap()),
        ("metrics", &|b| {
            mp::write_map_len(b, 2).unwrap();
            mp::write_str(b, "gone").unwrap();
            mp::write_nil(b).unwrap();
            mp::write_str(b, "kept").unwrap();
            mp::write_f64(b, 2.0).unwrap();
        }),
    ]);
    let span = one_span(decode(Format::V04, &body).unwrap());
    assert_eq!(span.name, "web.request");
    assert_eq!(span.service, "");
    assert_eq!(span.trace_id, 0);
    assert!(span.meta.is_empty());
    assert_eq!(span.metrics, HashMap::from([("kept".to_owned(), 2.0)]));
}

#[test]
fn meta_is_kept_whole_including_the_high_trace_id_bits() {
    let body = v04_one_span(&[
        ("trace_id", &|b| {
            mp::write_u64(b, 0xca3c_690b_8c05_94f5).unwrap()
        }),
        ("meta", &|b| {
            mp::write_map_len(b, 3).unwrap();
            mp::write_str(b, "_dd.p.tid").unwrap();
            mp::write_str(b, "6b06dd4a00000000").unwrap();
            mp::write_str(b, "empty").unwrap();
            mp::write_nil(b).unwrap();
            mp::write_bin(b, b"bin.key").unwrap();
            mp::write_bin(b, b"caf\xc3\xa9 \xff").unwrap();
        }),
    ]);
    let span = one_span(decode(Format::V04, &body).unwrap());
    assert_eq!(span.trace_id, 0xca3c_690b_8c05_94f5);
    let want: HashMap<String, String> = [
        ("_dd.p.tid", "6b06dd4a00000000"),
        ("empty", ""),
        ("bin.key", "café \u{fffd}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(span.meta, want, "nil reads as empty, bad UTF-8 is repaired");
}

#[test]
fn nil_traces_and_spans_are_skipped() {
    // [nil, [nil, {"name": "a"}]]
    let body = [
        0x92, 0xc0, 0x92, 0xc0, 0x81, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'a',
    ];
    let traces = decode(Format::V04, &body).unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].spans.len(), 1);
    assert_eq!(traces[0].spans[0].name, "a");
}

#[test]
fn errors_say_where_and_why() {
    let body = {
        let mut b = vec![0x92, 0x91, 0x80, 0x92, 0x80];
        mp::write_map_len(&mut b, 2).unwrap();
        mp::write_str(&mut b, "name").unwrap();
        mp::write_str(&mut b, "x").unwrap();
        mp::write_str(&mut b, "meta").unwrap();
        mp::write_str(&mut b, "oops").unwrap();
        b
    };
    let e = err(Format::V04, &body);
    assert_eq!(
        e.to_string(),
        "trace 1 span 1: field `meta`: expected a map, got string (at byte 18)"
    );
    assert_eq!(e.location.trace, Some(1));
    assert_eq!(e.location.span, Some(1));
    assert_eq!(e.location.field, Some("meta"));
    assert_eq!(body[e.offset], 0xa4, "the offset is the bad value's");

    let e = err(Format::V04, &[0x81, 0xa0, 0x90]);
    assert_eq!(
        e.to_string(),
        "payload: expected an array of traces, got map (at byte 0)"
    );

    let e = err(Format::V04, &[0x91, 0x91, 0x81, 0x01, 0x02]);
    assert_eq!(
        e.to_string(),
        "trace 0 span 0: expected a string (span field name), got integer (at byte 3)"
    );

    let meta_entry = v04_one_span(&[("meta", &|b| {
        mp::write_map_len(b, 2).unwrap();
        mp::write_str(b, "a").unwrap();
        mp::write_str(b, "b").unwrap();
        mp::write_str(b, "c").unwrap();
        mp::write_f64(b, 1.0).unwrap();
    })]);
    assert_eq!(
        err(Format::V04, &meta_entry).to_string(),
        "trace 0 span 0: field `meta` entry 1: expected a string, got float (at byte 15)"
    );

    let start = v04_one_span(&[("start", &|b| mp::write_u64(b, u64::MAX).unwrap())]);
    assert_eq!(
        err(Format::V04, &start).to_string(),
        "trace 0 span 0: field `start`: 18446744073709551615 does not fit in int64 (at byte 9)"
    );
    let error = v04_one_span(&[("error", &|b| mp::write_i64(b, 1 << 40).unwrap())]);
    assert!(matches!(
        err(Format::V04, &error).reason,
        Reason::Range {
            target: "int32",
            ..
        }
    ));
}

#[test]
fn lengths_beyond_the_body_fail_before_reading() {
    let e = err(Format::V04, &[0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        e.to_string(),
        "payload: array of length 4294967295 needs more than the 0 bytes left (at byte 0)"
    );
    let e = err(
        Format::V04,
        &[0x91, 0x91, 0x81, 0xdb, 0x7f, 0xff, 0xff, 0xff, b'x'],
    );
    assert!(
        matches!(
            e.reason,
            Reason::Length {
                what: "string",
                claimed: 0x7fff_ffff,
                left: 1
            }
        ),
        "{e}"
    );
    // A truncated fixed-size value.
    let e = err(
        Format::V04,
        &[
            0x91, 0x91, 0x81, 0xa5, b's', b't', b'a', b'r', b't', 0xcf, 1, 2,
        ],
    );
    assert_eq!(e.reason, Reason::Truncated { needed: 6 });
}

#[test]
fn trailing_bytes_are_refused() {
    let e = err(Format::V04, &[0x90, 0x00]);
    assert_eq!(
        e.to_string(),
        "payload: 1 bytes follow the end of the payload (at byte 1)"
    );
    assert!(decode(Format::V03Json, b"[] x").is_err());
}

#[test]
fn v05_reads_strings_from_the_table() {
    let mut b = vec![0x92];
    mp::write_array_len(&mut b, 6).unwrap();
    for s in ["", "svc", "op", "res", "_dd.p.tid", "6b06dd4a00000000"] {
        mp::write_str(&mut b, s).unwrap();
    }
    b.extend_from_slice(&[0x91, 0x91, 0x9c, 1, 2, 3]);
    mp::write_u64(&mut b, u64::MAX).unwrap(); // trace_id
    b.extend_from_slice(&[0x05, 0x00]); // span_id, parent_id
    mp::write_i64(&mut b, 1_700_000_000_000_000_000).unwrap();
    b.extend_from_slice(&[0xcd, 0x01, 0x00, 0x01]); // duration 256, error 1
    b.extend_from_slice(&[0x81, 0x04, 0x05]); // meta {4: 5}
    b.extend_from_slice(&[0x81, 0x02, 0xcb]); // metrics {2: 0.5}
    b.extend_from_slice(&0.5f64.to_bits().to_be_bytes());
    b.push(0x00); // type ""
    let span = one_span(decode(Format::V05, &b).unwrap());
    assert_eq!(
        span,
        Span {
            service: "svc".into(),
            name: "op".into(),
            resource: "res".into(),
            trace_id: u64::MAX,
            span_id: 5,
            parent_id: 0,
            start: 1_700_000_000_000_000_000,
            duration: 256,
            error: 1,
            meta: HashMap::from([("_dd.p.tid".into(), "6b06dd4a00000000".into())]),
            metrics: HashMap::from([("op".into(), 0.5)]),
            r#type: String::new(),
        }
    );

    // The same with the meta value index out of range.
    let bad_at = b.iter().rposition(|&x| x == 0x05).unwrap();
    let mut bad = b.clone();
    bad[bad_at] = 0x06;
    let e = err(Format::V05, &bad);
    assert_eq!(
        e.to_string(),
        format!(
            "trace 0 span 0: field `meta` entry 0: string index 6 is outside the string table (6 entries) (at byte {bad_at})"
        )
    );
}

#[test]
fn v05_shape_errors() {
    let e = err(Format::V05, &[0x93, 0x90, 0x90, 0x90]);
    assert_eq!(
        e.to_string(),
        "payload: expected 2 elements, got 3 (at byte 0)"
    );
    // A span of 11 elements.
    let mut b = vec![0x92, 0x91, 0xa0, 0x91, 0x91, 0x9b];
    b.extend_from_slice(&[0; 12]); // 11 elements and a byte, the least a span takes
    let e = err(Format::V05, &b);
    assert_eq!(
        e.to_string(),
        "trace 0 span 0: expected 12 elements, got 11 (at byte 5)"
    );
    // A negative string index.
    let mut b = vec![0x92, 0x91, 0xa0, 0x91, 0x91, 0x9c, 0xff];
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&[0x80, 0x80, 0x00]);
    let e = err(Format::V05, &b);
    assert!(
        e.to_string()
            .starts_with("trace 0 span 0: field `service`: string index -1 is outside"),
        "{e}"
    );
    // A string table entry that is not a string.
    let e = err(Format::V05, &[0x92, 0x92, 0xa0, 0x01, 0x90]);
    assert_eq!(
        e.to_string(),
        "string table entry 1: expected a string, got integer (at byte 3)"
    );
}

#[test]
fn json_reads_u64_ids_and_says_where() {
    let body = br#"[[{"service":"web","trace_id":18446744073709551615,"span_id":-1,
        "start":1700000000000000000,"error":true,"meta":{"_dd.p.tid":"6b06dd4a00000000"},
        "metrics":{"m":1,"n":null,"f":0.5},"meta_struct":{"x":[1,{"y":null}]},"type":null}]]"#;
    let span = one_span(decode(Format::V03Json, body).unwrap());
    assert_eq!(span.trace_id, u64::MAX);
    assert_eq!(span.span_id, u64::MAX);
    assert_eq!(span.error, 1);
    assert_eq!(span.meta["_dd.p.tid"], "6b06dd4a00000000");
    assert_eq!(
        span.metrics,
        HashMap::from([("m".into(), 1.0), ("f".into(), 0.5)])
    );

    let bad = br#"[[{"name":"a"}],[{"name":"b"},{"meta":"oops"}]]"#;
    let e = err(Format::V03Json, bad);
    assert_eq!(
        e.to_string(),
        "trace 1 span 1: field `meta`: invalid type: string, expected an object of strings (at byte 43)"
    );
    assert_eq!(
        &bad[e.offset - 5..=e.offset],
        b"\"oops\"",
        "points at the end of the value"
    );

    let e = err(Format::V03Json, b"[[{\"start\": 18446744073709551615}]]");
    assert_eq!(
        e.to_string(),
        "trace 0 span 0: field `start`: 18446744073709551615 does not fit in int64 (at byte 31)"
    );
    let e = err(Format::V03Json, b"[[{\"trace_id\": 1.5}]]");
    assert!(e.to_string().contains("expected an integer"), "{e}");
    let e = err(Format::V03Json, b"[[{}],\n [{}, {\"meta\": {\"k\": 5}}]]");
    assert_eq!(e.location.entry, Some(0));
    assert!(
        e.to_string()
            .starts_with("trace 1 span 1: field `meta` entry 0: invalid type: integer"),
        "{e}"
    );
}

#[test]
fn deep_nesting_in_skipped_fields_does_not_recurse() {
    // 100,000 levels would overflow the stack of a recursive skip.
    let depth = 100_000;
    let mut json = b"[[{\"x\":".to_vec();
    json.extend(std::iter::repeat_n(b'[', depth));
    json.extend(std::iter::repeat_n(b']', depth));
    json.extend_from_slice(b",\"name\":\"n\"}]]");
    assert_eq!(one_span(decode(Format::V03Json, &json).unwrap()).name, "n");

    let mut msgpack = vec![0x91, 0x91, 0x82, 0xa1, b'x'];
    msgpack.extend(std::iter::repeat_n(0x91, depth));
    msgpack.push(0xc0);
    msgpack.extend_from_slice(&[0xa4, b'n', b'a', b'm', b'e', 0xa1, b'n']);
    assert_eq!(one_span(decode(Format::V04, &msgpack).unwrap()).name, "n");
}

#[test]
fn budget_refuses_what_would_decode_too_large() {
    let traces = decode_common::encode::realistic_traces(100);
    let body = decode_common::encode::v05(&traces, Default::default());
    assert_eq!(
        decode(Format::V05, &body).unwrap(),
        traces,
        "fits the default limits"
    );
    let tight = Limits {
        expansion: 2,
        slack: 0,
        max_bytes: usize::MAX,
    };
    let e = decode_with(Format::V05, &body, &tight).unwrap_err();
    assert_eq!(
        e.reason,
        Reason::TooLarge {
            limit: 2 * body.len(),
            body: body.len()
        }
    );
    assert!(e.to_string().contains("would take more than"), "{e}");
}
