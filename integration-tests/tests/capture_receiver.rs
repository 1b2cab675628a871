//! The capture receiver: each payload kind is recorded and decoded over HTTP and HTTPS, and
//! each failure mode does what it says, then ends on schedule. Clients are curl (its exit
//! codes name the failure: 7 refused, 18 partial body, 28 timeout, 60 untrusted
//! certificate) and raw sockets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use integration_tests::receiver::control::Dump;
use integration_tests::receiver::envelope::{Envelope, ENCODING_PROTOBUF, ENCODING_ZSTD_PB};
use integration_tests::receiver::{
    ApiTrace, CaptureReceiver, Decoded, Endpoint, FailureMode, FailureStep, Lasting, Receiver,
    ReceiverOptions, Scope, Span, TracePayload,
};
use integration_tests::Guard;
use prost::Message;

struct Reply {
    /// curl's exit code.
    exit: i32,
    /// 0 when nothing was answered.
    status: u16,
    headers: String,
    body: String,
    elapsed: Duration,
}

/// `curl -sS` with `args`, `body` on stdin (as `--data-binary @-`) when given.
fn curl(args: &[&str], body: Option<&[u8]>) -> Reply {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-m", "10", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if body.is_some() {
        command.args(["--data-binary", "@-"]).stdin(Stdio::piped());
    } else {
        command.stdin(Stdio::null());
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .expect("curl runs (scripts/setup.sh installs it)");
    if let Some(body) = body {
        // The receiver may close before reading it all: a broken pipe is expected then.
        let _ = child.stdin.take().unwrap().write_all(body);
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Reply {
        exit: out.status.code().unwrap_or(-1),
        status: code.trim().parse().unwrap_or(0),
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
        elapsed: started.elapsed(),
    }
}

fn post(url: &str, body: &[u8], headers: &[&str]) -> Reply {
    let mut args = vec![url];
    for h in headers {
        args.extend(["-H", h]);
    }
    curl(&args, Some(body))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn span(service: &str, span_id: u64, parent_id: u64) -> Span {
    Span {
        service: service.into(),
        name: "http.request".into(),
        resource: "GET /users".into(),
        trace_id: 77,
        span_id,
        parent_id,
        start: 1_700_000_000_000_000_000,
        duration: 1_500_000,
        error: 0,
        meta: HashMap::from([("span.kind".to_owned(), "server".to_owned())]),
        metrics: HashMap::from([("_sampling_priority_v1".to_owned(), 1.0)]),
        r#type: "web".into(),
    }
}

fn trace_payload() -> TracePayload {
    TracePayload {
        host_name: "ip-10-0-1-23".into(),
        env: "test".into(),
        traces: vec![ApiTrace {
            trace_id: 77,
            spans: vec![span("users", 1, 0), span("users", 2, 1)],
            start_time: 1_700_000_000_000_000_000,
            end_time: 1_700_000_000_001_500_000,
        }],
        transactions: vec![span("billing", 3, 1)],
    }
}

fn post_traces(rx: &Receiver, payload: &TracePayload) -> Reply {
    let url = format!("{}/api/v0.2/traces", rx.url());
    post(
        &url,
        &gzip(&payload.encode_to_vec()),
        &[
            "Content-Type: application/x-protobuf",
            "Content-Encoding: gzip",
            "DD-Api-Key: trace-key",
        ],
    )
}

fn post_intake(rx: &Receiver) -> Reply {
    post(&format!("{}/intake/?api_key=k", rx.url()), b"{}", &[])
}

#[test]
fn intake_json_is_recorded_plain_gzip_and_deflate_with_its_api_key() {
    let rx = CaptureReceiver::http();
    let message = br#"{"collection_timestamp":1700000000,"internalHostname":"h1","topologies":[]}"#;
    let plain = post(
        &format!("{}/intake/?api_key=query-key", rx.url()),
        message,
        &["Content-Type: application/json"],
    );
    assert_eq!((plain.exit, plain.status), (0, 200), "{}", plain.body);

    let gz = gzip(br#"{"n":2}"#);
    let zipped = post(
        &format!("{}/intake", rx.url()),
        &gz,
        &["Content-Encoding: gzip", "sts-api-key: header-key"],
    );
    assert_eq!(zipped.status, 200, "{}", zipped.body);

    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(br#"{"n":3}"#).unwrap();
    let deflated = post(
        &format!("{}/intake/", rx.url()),
        &zlib.finish().unwrap(),
        &["Content-Encoding: deflate", "DD-API-KEY: dd-key"],
    );
    assert_eq!(deflated.status, 200, "{}", deflated.body);

    let got = rx.requests(Endpoint::Intake);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].api_key.as_deref(), Some("query-key"));
    assert_eq!(got[0].query.as_deref(), Some("api_key=query-key"));
    assert_eq!(got[0].path, "/stsAgent/intake/");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[1].api_key.as_deref(), Some("header-key"));
    assert_eq!(got[1].body_raw_len, gz.len());
    assert_eq!(got[2].api_key.as_deref(), Some("dd-key"));
    assert!(!got[0].tls);
    let messages = rx.intake_messages();
    assert_eq!(messages[0]["internalHostname"], "h1");
    assert_eq!(messages[1]["n"], 2);
    assert_eq!(messages[2]["n"], 3);
}

#[test]
fn https_is_trusted_with_the_ca_and_refused_without_it() {
    let rx = CaptureReceiver::https();
    assert!(rx.url().starts_with("https://127.0.0.1:"));
    let ca = std::env::temp_dir().join(format!("capture-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, rx.cert_pem().expect("HTTPS has a CA")).unwrap();
    let ca = ca.to_str().unwrap();

    let trusted = curl(
        &[
            "--cacert",
            ca,
            "-d",
            r#"{"via":"ip"}"#,
            &format!("{}/intake/", rx.url()),
        ],
        None,
    );
    assert_eq!((trusted.exit, trusted.status), (0, 200), "{}", trusted.body);
    // The certificate names localhost too.
    let by_name = format!("https://localhost:{}/stsAgent/intake/", rx.addr().port());
    let named = curl(&["--cacert", ca, "-d", r#"{"via":"name"}"#, &by_name], None);
    assert_eq!((named.exit, named.status), (0, 200));

    let untrusted = curl(&["-d", "{}", &format!("{}/intake/", rx.url())], None);
    assert_eq!(
        untrusted.exit, 60,
        "curl must fail certificate verification"
    );

    let got = rx.requests(Endpoint::Intake);
    assert_eq!(got.len(), 2, "the unverified attempt never reaches HTTP");
    assert!(got.iter().all(|c| c.tls));
    assert_eq!(rx.intake_messages()[1]["via"], "name");
}

#[test]
fn traces_are_gunzipped_and_decoded_into_spans() {
    let rx = CaptureReceiver::http();
    let payload = trace_payload();
    let reply = post_traces(&rx, &payload);
    assert_eq!((reply.exit, reply.status), (0, 200), "{}", reply.body);

    let got = rx.requests(Endpoint::Traces);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].api_key.as_deref(), Some("trace-key"));
    assert_eq!(got[0].decoded, Decoded::Traces(payload.clone()));
    let decoded = got[0].traces().unwrap();
    assert_eq!(decoded.host_name, "ip-10-0-1-23");
    assert_eq!(decoded.traces[0].end_time, 1_700_000_000_001_500_000);

    let spans = rx.wait_spans(3, Duration::from_secs(1));
    let ids: Vec<u64> = spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(spans[1].parent_id, 1);
    assert_eq!(spans[2].service, "billing");
    assert_eq!(spans[0].meta["span.kind"], "server");
    assert_eq!(spans[0].metrics["_sampling_priority_v1"], 1.0);
    assert_eq!(spans[0].r#type, "web");
}

#[test]
fn undecodable_bodies_are_answered_400_and_recorded_invalid() {
    let rx = CaptureReceiver::http();
    // gzip'd protobuf without its Content-Encoding is not a TracePayload.
    let zipped = gzip(&trace_payload().encode_to_vec());
    let missing = post(&format!("{}/api/v0.2/traces", rx.url()), &zipped, &[]);
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("TracePayload"), "{}", missing.body);
    let bad_json = post(&format!("{}/intake/", rx.url()), b"{not json", &[]);
    assert_eq!(bad_json.status, 400);

    let all = rx.all_requests();
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .all(|c| matches!(c.decoded, Decoded::Invalid { .. }) && !c.accepted()));
    assert!(rx.spans().is_empty());
    assert!(rx.intake_messages().is_empty());
}

#[test]
fn collector_envelope_headers_and_raw_bytes_are_recorded() {
    let rx = CaptureReceiver::http();
    let url = format!("{}/api/v1/collector", rx.url());
    // CollectorProc { hostName (2) = "h1" }
    let message = vec![0x12, 0x02, b'h', b'1'];
    let mut plain = Envelope::encode_v3_stackstate(ENCODING_PROTOBUF, 12, 1_700_000_000_123);
    plain.extend_from_slice(&message);
    let headers = [
        "Content-Type: application/x-protobuf",
        "X-Dd-APIKey: proc-key",
        "X-Dd-Hostname: h1",
        "X-Dd-Processagentversion: 0.1.0",
        "X-Dd-ContainerCount: 0",
    ];
    assert_eq!(post(&url, &plain, &headers).status, 200);

    let zstd = ruzstd::encoding::compress_to_vec(
        message.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let mut compressed = Envelope::encode_v3_stackstate(ENCODING_ZSTD_PB, 22, 5);
    compressed.extend_from_slice(&zstd);
    assert_eq!(
        post(&url, &compressed, &["sts-api-key: sts-key"]).status,
        200
    );

    let short = post(&url, &[1, 0, 12], &[]);
    assert_eq!(short.status, 400, "a body without a whole envelope");

    let got = rx.requests(Endpoint::Collector);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].api_key.as_deref(), Some("proc-key"));
    assert_eq!(got[0].header("x-dd-hostname"), Some("h1"));
    assert_eq!(got[0].header("X-Dd-ContainerCount"), Some("0"));
    let first = got[0].collector().expect("decoded as a collector message");
    assert_eq!(
        (
            first.envelope.version,
            first.envelope.encoding,
            first.envelope.msg_type
        ),
        (3, ENCODING_PROTOBUF, 12)
    );
    assert_eq!(first.envelope.timestamp_be, Some(1_700_000_000_123));
    assert_eq!(first.raw, plain);
    assert_eq!(first.message.as_deref(), Some(message.as_slice()));

    let second = got[1].collector().unwrap();
    assert_eq!(second.envelope.msg_type, 22);
    assert_eq!(got[1].api_key.as_deref(), Some("sts-key"));
    assert_eq!(
        second.message.as_deref(),
        Some(message.as_slice()),
        "zstd undone"
    );
    assert!(matches!(got[2].decoded, Decoded::Invalid { .. }));
}

#[test]
fn unknown_paths_are_recorded_and_answered_404() {
    let rx = CaptureReceiver::http();
    let reply = post(&format!("{}/api/v2/series", rx.url()), b"x", &[]);
    assert_eq!(reply.status, 404);
    let get = curl(&[&format!("{}/intake/", rx.url())], None);
    assert_eq!(get.status, 404, "intake takes POST only");
    let got = rx.requests(Endpoint::Unknown);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path, "/stsAgent/api/v2/series");
    assert_eq!(
        (got[1].method.as_str(), got[1].decoded.clone()),
        ("GET", Decoded::Unknown)
    );
}

