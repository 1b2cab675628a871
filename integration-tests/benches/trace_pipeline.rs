//! The trace pipeline end to end: pre-encoded `/v0.4/traces` payloads sent over keep-alive
//! HTTP/1.1 to a release `trace-sidecar` (decode, batch, gRPC relay) and on to a release
//! `node-daemon` (dedup, PID correlation), both on loopback.
//!
//! - Phase A, throughput: `BENCH_CLIENTS` client threads (default 3) send as fast as the
//!   sidecar answers for `BENCH_SECONDS` (default 10). Spans counted are those the daemon
//!   received (its `spans_received_total`); CPU is utime + stime of the sidecar and the
//!   daemon from /proc/<pid>/stat over the same window. Spans per CPU-second of the two
//!   processes together is the per-core figure; target >= 500,000.
//! - Phase B, 60,000 spans/s (`BENCH_RATE`) for `BENCH_PACED_SECONDS` (default 15), on a
//!   fresh sidecar and daemon: the sidecar's VmRSS sampled every 250 ms (max; target
//!   <= 20 MB) and the span-to-daemon latency of every payload (p50/p99/max).
//!
//! Payloads: `BENCH_TRACES` traces (default 100) of `BENCH_SPANS` spans (default 10), as a
//! Python web app sends them: 10 meta entries and 3 metrics per span, the root span of each
//! trace carrying the `process_id` metric of this process, so the daemon correlates against
//! a live pid.
//!
//! Needs the release binaries (`cargo build --release --workspace`); run with
//! `bench/trace-pipeline.sh` or `cargo bench -p integration-tests --bench trace_pipeline`.
//! Exit status 1 when a target is missed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::free_port;
use integration_tests::traces::{Daemon, Sidecar};
use sts_proto::daemon::v1::status_client::StatusClient;
use sts_proto::daemon::v1::GetStatusRequest;

const TARGET_SPANS_PER_CORE: f64 = 500_000.0;
/// What Datadog publishes for its trace agent (spans/s per core); not measured here.
const DATADOG_SPANS_PER_CORE: f64 = 60_000.0;
const TARGET_RSS_MB: f64 = 20.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Payloads: a minimal msgpack writer, enough for v0.4 spans.

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

fn mp_f64(buf: &mut Vec<u8>, v: f64) {
    buf.push(0xcb);
    buf.extend_from_slice(&v.to_be_bytes());
}

/// One v0.4 payload: `traces` traces of `spans` spans; `variant` varies the ids.
fn payload(variant: u64, traces: usize, spans: usize, pid: u32) -> Vec<u8> {
    let mix = |x: u64| x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (x >> 29);
    let mut buf = Vec::new();
    mp_array(&mut buf, traces);
    for t in 0..traces as u64 {
        let trace_id = mix(variant << 32 | t) | 1 << 62;
        let root_id = mix(trace_id);
        let start = 1_764_000_000_000_000_000 + (variant * 1000 + t) as i64 * 1_000_000;
        mp_array(&mut buf, spans);
        for s in 0..spans as u64 {
            let root = s == 0;
            let span_id = if root { root_id } else { mix(root_id ^ s) };
            mp_map(&mut buf, 12);
            mp_str(&mut buf, "service");
            mp_str(&mut buf, "shop-web");
            mp_str(&mut buf, "name");
            mp_str(
                &mut buf,
                if root {
                    "flask.request"
                } else {
                    "postgres.query"
                },
            );
            mp_str(&mut buf, "resource");
            if root {
                mp_str(&mut buf, &format!("GET /api/v1/items/{}", t % 13));
            } else {
                mp_str(
                    &mut buf,
                    &format!("SELECT id, name, price FROM items WHERE id = {}", s % 7),
                );
            }
            mp_str(&mut buf, "type");
            mp_str(&mut buf, if root { "web" } else { "sql" });
            mp_str(&mut buf, "trace_id");
            mp_uint(&mut buf, trace_id);
            mp_str(&mut buf, "span_id");
            mp_uint(&mut buf, span_id);
            mp_str(&mut buf, "parent_id");
            mp_uint(&mut buf, if root { 0 } else { root_id });
            mp_str(&mut buf, "start");
            mp_uint(&mut buf, (start + s as i64 * 20_000) as u64);
            mp_str(&mut buf, "duration");
            mp_uint(&mut buf, 349_151 + s * 1_717);
            mp_str(&mut buf, "error");
            mp_uint(&mut buf, u64::from(t % 50 == 0 && root));
            mp_str(&mut buf, "meta");
            mp_map(&mut buf, 10);
            let meta = [
                ("env", "production".to_string()),
                ("version", "2.14.1".to_string()),
                ("language", "python".to_string()),
                (
                    "component",
                    if root { "flask" } else { "psycopg" }.to_string(),
                ),
                (
                    "span.kind",
                    if root { "server" } else { "client" }.to_string(),
                ),
                ("http.method", "GET".to_string()),
                ("http.status_code", "200".to_string()),
                (
                    "http.url",
                    format!("http://shop.internal:8080/api/v1/items/{}", t % 97),
                ),
                ("runtime-id", "3d440d753efa4b4b9cb9ed1695f9d9e0".to_string()),
                ("_dd.p.tid", format!("{:016x}", 0x6920_0000_0000_0000 | t)),
            ];
            for (k, v) in &meta {
                mp_str(&mut buf, k);
                mp_str(&mut buf, v);
            }
            mp_str(&mut buf, "metrics");
            mp_map(&mut buf, 3);
            mp_str(&mut buf, "_sampling_priority_v1");
            mp_f64(&mut buf, 1.0);
            if root {
                mp_str(&mut buf, "_dd.top_level");
                mp_f64(&mut buf, 1.0);
                mp_str(&mut buf, "process_id");
                mp_f64(&mut buf, f64::from(pid));
            } else {
                mp_str(&mut buf, "_dd.measured");
                mp_f64(&mut buf, 1.0);
                mp_str(&mut buf, "db.row_count");
                mp_f64(&mut buf, (s % 5) as f64);
            }
        }
    }
    buf
}

