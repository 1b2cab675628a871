//! Payloads recorded from a real client, ddtrace 4.16.0 for Python
//! (`testdata/capture-ddtrace.py` says how), decode to the spans the client made.

mod decode_common;

use decode_common::encode;
use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::{decode, Format};

const V04: &[u8] = include_bytes!("../testdata/ddtrace-v0.4.msgpack");
const V05: &[u8] = include_bytes!("../testdata/ddtrace-v0.5.msgpack");

fn meta<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.meta.get(key).map(String::as_str)
}

/// What capture-ddtrace.py's child makes: a web request with a failing database call, and
/// a background job. Ids, times, the runtime id and the pid differ between recordings.
fn assert_capture(traces: &[Trace]) {
    assert_eq!(traces.len(), 2);
    let [web, db] = &traces[0].spans[..] else {
        panic!("the first trace has 2 spans: {:?}", traces[0].spans.len());
    };
    let [job] = &traces[1].spans[..] else {
        panic!("the second trace has 1 span");
    };

    assert_eq!(
        (
            web.service.as_str(),
            web.name.as_str(),
            web.resource.as_str(),
            web.r#type.as_str()
        ),
        ("shop-web", "flask.request", "GET /cart", "web")
    );
    assert_eq!(web.parent_id, 0, "root");
    assert_eq!(web.error, 0);
    assert_eq!(meta(web, "http.method"), Some("GET"));
    assert_eq!(meta(web, "http.url"), Some("http://shop.local/cart?id=7"));
    assert_eq!(meta(web, "http.status_code"), Some("500"));
    assert_eq!(meta(web, "user.tier"), Some("gold"));
    assert_eq!(meta(web, "env"), Some("test"));
    assert_eq!(meta(web, "language"), Some("python"));
    assert_eq!(web.metrics.get("cart.items"), Some(&3.0));
    assert_eq!(web.metrics.get("cart.value"), Some(&42.5));
    assert!(
        web.metrics.get("process_id").is_some_and(|&pid| pid > 0.0),
        "pid on the root"
    );

    assert_eq!(
        (
            db.service.as_str(),
            db.name.as_str(),
            db.resource.as_str(),
            db.r#type.as_str()
        ),
        (
            "shop-db",
            "postgres.query",
            "SELECT * FROM cart WHERE id = %s",
            "sql"
        )
    );
    assert_eq!(db.trace_id, web.trace_id);
    assert_eq!(db.parent_id, web.span_id);
    assert_eq!(db.error, 1);
    assert_eq!(meta(db, "error.message"), Some("connection reset by peer"));
    assert_eq!(meta(db, "error.type"), Some("builtins.ValueError"));
    assert!(meta(db, "error.stack").is_some_and(|s| s.starts_with("Traceback")));
    assert_eq!(meta(db, "db.system"), Some("postgresql"));
    assert_eq!(db.metrics.get("db.row_count"), Some(&0.0));

    assert_eq!(
        (
            job.service.as_str(),
            job.name.as_str(),
            job.resource.as_str(),
            job.r#type.as_str()
        ),
        ("shop-worker", "job.run", "nightly-report", "")
    );
    assert_ne!(job.trace_id, web.trace_id);
    assert_eq!(meta(job, "unicode"), Some("café ☃"));
    assert_eq!(job.metrics.get("job.attempt"), Some(&2.0));

    for span in [web, db, job] {
        assert!(
            span.trace_id != 0 && span.span_id != 0,
            "{}: ids",
            span.name
        );
        assert!(
            span.start > 1_600_000_000_000_000_000,
            "{}: unix ns",
            span.name
        );
        assert!(span.duration > 0, "{}: duration", span.name);
    }
    // 128-bit trace ids: the high half stays in meta, on each trace's root span.
    for root in [web, job] {
        let tid = meta(root, "_dd.p.tid").expect("_dd.p.tid on the root");
        assert_eq!(tid.len(), 16);
        assert!(
            u64::from_str_radix(tid, 16).is_ok_and(|high| high != 0),
            "{tid}"
        );
    }
}

#[test]
fn ddtrace_v04_payload() {
    let traces = decode(Format::V04, V04).unwrap();
    assert_capture(&traces);
    assert_eq!(
        decode(Format::V03Msgpack, V04).unwrap(),
        traces,
        "v0.3 msgpack: same"
    );
}

#[test]
fn ddtrace_v05_payload() {
    let traces = decode(Format::V05, V05).unwrap();
    assert_capture(&traces);
}

#[test]
fn ddtrace_spans_survive_every_format() {
    let traces = decode(Format::V04, V04).unwrap();
    let style = encode::Style::default();
    assert_eq!(
        decode(Format::V05, &encode::v05(&traces, style)).unwrap(),
        traces
    );
    assert_eq!(
        decode(Format::V03Json, &encode::v03_json(&traces)).unwrap(),
        traces
    );
}

#[test]
fn truncated_ddtrace_payloads_fail_cleanly() {
    for (format, body) in [(Format::V04, V04), (Format::V05, V05)] {
        for len in 0..body.len() {
            let e = decode(format, &body[..len]).expect_err("truncated");
            assert!(e.offset <= len, "{format:?} cut at {len}: {e}");
        }
    }
}