#[test]
fn injected_statuses_come_in_order_then_normal_service_resumes() {
    let rx = CaptureReceiver::http();
    rx.set_failure(
        Scope::Traces,
        vec![
            FailureStep::new(FailureMode::status(500), Lasting::Requests(2)),
            FailureStep::new(FailureMode::status(429), Lasting::Requests(1)),
            FailureStep::new(
                FailureMode::Status {
                    code: 400,
                    retry_after_s: None,
                    body: Some("payload rejected".into()),
                },
                Lasting::Requests(1),
            ),
            FailureStep::new(FailureMode::status(408), Lasting::Requests(1)),
        ],
    );
    let payload = trace_payload();
    let replies: Vec<Reply> = (0..6).map(|_| post_traces(&rx, &payload)).collect();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 500, 429, 400, 408, 200]);
    assert!(
        replies[2].headers.contains("retry-after: 1"),
        "{}",
        replies[2].headers
    );
    assert!(!replies[0].headers.contains("retry-after"));
    assert_eq!(replies[3].body, "payload rejected");
    // Other endpoints were never failed.
    assert_eq!(post_intake(&rx).status, 200);

    let got = rx.requests(Endpoint::Traces);
    assert_eq!(got.len(), 6, "failed attempts are recorded too");
    assert_eq!(got[0].injected, Some(FailureMode::status(500)));
    assert_eq!(got[0].status, Some(500));
    assert!(got[5].accepted() && got[5].injected.is_none());
    assert_eq!(
        rx.spans().len(),
        3,
        "only the accepted payload's spans count"
    );
    assert!(rx.pending_failures().is_empty());
}

