//! Slow clients against an HTTP server on loopback, for `bench/sidecar-slowloris.sh`:
//! `--connections` connections (RLIMIT_NOFILE raised for them) that each send a request
//! head a byte every `--period` seconds (after one whole request, with `--after-a-request`)
//! and, with `--reconnect`, open a new connection for each one the server closes. Prints `holding <n> connections` once they are open, then
//! `open <n> closed-by-server <n>` every second, for `--seconds`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::slow_clients::{SlowClient, SlowClients};
use integration_tests::sockets::raise_nofile;

#[derive(Parser)]
#[command(about = "Holds slow HTTP connections open against a loopback server")]
struct Args {
    /// The server, a loopback address.
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value_t = 5_000)]
    connections: usize,
    /// Seconds between two bytes of each head.
    #[arg(long, default_value_t = 2.0)]
    period: f64,
    #[arg(long)]
    reconnect: bool,
    /// Send one whole request before the slow head.
    #[arg(long)]
    after_a_request: bool,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("slowloris: {} is not a loopback address", args.addr);
        return ExitCode::from(2);
    }
    if let Err(e) = raise_nofile(args.connections as u64 + 1_024) {
        eprintln!("slowloris: cannot raise RLIMIT_NOFILE: {e}");
        return ExitCode::from(2);
    }
    let period = Duration::from_secs_f64(args.period);
    let mut client = if args.after_a_request {
        SlowClient::slow_head_after_a_request(period)
    } else {
        SlowClient::slow_head(period)
    };
    client.reconnect = args.reconnect;
    let started = Instant::now();
    let clients = SlowClients::start(args.addr, args.connections, client);
    let stats = clients.stats.clone();
    let total = args.connections as u64;
    while stats.opened()
        + stats
            .connect_errors
            .load(std::sync::atomic::Ordering::Relaxed)
        < total
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("holding {} connections", stats.open());
    let _ = std::io::stdout().flush();
    let end = started + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "open {} closed-by-server {}",
            stats.open(),
            stats.closed_by_server()
        );
        let _ = std::io::stdout().flush();
    }
    ExitCode::SUCCESS
}