/// A complete `PUT /v0.4/traces` request as ddtrace sends it.
fn request(port: u16, body: &[u8], traces: usize) -> Vec<u8> {
    let mut request = format!(
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
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

struct Payloads {
    /// Complete requests, sent in turn.
    requests: Vec<Vec<u8>>,
    spans_each: u64,
    body_bytes: usize,
}

impl Payloads {
    fn new(port: u16, traces: usize, spans: usize) -> Self {
        let pid = std::process::id();
        let mut body_bytes = 0;
        let requests = (0..8)
            .map(|v| {
                let body = payload(v, traces, spans, pid);
                body_bytes = body.len();
                request(port, &body, traces)
            })
            .collect();
        Self {
            requests,
            spans_each: (traces * spans) as u64,
            body_bytes,
        }
    }
}

// ---------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client on a raw TcpStream.

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the sidecar");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends one request, reads the whole response; returns the status code.
    fn send(&mut self, request: &[u8]) -> io::Result<u16> {
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
                "sidecar closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Measuring the processes.

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process is alive");
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// VmRSS in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The daemon's `spans_received_total` over one kept gRPC connection.
struct DaemonCounter {
    runtime: tokio::runtime::Runtime,
    client: StatusClient<tonic::transport::Channel>,
}

impl DaemonCounter {
    fn connect(port: u16) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(StatusClient::connect(format!("http://127.0.0.1:{port}")))
            .expect("daemon status service");
        Self { runtime, client }
    }

    fn spans(&mut self) -> u64 {
        let client = &mut self.client;
        self.runtime
            .block_on(client.get_status(GetStatusRequest {}))
            .expect("daemon answers GetStatus")
            .into_inner()
            .spans_received_total
    }

    /// Polls until the count reaches `n`; false after `within`.
    fn wait_for(&mut self, n: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.spans() < n {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

struct Stack {
    daemon: Daemon,
    sidecar: Sidecar,
}

impl Stack {
    fn start() -> Self {
        let daemon = Daemon::start_with_interval(
            free_port(),
            "3600",
            &[("STS_TRACE_RECENT_SPANS", "0"), ("STS_LOG_LEVEL", "warn")],
        );
        let sidecar = Sidecar::start(
            &format!("127.0.0.1:{}", free_port()),
            daemon.port,
            &[("STS_LOG_LEVEL", "warn")],
        );
        Self { daemon, sidecar }
    }

    fn sidecar_pid(&self) -> u32 {
        self.sidecar.guard.pid()
    }

    fn daemon_pid(&self) -> u32 {
        self.daemon.guard.pid()
    }

    /// The sidecar's `/health` counter.
    fn sidecar_stat(&self, key: &str) -> u64 {
        self.sidecar
            .health()
            .and_then(|h| h[key].as_u64())
            .unwrap_or(0)
    }
}

/// RSS maxima of two processes, sampled every 250 ms until stopped.
fn sample_rss(pids: [u32; 2], stop: Arc<AtomicBool>) -> thread::JoinHandle<[u64; 2]> {
    thread::spawn(move || {
        let mut max = [0u64; 2];
        while !stop.load(Ordering::Relaxed) {
            for (m, pid) in max.iter_mut().zip(pids) {
                *m = (*m).max(rss_bytes(pid));
            }
            thread::sleep(Duration::from_millis(250));
        }
        max
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

// ---------------------------------------------------------------------------------------
// Phase A: throughput.

/// Client threads sending until `stop`; each adds the spans of every 200 answer to `sent`.
fn blast(
    clients: usize,
    port: u16,
    payloads: &Arc<Payloads>,
    stop: &Arc<AtomicBool>,
    sent: &Arc<AtomicU64>,
) -> Vec<thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (payloads, stop, sent) = (payloads.clone(), stop.clone(), sent.clone());
            thread::spawn(move || {
                let mut client = Client::connect(port);
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let request = &payloads.requests[i % payloads.requests.len()];
                    let status = client.send(request).expect("sidecar answers");
                    assert_eq!(status, 200, "sidecar refused a payload");
                    sent.fetch_add(payloads.spans_each, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect()
}

struct Throughput {
    spans_per_cpu_s: f64,
}

fn phase_a(traces: usize, spans: usize) -> Throughput {
    let clients: usize = env_or("BENCH_CLIENTS", 3);
    let seconds: f64 = env_or("BENCH_SECONDS", 10.0);
    let stack = Stack::start();
    let payloads = Arc::new(Payloads::new(stack.sidecar.port, traces, spans));
    let mut counter = DaemonCounter::connect(stack.daemon.port);
    let (sidecar, daemon) = (stack.sidecar_pid(), stack.daemon_pid());
    println!(
        "\n== Phase A: throughput, {clients} keep-alive clients, {seconds} s \
         (payload {} traces x {} spans = {} spans, {} bytes; sidecar pid {sidecar}, daemon pid {daemon})",
        traces, spans, payloads.spans_each, payloads.body_bytes
    );

    let sent = Arc::new(AtomicU64::new(0));
    // Warm-up (connections, the peer lookup, allocator), then drain, then the measured run.
    let run = |duration: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = blast(clients, stack.sidecar.port, &payloads, &stop, &sent);
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("client thread");
        }
    };
    run(Duration::from_secs(2));
    assert!(
        counter.wait_for(sent.load(Ordering::Relaxed), Duration::from_secs(60)),
        "warm-up spans did not all reach the daemon"
    );

    let spans0 = counter.spans();
    let sent0 = sent.load(Ordering::Relaxed);
    let (side0, daemon0) = (cpu_ticks(sidecar), cpu_ticks(daemon));
    // SAFETY: rusage is plain data; getrusage writes into the struct we own.
    let self0 = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let rss_stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss([sidecar, daemon], rss_stop.clone());
    let started = Instant::now();
    run(Duration::from_secs_f64(seconds));
    let send_window = started.elapsed();
    let sent_total = sent.load(Ordering::Relaxed);
    let drained = counter.wait_for(sent_total, Duration::from_secs(120));
    let wall = started.elapsed();
    let (side1, daemon1) = (cpu_ticks(sidecar), cpu_ticks(daemon));
    // SAFETY: as above.
    let self1 = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    rss_stop.store(true, Ordering::Relaxed);
    let [rss_sidecar, rss_daemon] = rss.join().unwrap();
    let delivered = counter.spans() - spans0;
    let sent_window = sent_total - sent0;
    let dropped = stack.sidecar_stat("spans_dropped");

    let hz = clock_ticks();
    let side_s = (side1 - side0) as f64 / hz;
    let daemon_s = (daemon1 - daemon0) as f64 / hz;
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let clients_s =
        tv(self1.ru_utime) + tv(self1.ru_stime) - tv(self0.ru_utime) - tv(self0.ru_stime);
    let cpu_s = side_s + daemon_s;
    let per_cpu_s = delivered as f64 / cpu_s;

    println!(
        "sent {sent_window} spans in {:.2} s ({:.0} spans/s accepted by the sidecar); \
         daemon received {delivered} ({}), all delivered {:.2} s after the start; \
         sidecar dropped {dropped}",
        send_window.as_secs_f64(),
        sent_window as f64 / send_window.as_secs_f64(),
        if drained { "all" } else { "NOT all: timed out" },
        wall.as_secs_f64(),
    );
    println!(
        "wall: {:.0} spans/s end to end (delivered / time until the last was delivered)",
        delivered as f64 / wall.as_secs_f64()
    );
    println!(
        "CPU (utime+stime, /proc/<pid>/stat, {hz} ticks/s): sidecar {side_s:.2} s ({:.0}% of {:.1} s), \
         daemon {daemon_s:.2} s ({:.0}%), together {cpu_s:.2} s; the client threads {clients_s:.2} s (not counted)",
        100.0 * side_s / wall.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * daemon_s / wall.as_secs_f64(),
    );
    println!(
        "share of the CPU: sidecar {:.0}%, daemon {:.0}%; per process: sidecar {:.0} spans/CPU-s, daemon {:.0} spans/CPU-s",
        100.0 * side_s / cpu_s,
        100.0 * daemon_s / cpu_s,
        delivered as f64 / side_s,
        delivered as f64 / daemon_s,
    );
    println!(
        "CPU cost: {:.2} us per span (sidecar {:.2} + daemon {:.2})",
        1e6 * cpu_s / delivered as f64,
        1e6 * side_s / delivered as f64,
        1e6 * daemon_s / delivered as f64,
    );
    println!(
        "RSS max (250 ms samples): sidecar {:.1} MB, daemon {:.1} MB",
        mb(rss_sidecar),
        mb(rss_daemon)
    );
    println!(
        "spans per CPU-second (sidecar + daemon), the per-core figure: {per_cpu_s:.0} \
         (target >= {TARGET_SPANS_PER_CORE:.0}): {}",
        verdict(per_cpu_s >= TARGET_SPANS_PER_CORE && drained && dropped == 0)
    );
    println!(
        "  = {:.1}x the ~{DATADOG_SPANS_PER_CORE:.0} spans/s per core Datadog publishes for its \
         trace agent (a published figure, not measured here)",
        per_cpu_s / DATADOG_SPANS_PER_CORE
    );
    Throughput {
        spans_per_cpu_s: if drained && dropped == 0 {
            per_cpu_s
        } else {
            0.0
        },
    }
}

// ---------------------------------------------------------------------------------------
// Phase B: 60,000 spans/s, memory and latency.

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

struct Paced {
    rate: f64,
    rss_max: u64,
    p99_ms: f64,
}

fn phase_b(traces: usize, spans: usize) -> Paced {
    let rate: f64 = env_or("BENCH_RATE", 60_000.0);
    let seconds: f64 = env_or("BENCH_PACED_SECONDS", 15.0);
    let stack = Stack::start();
    let payloads = Arc::new(Payloads::new(stack.sidecar.port, traces, spans));
    let (sidecar, daemon) = (stack.sidecar_pid(), stack.daemon_pid());
    let interval = Duration::from_secs_f64(payloads.spans_each as f64 / rate);
    println!(
        "\n== Phase B: {rate:.0} spans/s for {seconds} s on a fresh sidecar and daemon \
         (one {}-span payload every {:.1} ms)",
        payloads.spans_each,
        interval.as_secs_f64() * 1e3
    );
    let rss_before = rss_bytes(sidecar);

    // (send start, spans sent including this payload), in sending order.
    let records: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let rss_stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss([sidecar, daemon], rss_stop.clone());

    // Polls the daemon every 5 ms; a payload's latency runs from the start of its request
    // to the first poll answer whose count includes it (the relay keeps the order).
    let poller = {
        let (records, done) = (records.clone(), done.clone());
        let port = stack.daemon.port;
        thread::spawn(move || {
            let mut counter = DaemonCounter::connect(port);
            let mut latencies = Vec::new();
            let mut polls = 0u64;
            let mut poll_time = Duration::ZERO;
            let mut next = 0;
            let started = Instant::now();
            loop {
                let asked = Instant::now();
                let count = counter.spans();
                let answered = Instant::now();
                polls += 1;
                poll_time += answered - asked;
                let records = records.lock().unwrap();
                while next < records.len() && records[next].1 <= count {
                    latencies.push((answered - records[next].0).as_secs_f64() * 1e3);
                    next += 1;
                }
                let all = next == records.len();
                drop(records);
                if all && done.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            let period = started.elapsed() / polls.max(1) as u32;
            (latencies, period, poll_time / polls.max(1) as u32)
        })
    };

    let mut client = Client::connect(stack.sidecar.port);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut i = 0usize;
    let mut behind_max = Duration::ZERO;
    while started.elapsed().as_secs_f64() < seconds {
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        } else {
            behind_max = behind_max.max(now - due);
        }
        sent += payloads.spans_each;
        records.lock().unwrap().push((Instant::now(), sent));
        let status = client
            .send(&payloads.requests[i % payloads.requests.len()])
            .expect("sidecar answers");
        assert_eq!(status, 200, "sidecar refused a payload");
        i += 1;
    }
    let send_window = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (mut latencies, poll_period, poll_rtt) = poller.join().unwrap();
    rss_stop.store(true, Ordering::Relaxed);
    let [rss_sidecar, rss_daemon] = rss.join().unwrap();
    let cpu_side = cpu_ticks(sidecar) as f64 / clock_ticks();
    let cpu_daemon = cpu_ticks(daemon) as f64 / clock_ticks();

    latencies.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies[latencies.len() - 1],
    );
    println!(
        "sent {sent} spans in {:.2} s = {:.0} spans/s ({} payloads; pacing at most {:.1} ms behind); \
         sidecar dropped {}",
        send_window.as_secs_f64(),
        sent as f64 / send_window.as_secs_f64(),
        i,
        behind_max.as_secs_f64() * 1e3,
        stack.sidecar_stat("spans_dropped"),
    );
    println!(
        "CPU since start (incl. start-up and the 5 ms status polls): sidecar {cpu_side:.2} s, daemon {cpu_daemon:.2} s \
         ({:.0}% and {:.0}% of one core over the run)",
        100.0 * cpu_side / send_window.as_secs_f64(),
        100.0 * cpu_daemon / send_window.as_secs_f64(),
    );
    println!(
        "sidecar RSS: {:.1} MB idle, max {:.1} MB (VmRSS every 250 ms; target <= {TARGET_RSS_MB} MB): {}; \
         daemon RSS max {:.1} MB",
        mb(rss_before),
        mb(rss_sidecar),
        verdict(mb(rss_sidecar) <= TARGET_RSS_MB),
        mb(rss_daemon),
    );
    println!(
        "span-to-daemon latency over {} payloads: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        latencies.len()
    );
    println!(
        "  method: per payload, from the start of its HTTP request to the first answer of the daemon's \
         GetStatus whose spans_received_total includes it (the relay preserves order); polled every \
         {:.1} ms (5 ms sleep + {:.2} ms RPC), so each figure is at most one poll period above the true latency",
        poll_period.as_secs_f64() * 1e3,
        poll_rtt.as_secs_f64() * 1e3,
    );
    Paced {
        rate,
        rss_max: rss_sidecar,
        p99_ms: p99,
    }
}

fn main() {
    // Nothing is forwarded anywhere: no StackState endpoint from the caller's environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("STS_") {
            std::env::remove_var(key);
        }
    }
    // `cargo bench` passes `--bench`; filters are not supported.
    let traces: usize = env_or("BENCH_TRACES", 100);
    let spans: usize = env_or("BENCH_SPANS", 10);
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "AB".into());

    let a = phases.contains('A').then(|| phase_a(traces, spans));
    let b = phases.contains('B').then(|| phase_b(traces, spans));

    println!("\n== Summary");
    let mut ok = true;
    if let Some(a) = a {
        let pass = a.spans_per_cpu_s >= TARGET_SPANS_PER_CORE;
        ok &= pass;
        println!(
            "throughput: {:.0} spans per CPU-second (target >= {TARGET_SPANS_PER_CORE:.0}; {:.1}x Datadog's published ~{DATADOG_SPANS_PER_CORE:.0}): {}",
            a.spans_per_cpu_s,
            a.spans_per_cpu_s / DATADOG_SPANS_PER_CORE,
            verdict(pass)
        );
    }
    if let Some(b) = b {
        let pass = mb(b.rss_max) <= TARGET_RSS_MB;
        ok &= pass;
        println!(
            "sidecar RSS at {:.0} spans/s: max {:.1} MB (target <= {TARGET_RSS_MB} MB): {}; p99 span-to-daemon latency {:.1} ms (reported, no target)",
            b.rate,
            mb(b.rss_max),
            verdict(pass),
            b.p99_ms
        );
    }
    if !ok {
        std::process::exit(1);
    }
}