#[test]
fn a_status_until_a_wall_clock_time_ends_then() {
    let rx = CaptureReceiver::http();
    let until = SystemTime::now() + Duration::from_millis(600);
    rx.fail(Scope::All, FailureMode::status(503), Lasting::until(until));
    let first = post_intake(&rx);
    assert_eq!(first.status, 503);
    assert!(first.headers.contains("retry-after: 1"));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(post_intake(&rx).status, 200);
}

#[test]
fn hang_reads_the_request_and_never_answers() {
    let rx = CaptureReceiver::http();
    rx.fail(Scope::Intake, FailureMode::Hang, Lasting::Requests(1));
    let hung = curl(
        &[
            "-m",
            "1",
            "-d",
            r#"{"hung":true}"#,
            &format!("{}/intake/", rx.url()),
        ],
        None,
    );
    assert_eq!(hung.exit, 28, "the client times out");
    assert!(hung.elapsed >= Duration::from_millis(900));
    assert_eq!(post_intake(&rx).status, 200, "one request only");

    let got = rx.requests(Endpoint::Intake);
    assert_eq!(got[0].injected, Some(FailureMode::Hang));
    assert_eq!(got[0].status, None);
    assert_eq!(
        got[0].intake_json().unwrap()["hung"],
        true,
        "the body was read"
    );
    assert_eq!(
        rx.intake_messages().len(),
        1,
        "the hung one is not accepted"
    );
}

