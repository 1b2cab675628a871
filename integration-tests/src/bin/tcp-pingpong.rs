//! Loopback TCP request/response load for `bench/network-overhead.sh`: `--pairs` client and
//! server threads (one connection each, TCP_NODELAY) ping-pong `--size`-byte messages: the
//! client writes one message and waits for the server's answer of the same size, the
//! server answers every message it reads. After `--warmup` seconds it counts the round
//! trips of every pair for `--seconds` seconds and prints one line:
//!
//! `round_trips_per_sec=<n> round_trips=<n> seconds=<s> pairs=<n> size=<n> cpu_s=<s>`
//!
//! `cpu_s` is the user + system CPU time of this process over the counted window (the
//! send and receive paths run in the calling threads, so tracers attached to them are
//! included).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(about = "Loopback TCP ping-pong: prints round trips per second")]
struct Args {
    /// Seconds counted.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Client/server pairs, each with its own connection and two threads.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// Bytes per message, both ways.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// User + system CPU time of this process.
fn process_cpu() -> Duration {
    // SAFETY: rusage is plain data for which all-zero bytes are valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Answers every message until the client closes the connection.
fn serve(mut stream: TcpStream, size: usize) {
    let mut buf = vec![0u8; size];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
}

/// Sends and waits for the answer until `stop`, publishing its count of round trips.
fn ping(mut stream: TcpStream, size: usize, stop: &AtomicBool, count: &AtomicU64) {
    let message = vec![0x5au8; size];
    let mut answer = vec![0u8; size];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        stream.write_all(&message).expect("write to the server");
        stream
            .read_exact(&mut answer)
            .expect("read from the server");
        n += 1;
        count.store(n, Ordering::Relaxed);
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let positive = |s: f64| s.is_finite() && s > 0.0;
    if args.pairs == 0
        || args.size == 0
        || !positive(args.seconds)
        || !(positive(args.warmup) || args.warmup == 0.0)
    {
        eprintln!("tcp-pingpong: --pairs and --size must be positive, --seconds > 0");
        return ExitCode::from(2);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..args.pairs).map(|_| Arc::default()).collect();
    let mut threads = Vec::new();
    for count in &counts {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        for s in [&client, &server] {
            s.set_nodelay(true).expect("TCP_NODELAY");
        }
        let size = args.size;
        threads.push(thread::spawn(move || serve(server, size)));
        let (stop, count) = (Arc::clone(&stop), Arc::clone(count));
        threads.push(thread::spawn(move || ping(client, size, &stop, &count)));
    }
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };

    thread::sleep(Duration::from_secs_f64(args.warmup));
    let (start, start_count, start_cpu) = (Instant::now(), total(), process_cpu());
    thread::sleep(Duration::from_secs_f64(args.seconds));
    let (elapsed, round_trips, cpu) = (
        start.elapsed().as_secs_f64(),
        total() - start_count,
        process_cpu() - start_cpu,
    );
    stop.store(true, Ordering::Relaxed);
    // Clients stop after their current round trip and close; servers then see EOF.
    for t in threads {
        t.join().expect("load thread");
    }
    println!(
        "round_trips_per_sec={:.0} round_trips={round_trips} seconds={elapsed:.3} pairs={} size={} cpu_s={:.3}",
        round_trips as f64 / elapsed,
        args.pairs,
        args.size,
        cpu.as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    ExitCode::SUCCESS
}
