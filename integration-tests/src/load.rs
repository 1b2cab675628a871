//! Trace load for a sidecar: `/v0.4/traces` msgpack requests as a Python web app's tracer
//! sends them, and the same spans as OTLP `ExportTraceServiceRequest`s over HTTP or gRPC
//! (`otlp.rs`), encoded once with fixed-width ids that are rewritten in place for each
//! request; a keep-alive HTTP/1.1 client on a raw `TcpStream` and an HTTP/2 one for
//! gRPC; and a paced sender that records the (trace id, span id) of every span the sidecar
//! accepted.

mod grpc;
mod otlp;

pub use grpc::GrpcClient;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bench_support::web_spans::web_span;

// ---------------------------------------------------------------------------------------
// A minimal msgpack writer, enough for v0.4 spans.

fn mp_len(buf: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
    if n <= fix_max {
        buf.push(fix | n as u8);
    } else if n <= 0xffff {
        buf.push(m16);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(m32);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn mp_array(buf: &mut Vec<u8>, n: usize) {
    mp_len(buf, n, 0x90, 15, 0xdc, 0xdd);
}

fn mp_map(buf: &mut Vec<u8>, n: usize) {
    mp_len(buf, n, 0x80, 15, 0xde, 0xdf);
}

fn mp_str(buf: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n <= 31 {
        buf.push(0xa0 | n as u8);
    } else if n <= 0xff {
        buf.extend_from_slice(&[0xd9, n as u8]);
    } else {
        mp_len(buf, n, 0, 0, 0xda, 0xdb);
    }
    buf.extend_from_slice(s.as_bytes());
}

fn mp_uint(buf: &mut Vec<u8>, v: u64) {
    if v < 128 {
        buf.push(v as u8);
    } else if v <= u64::from(u32::MAX) {
        buf.push(0xce);
        buf.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        buf.push(0xcf);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// A uint64 always in its 9-byte form; returns where its 8 value bytes start.
fn mp_u64_slot(buf: &mut Vec<u8>) -> usize {
    buf.push(0xcf);
    buf.extend_from_slice(&[0; 8]);
    buf.len() - 8
}

fn mp_f64(buf: &mut Vec<u8>, v: f64) {
    buf.push(0xcb);
    buf.extend_from_slice(&v.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Ids.

/// The trace id of the `k`th trace of a run: distinct for every `k` (a multiplication by
/// an odd constant is a bijection of u64), spread over all 64 bits, never 0.
pub fn trace_id(k: u64) -> u64 {
    let id = (k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if id == 0 {
        1 << 63
    } else {
        id
    }
}

/// The id of span `s` of trace `trace` (span 0 is the root): distinct within the trace.
pub fn span_id(trace: u64, s: u64) -> u64 {
    (trace.rotate_left(29) | 1).wrapping_add(s)
}

// ---------------------------------------------------------------------------------------
// Requests.

/// Where one span's ids sit in the request bytes: 8 bytes each, big-endian (OTLP's trace
/// id: its low half). A root span without a parent field has no `parent`.
#[derive(Debug, Clone, Copy)]
struct IdSlots {
    trace: usize,
    span: usize,
    parent: Option<usize>,
}

/// How a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `PUT /v0.4/traces`, msgpack, on the Datadog port.
    V04,
    /// `POST /v1/traces`, protobuf, on the OTLP/HTTP port.
    OtlpHttp,
    /// `TraceService/Export` on the OTLP/gRPC port.
    OtlpGrpc,
}

impl Wire {
    pub fn name(self) -> &'static str {
        match self {
            Wire::V04 => "v0.4",
            Wire::OtlpHttp => "OTLP/HTTP",
            Wire::OtlpGrpc => "OTLP/gRPC",
        }
    }
}

/// A complete `PUT /v0.4/traces` request of `traces` traces of `spans` spans each, as
/// ddtrace sends it: 10 meta entries and 3 metrics per span, the root span of each trace
/// carrying the `process_id` metric of `pid` (so the daemon correlates against a live
/// process). The ids are rewritten in place by [`TracesRequest::stamp`].
#[derive(Debug, Clone)]
pub struct TracesRequest {
    bytes: Vec<u8>,
    slots: Vec<IdSlots>,
    traces: usize,
    spans: usize,
    body_len: usize,
    first_trace: u64,
}

impl TracesRequest {
    /// The `/v0.4/traces` request with the ids of request number 0 (see `stamp`).
    pub fn new(port: u16, traces: usize, spans: usize, pid: u32) -> Self {
        let (body, slots) = body(traces, spans, pid);
        let head = format!(
            "PUT /v0.4/traces HTTP/1.1\r\n\
             Host: 127.0.0.1:{port}\r\n\
             Content-Type: application/msgpack\r\n\
             Content-Length: {}\r\n\
             Datadog-Meta-Lang: python\r\n\
             Datadog-Meta-Lang-Version: 3.12.7\r\n\
             Datadog-Meta-Lang-Interpreter: CPython\r\n\
             Datadog-Meta-Tracer-Version: 2.14.1\r\n\
             X-Datadog-Trace-Count: {traces}\r\n\r\n",
            body.len()
        );
        Self::with_head(head.into_bytes(), body, slots, traces, spans)
    }

    /// The same spans as an OTLP/HTTP `POST /v1/traces` request (see `otlp.rs`).
    pub fn otlp_http(port: u16, traces: usize, spans: usize, pid: u32) -> Self {
        let (body, slots) = otlp::body(traces, spans, pid);
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\n\
             Host: 127.0.0.1:{port}\r\n\
             Content-Type: application/x-protobuf\r\n\
             Content-Length: {}\r\n\
             User-Agent: OTel-OTLP-Exporter-Python/1.36.0\r\n\r\n",
            body.len()
        );
        Self::with_head(head.into_bytes(), body, slots, traces, spans)
    }

    /// The same spans as an OTLP/gRPC request's message: `bytes` is the HTTP/2 body (the
    /// message's 5-byte prefix and the message).
    pub fn otlp_grpc(traces: usize, spans: usize, pid: u32) -> Self {
        let (body, slots) = otlp::body(traces, spans, pid);
        let mut prefix = vec![0];
        prefix.extend((body.len() as u32).to_be_bytes());
        Self::with_head(prefix, body, slots, traces, spans)
    }

    /// The request for `wire`.
    pub fn for_wire(wire: Wire, port: u16, traces: usize, spans: usize, pid: u32) -> Self {
        match wire {
            Wire::V04 => Self::new(port, traces, spans, pid),
            Wire::OtlpHttp => Self::otlp_http(port, traces, spans, pid),
            Wire::OtlpGrpc => Self::otlp_grpc(traces, spans, pid),
        }
    }

    fn with_head(
        mut bytes: Vec<u8>,
        body: Vec<u8>,
        slots: Vec<IdSlots>,
        traces: usize,
        spans: usize,
    ) -> Self {
        let head = bytes.len();
        bytes.extend_from_slice(&body);
        let slots = slots
            .into_iter()
            .map(|s| IdSlots {
                trace: head + s.trace,
                span: head + s.span,
                parent: s.parent.map(|p| head + p),
            })
            .collect();
        let mut request = Self {
            bytes,
            slots,
            traces,
            spans,
            body_len: body.len(),
            first_trace: 0,
        };
        request.stamp(0);
        request
    }

    /// Gives the request the ids of request number `n`: its traces are the run's traces
    /// `n * traces ..` (see [`trace_id`], [`span_id`]), so every request number has ids of
    /// its own.
    pub fn stamp(&mut self, n: u64) {
        self.first_trace = n * self.traces as u64;
        for (i, slot) in self.slots.iter().enumerate() {
            let trace = trace_id(self.first_trace + (i / self.spans) as u64);
            let s = (i % self.spans) as u64;
            let root = span_id(trace, 0);
            let parent = if s == 0 { 0 } else { root };
            let slots = [
                Some((slot.trace, trace)),
                Some((slot.span, span_id(trace, s))),
                slot.parent.map(|at| (at, parent)),
            ];
            for (at, value) in slots.into_iter().flatten() {
                self.bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
            }
        }
    }

    /// (trace id, span id) of every span, as stamped now.
    pub fn span_ids(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (first, spans) = (self.first_trace, self.spans as u64);
        (0..self.traces as u64).flat_map(move |t| {
            let trace = trace_id(first + t);
            (0..spans).map(move |s| (trace, span_id(trace, s)))
        })
    }

    /// The whole request: head and body.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn spans(&self) -> usize {
        self.traces * self.spans
    }

    pub fn body_len(&self) -> usize {
        self.body_len
    }
}

/// The msgpack body and the offsets of each span's id values in it.
fn body(traces: usize, spans: usize, pid: u32) -> (Vec<u8>, Vec<IdSlots>) {
    let mut buf = Vec::new();
    let mut slots = Vec::with_capacity(traces * spans);
    mp_array(&mut buf, traces);
    for t in 0..traces as u64 {
        mp_array(&mut buf, spans);
        for s in 0..spans as u64 {
            let span = web_span(t, s, pid);
            mp_map(&mut buf, 12);
            for (key, value) in [
                ("service", span.service),
                ("name", span.name),
                ("resource", &span.resource),
                ("type", span.r#type),
            ] {
                mp_str(&mut buf, key);
                mp_str(&mut buf, value);
            }
            let slot = |buf: &mut Vec<u8>, key| {
                mp_str(buf, key);
                mp_u64_slot(buf)
            };
            slots.push(IdSlots {
                trace: slot(&mut buf, "trace_id"),
                span: slot(&mut buf, "span_id"),
                parent: Some(slot(&mut buf, "parent_id")),
            });
            for (key, value) in [
                ("start", span.start as u64),
                ("duration", span.duration as u64),
                ("error", u64::from(span.error)),
            ] {
                mp_str(&mut buf, key);
                mp_uint(&mut buf, value);
            }
            mp_str(&mut buf, "meta");
            mp_map(&mut buf, span.meta.len());
            for (k, v) in &span.meta {
                mp_str(&mut buf, k);
                mp_str(&mut buf, v);
            }
            mp_str(&mut buf, "metrics");
            mp_map(&mut buf, span.metrics.len());
            for (k, v) in &span.metrics {
                mp_str(&mut buf, k);
                mp_f64(&mut buf, *v);
            }
        }
    }
    (buf, slots)
}

// ---------------------------------------------------------------------------------------
// Clients.

/// A client of one of the sidecar's ports, for requests of its [`Wire`].
pub enum Sender {
    Http(Client),
    Grpc(GrpcClient),
}

impl Sender {
    pub fn connect(wire: Wire, port: u16) -> io::Result<Self> {
        Ok(match wire {
            Wire::V04 | Wire::OtlpHttp => Sender::Http(Client::connect(port)?),
            Wire::OtlpGrpc => Sender::Grpc(GrpcClient::connect(port)?),
        })
    }

    /// Sends one request; whether the sidecar took it (HTTP 200, gRPC OK).
    pub fn send(&mut self, request: &[u8]) -> io::Result<bool> {
        Ok(match self {
            Sender::Http(client) => client.send(request)? == 200,
            Sender::Grpc(client) => client.send(request)? == 0,
        })
    }
}

// A keep-alive HTTP/1.1 client on a raw TcpStream.

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request, reads the whole response; returns the status code.
    pub fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| io::Error::other("non-UTF-8 response head"))?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| io::Error::other(format!("no Content-Length: {head}")))?;
        while self.buf.len() < head_end + length {
            self.fill()?;
        }
        self.buf.drain(..head_end + length);
        Ok(status)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Paced sending.

/// What a [`PacedLoad`] did.
#[derive(Debug)]
pub struct LoadReport {
    /// (trace id, span id) of every span in a request the sidecar answered 200, sorted.
    pub sent: Vec<(u64, u64)>,
    pub requests: u64,
    /// Requests answered otherwise, or that failed on the connection (their spans are not
    /// in `sent`; one cut off after the sidecar read it may still arrive).
    pub failed: u64,
    /// The first failure, for the message of a test.
    pub first_error: Option<String>,
    /// How far sending fell behind the schedule at worst.
    pub behind_max: Duration,
    pub elapsed: Duration,
}

impl LoadReport {
    fn failure(&mut self, error: String) {
        self.failed += 1;
        self.first_error.get_or_insert(error);
    }
}

/// One thread sending requests of `traces` x `spans` spans over one keep-alive connection
/// at a fixed pace, each with ids of its own, until stopped.
pub struct PacedLoad {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: thread::JoinHandle<LoadReport>,
}

impl PacedLoad {
    /// Starts sending `spans_per_s` spans a second to the sidecar on `port`.
    pub fn start(port: u16, spans_per_s: f64, traces: usize, spans: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            let request = TracesRequest::new(port, traces, spans, std::process::id());
            thread::Builder::new()
                .name("paced-load".into())
                .spawn(move || send_paced(port, request, spans_per_s, &stop, &accepted))
                .expect("spawn the load thread")
        };
        Self {
            stop,
            accepted,
            thread,
        }
    }

    /// Spans the sidecar has accepted so far.
    pub fn accepted_spans(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

fn send_paced(
    port: u16,
    mut request: TracesRequest,
    spans_per_s: f64,
    stop: &AtomicBool,
    accepted: &AtomicU64,
) -> LoadReport {
    let interval = Duration::from_secs_f64(request.spans() as f64 / spans_per_s);
    let mut report = LoadReport {
        sent: Vec::new(),
        requests: 0,
        failed: 0,
        first_error: None,
        behind_max: Duration::ZERO,
        elapsed: Duration::ZERO,
    };
    let mut client: Option<Client> = None;
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let due = started + interval.mul_f64(report.requests as f64);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else {
            report.behind_max = report.behind_max.max(now - due);
        }
        request.stamp(report.requests);
        report.requests += 1;
        let connected = match client.take() {
            Some(c) => Ok(c),
            None => Client::connect(port),
        };
        let outcome = connected.and_then(|mut c| c.send(request.bytes()).map(|s| (c, s)));
        match outcome {
            Ok((c, 200)) => {
                client = Some(c);
                report.sent.extend(request.span_ids());
                accepted.fetch_add(request.spans() as u64, Ordering::Relaxed);
            }
            Ok((c, status)) => {
                client = Some(c);
                report.failure(format!("the sidecar answered {status}"));
            }
            Err(e) => report.failure(format!("request failed: {e}")),
        }
    }
    report.elapsed = started.elapsed();
    report.sent.sort_unstable();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_ids_are_in_the_body_and_distinct_per_request() {
        let mut request = TracesRequest::new(8126, 3, 4, 42);
        let head = request.bytes().len() - request.body_len();
        let mut all = std::collections::HashSet::new();
        for n in [0, 1, 7] {
            request.stamp(n);
            let ids: Vec<(u64, u64)> = request.span_ids().collect();
            assert_eq!(ids.len(), 12);
            for (slot, (trace, span)) in request.slots.iter().zip(&ids) {
                let at = |i: usize| u64::from_be_bytes(request.bytes[i..i + 8].try_into().unwrap());
                assert_eq!((at(slot.trace), at(slot.span)), (*trace, *span));
                let parent = if span == &span_id(*trace, 0) {
                    0
                } else {
                    span_id(*trace, 0)
                };
                assert_eq!(at(slot.parent.unwrap()), parent);
                assert!(slot.trace > head);
            }
            assert!(ids.iter().all(|id| all.insert(*id)), "ids repeat");
        }
        assert!(request
            .bytes()
            .starts_with(b"PUT /v0.4/traces HTTP/1.1\r\n"));
    }
}