#[test]
fn refuse_for_a_duration_closes_the_listener_and_open_connections() {
    let rx = CaptureReceiver::http();
    // A keep-alive connection, open before the refusal.
    let mut open = TcpStream::connect(rx.addr()).unwrap();
    open.write_all(b"GET /__capture/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = open.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    rx.fail(
        Scope::All,
        FailureMode::Refuse,
        Lasting::for_duration(Duration::from_millis(1500)),
    );
    assert!(!rx.is_listening());
    let refused = post_intake(&rx);
    assert_eq!(refused.exit, 7, "connection refused");
    open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    match open.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "the open connection is closed"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open: {e}"),
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let back = loop {
        std::thread::sleep(Duration::from_millis(100));
        let reply = post_intake(&rx);
        if reply.status == 200 || Instant::now() > deadline {
            break reply;
        }
    };
    assert_eq!(back.status, 200, "listening again after the duration");
    assert!(rx.is_listening());
    assert_eq!(rx.requests(Endpoint::Intake).len(), 1);
}

#[test]
fn counted_refuse_resets_the_next_connections() {
    let rx = CaptureReceiver::http();
    rx.fail(Scope::All, FailureMode::Refuse, Lasting::Requests(2));
    let first = post_intake(&rx);
    let second = post_intake(&rx);
    assert_ne!(first.exit, 0);
    assert_ne!(second.exit, 0);
    assert_eq!((first.status, second.status), (0, 0));
    assert_eq!(post_intake(&rx).status, 200);
    assert_eq!(rx.counters().reset_connections, 2);
}

