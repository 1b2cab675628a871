//! Property tests over random and mutated payloads of every format: decoding never
//! panics, and its peak heap use stays within the budget (`Limits`) it is given, measured
//! by a counting global allocator. Round trips: random spans, encoded by the test encoder
//! in any accepted style, decode to themselves.

mod decode_common;

use std::collections::HashMap;
use std::mem::size_of;

use decode_common::alloc::{peak_during, Counting};
use decode_common::checks::{decode_checked, tight};
use decode_common::encode;
use decode_common::strategies::{encode_as, finite_metric, style, traces};
use proptest::prelude::*;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::{decode, Format, Limits, Reason};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FORMATS: [Format; 4] = [
    Format::V03Json,
    Format::V03Msgpack,
    Format::V04,
    Format::V05,
];

fn any_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(tight()),
        Just(Limits::DEFAULT),
        (1usize..80, 0usize..8192).prop_map(|(expansion, slack)| Limits {
            expansion,
            slack,
            max_bytes: usize::MAX
        }),
    ]
}

/// Bytes that are MessagePack markers more often than chance would make them.
fn markerish() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        0x80u8..=0x9f,
        0xa0u8..=0xbf,
        prop::sample::select(vec![
            0xc0u8, 0xc4, 0xca, 0xcb, 0xcc, 0xcf, 0xd3, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xff
        ]),
        Just(0x00u8),
    ];
    prop::collection::vec(byte, 0..600)
}