#[test]
fn refusing_one_endpoint_drops_its_requests_only() {
    let rx = CaptureReceiver::http();
    rx.fail(Scope::Traces, FailureMode::Refuse, Lasting::Forever);
    let dropped = post_traces(&rx, &trace_payload());
    assert_eq!(dropped.exit, 52, "empty reply");
    assert_eq!(post_intake(&rx).status, 200);
    rx.clear_failure();
    assert_eq!(post_traces(&rx, &trace_payload()).status, 200);
    let traces = rx.requests(Endpoint::Traces);
    assert_eq!(traces[0].injected, Some(FailureMode::Refuse));
    assert_eq!(traces[1].injected, None);
}

#[test]
fn close_mid_body_sends_part_of_the_answer_then_closes() {
    let rx = CaptureReceiver::http();
    rx.fail(
        Scope::Intake,
        FailureMode::CloseMidBody,
        Lasting::Requests(1),
    );
    let cut = post_intake(&rx);
    assert_eq!(cut.exit, 18, "partial transfer");
    assert_eq!(cut.status, 200, "the headers arrived");
    assert!(cut.headers.contains("content-length: 4096"));
    assert_eq!(post_intake(&rx).exit, 0);
    let got = rx.requests(Endpoint::Intake);
    assert_eq!(got[0].injected, Some(FailureMode::CloseMidBody));
    assert!(!got[0].accepted());
    assert!(got[1].accepted());
}

#[test]
fn close_mid_request_stops_reading_the_upload() {
    let rx = CaptureReceiver::http();
    rx.fail(
        Scope::Traces,
        FailureMode::CloseMidRequest,
        Lasting::Requests(1),
    );
    let big = vec![7u8; 4 << 20];
    // No `Expect: 100-continue`: the body is on its way when the receiver closes.
    let cut = post(&format!("{}/api/v0.2/traces", rx.url()), &big, &["Expect:"]);
    assert_ne!(cut.exit, 0, "the upload fails");
    assert_eq!(cut.status, 0);
    assert_eq!(post_traces(&rx, &trace_payload()).status, 200);
    let got = rx.requests(Endpoint::Traces);
    assert_eq!(got[0].decoded, Decoded::Incomplete);
    assert!(got[0].body_raw_len < big.len());
    assert!(got[1].accepted());
}

#[test]
fn slow_accept_delays_new_connections_then_stops() {
    let rx = CaptureReceiver::http();
    let delay = Duration::from_millis(1500);
    rx.fail(
        Scope::All,
        FailureMode::slow_accept(delay),
        Lasting::Requests(1),
    );
    let slow = post_intake(&rx);
    assert_eq!(slow.status, 200);
    assert!(slow.elapsed >= delay, "took {:?}", slow.elapsed);
    let fast = post_intake(&rx);
    assert_eq!(fast.status, 200);
    assert!(
        fast.elapsed < Duration::from_millis(1000),
        "took {:?}",
        fast.elapsed
    );
    assert_eq!(rx.intake_messages().len(), 2);
}

#[test]
fn the_store_keeps_the_newest_requests_and_counts_the_rest() {
    let rx = CaptureReceiver::spawn(ReceiverOptions {
        max_requests: 3,
        ..ReceiverOptions::http()
    });
    for i in 0..5 {
        let body = format!(r#"{{"i":{i}}}"#);
        assert_eq!(
            post(&format!("{}/intake", rx.url()), body.as_bytes(), &[]).status,
            200
        );
    }
    let seqs: Vec<u64> = rx.all_requests().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    let counters = rx.counters();
    assert_eq!((counters.total, counters.dropped), (5, 2));
    assert_eq!(rx.intake_messages()[0]["i"], 2);
}

#[test]
fn a_separate_process_is_steered_and_read_over_http_then_killed() {
    let ca = std::env::temp_dir().join(format!("capture-proc-ca-{}.pem", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_capture-receiver"));
    command
        .args(["--tls", "--ca-out", ca.to_str().unwrap()])
        .stdout(Stdio::piped());
    let mut guard = Guard::spawn(&mut command);
    let mut lines = BufReader::new(guard.0.stdout.take().unwrap()).lines();
    let ca_line = lines.next().unwrap().unwrap();
    let url_line = lines.next().unwrap().unwrap();
    assert_eq!(ca_line, format!("ca={}", ca.display()));
    let url = url_line.strip_prefix("url=").expect("url= line").to_owned();
    let origin = url.trim_end_matches("/stsAgent").to_owned();
    let ca = ca.to_str().unwrap();

    let fail =
        r#"{"scope":"intake","steps":[{"mode":"status","code":503,"lasting":{"requests":1}}]}"#;
    let set = curl(
        &[
            "--cacert",
            ca,
            "-d",
            fail,
            &format!("{origin}/__capture/fail"),
        ],
        None,
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body.contains("503"));

    let intake = format!("{url}/intake/?api_key=remote");
    let first = curl(&["--cacert", ca, "-d", r#"{"try":1}"#, &intake], None);
    let second = curl(&["--cacert", ca, "-d", r#"{"try":2}"#, &intake], None);
    assert_eq!((first.status, second.status), (503, 200));

    let dump = curl(
        &[
            "--cacert",
            ca,
            &format!("{origin}/__capture/requests?endpoint=intake"),
        ],
        None,
    );
    assert_eq!(dump.status, 200);
    let dump: Dump = serde_json::from_str(&dump.body).expect("the dump is a Dump");
    assert_eq!(dump.counters.total, 2);
    assert_eq!(dump.requests.len(), 2);
    assert_eq!(dump.requests[0].status, Some(503));
    assert_eq!(dump.requests[1].api_key.as_deref(), Some("remote"));
    assert_eq!(dump.requests[1].intake_json().unwrap()["try"], 2);
    let after = curl(
        &[
            "--cacert",
            ca,
            &format!("{origin}/__capture/requests?after=1"),
        ],
        None,
    );
    let after: Dump = serde_json::from_str(&after.body).unwrap();
    assert_eq!(after.requests.len(), 1);

    let status = guard
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(5))
        .expect("stops on SIGTERM");
    assert!(status.success());
    let gone = curl(&["--cacert", ca, "-d", "{}", &intake], None);
    assert_eq!(gone.exit, 7, "nothing listens any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_waits_for_what_arrives() {
    let rx = Receiver::start(ReceiverOptions::http()).await.unwrap();
    let addr = rx.addr();
    let sender = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut s = TcpStream::connect(addr).unwrap();
        let body = r#"{"late":true}"#;
        let req = format!(
            "POST /stsAgent/intake/ HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    let arrived = rx
        .wait_for(|all| !all.is_empty(), Duration::from_secs(5))
        .await;
    assert!(arrived);
    assert!(sender.await.unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(rx.intake_messages()[0]["late"], true);

    let started = Instant::now();
    let never = rx
        .wait_for(|all| all.len() > 1, Duration::from_millis(300))
        .await;
    assert!(!never);
    assert!(started.elapsed() >= Duration::from_millis(300));

    rx.fail(Scope::All, FailureMode::Refuse, Lasting::Forever);
    assert!(rx.settled(Duration::from_secs(2)).await);
    assert!(TcpStream::connect(addr).is_err(), "refused");
    rx.clear_failure();
    assert!(rx.settled(Duration::from_secs(2)).await);
    assert!(TcpStream::connect(addr).is_ok());
}