/// A change to a valid payload.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    FlipBit(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    /// A header claiming a huge length, as a hostile client would write it.
    HugeLength(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>().prop_map(|i| i.index(1 << 20));
    prop_oneof![
        (at.clone(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (at.clone(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (at.clone(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        at.clone().prop_map(Mutation::Truncate),
        (
            at,
            prop::sample::select(vec![0xdcu8, 0xdd, 0xde, 0xdf, 0xdb, 0xc6])
        )
            .prop_map(|(i, m)| Mutation::HugeLength(i, m)),
    ]
}

fn apply(body: &mut Vec<u8>, mutation: &Mutation) {
    if body.is_empty() {
        return;
    }
    let n = body.len();
    match mutation {
        Mutation::Set(i, b) => body[i % n] = *b,
        Mutation::FlipBit(i, bit) => body[i % n] ^= 1 << bit,
        Mutation::Insert(i, bytes) => {
            let at = i % (n + 1);
            body.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(i, len) => {
            let at = i % n;
            body.drain(at..(at + len).min(n));
        }
        Mutation::Truncate(i) => body.truncate(i % n),
        Mutation::HugeLength(i, marker) => {
            let at = i % n;
            let header = [*marker, 0xff, 0xff, 0xff, 0xf0];
            let end = (at + header.len()).min(n);
            body.splice(at..end, header);
        }
    }
}

/// Compares decoded traces with the encoded ones. JSON floats are parsed by serde_json's
/// fast path, which may differ from the written value in the last bit, and in a subnormal
/// (below `f64::MIN_POSITIVE`, whose last bits are worth more of it) by a few units of
/// 1e-323.
fn assert_same(decoded: &[Trace], want: &[Trace], exact_floats: bool) {
    assert_eq!(decoded.len(), want.len());
    for (d, w) in decoded.iter().zip(want) {
        assert_eq!(d.spans.len(), w.spans.len());
        for (d, w) in d.spans.iter().zip(&w.spans) {
            if exact_floats {
                assert_eq!(d, w);
                continue;
            }
            let strip = |s: &Span| Span {
                metrics: HashMap::new(),
                ..s.clone()
            };
            assert_eq!(strip(d), strip(w));
            assert_eq!(d.metrics.len(), w.metrics.len());
            for (k, v) in &w.metrics {
                let got = d.metrics[k];
                let near = v.abs().max(f64::MIN_POSITIVE) * 1e-15;
                assert!((got - v).abs() <= near, "{k}: {got} vs {v}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_nor_overallocate(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        for format in FORMATS {
            let _ = decode_checked(format, &body, &tight());
        }
    }

    #[test]
    fn marker_heavy_bytes_never_panic_nor_overallocate(body in markerish(), limits in any_limits()) {
        for format in FORMATS {
            let _ = decode_checked(format, &body, &limits);
        }
    }

    #[test]
    fn json_like_bytes_never_panic_nor_overallocate(body in "[\\[\\]{}\",:0-9a-z_. -]{0,400}") {
        let _ = decode_checked(Format::V03Json, body.as_bytes(), &tight());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_payloads_never_panic_nor_overallocate(
        traces in traces(finite_metric()),
        style in style(),
        format in prop::sample::select(FORMATS.to_vec()),
        mutations in prop::collection::vec(mutation(), 1..4),
        limits in any_limits(),
    ) {
        let mut body = encode_as(format, &traces, style);
        for m in &mutations {
            apply(&mut body, m);
        }
        for other in FORMATS {
            let _ = decode_checked(other, &body, &limits);
        }
    }

    #[test]
    fn encoded_spans_decode_to_themselves(
        traces in traces(finite_metric()),
        style in style(),
        format in prop::sample::select(FORMATS.to_vec()),
    ) {
        let body = encode_as(format, &traces, style);
        let decoded = decode_checked(format, &body, &Limits::DEFAULT).expect("valid payload");
        assert_same(&decoded, &traces, format != Format::V03Json);
    }

    #[test]
    fn valid_payloads_stay_within_tight_limits_or_say_so(
        traces in traces(finite_metric()),
        style in style(),
        format in prop::sample::select(FORMATS.to_vec()),
    ) {
        let body = encode_as(format, &traces, style);
        match decode_checked(format, &body, &tight()) {
            Ok(decoded) => assert_same(&decoded, &traces, format != Format::V03Json),
            Err(e) => prop_assert!(matches!(e.reason, Reason::TooLarge { .. }), "{}", e),
        }
    }
}

#[test]
fn claimed_lengths_allocate_nothing() {
    let hostile: [(Format, &[u8]); 6] = [
        (Format::V04, &[0xdd, 0xff, 0xff, 0xff, 0xff]),
        (Format::V04, &[0x91, 0xdd, 0x00, 0x10, 0x00, 0x00]),
        (Format::V04, &[0x91, 0x91, 0xdf, 0xff, 0xff, 0xff, 0xff]),
        (
            Format::V04,
            &[
                0x91, 0x91, 0x81, 0xa4, b'm', b'e', b't', b'a', 0xdf, 0, 1, 0, 0,
            ],
        ),
        (Format::V05, &[0x92, 0xdd, 0x01, 0x00, 0x00, 0x00, 0x90]),
        (Format::V05, &[0x92, 0x90, 0xdd, 0x00, 0x10, 0x00, 0x00]),
    ];
    for (format, body) in hostile {
        let (result, peak) = peak_during(|| decode(format, body));
        let e = result.expect_err("refused");
        assert!(matches!(e.reason, Reason::Length { .. }), "{e}");
        // At most the arrays whose lengths were honest: here one trace of one span.
        let honest = size_of::<Trace>() + size_of::<Span>();
        assert!(
            peak <= honest,
            "{format:?} {body:x?}: {peak} bytes allocated"
        );
    }
}

#[test]
fn v05_string_bomb_is_bounded() {
    let body = encode::v05_string_bomb();
    let (result, peak) = peak_during(|| decode(Format::V05, &body));
    decode_common::assert_too_large_within_budget(result, peak, &body);
}

#[test]
fn realistic_payloads_decode_within_the_default_budget() {
    // The expansion of real-looking batches, which the default limits must leave room for.
    let (traces, payloads) = encode::realistic_payloads(1000);
    for (format, body) in payloads {
        let decoded = decode_checked(format, &body, &Limits::DEFAULT).expect("decodes");
        assert_eq!(decoded, traces);
        let (_, peak) = peak_during(|| decode(format, &body).map(drop));
        let ratio = peak as f64 / body.len() as f64;
        println!(
            "{format:?}: {} bytes decode to {peak} at peak ({ratio:.1}x)",
            body.len()
        );
        assert!(
            ratio < Limits::DEFAULT.expansion as f64 / 2.0,
            "{format:?}: {ratio:.1}x leaves less than 2x headroom under the default limits"
        );
    }
}
