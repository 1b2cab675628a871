//! Holds open loopback TCP connections for `bench/network-rss.sh`: `--pairs` connected
//! pairs (both ends in this process, RLIMIT_NOFILE raised for them), a few bytes sent
//! both ways on each. Prints `holding <n> connections` once they are open, then sleeps
//! until killed (or for `--seconds`, when given).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use integration_tests::sockets::{loopback_pairs, raise_nofile};

#[derive(Parser)]
#[command(about = "Holds open loopback TCP connections")]
struct Args {
    /// Connected pairs (two sockets each).
    #[arg(long, default_value_t = 5_000)]
    pairs: usize,
    /// Exit after this many seconds (default: run until killed).
    #[arg(long)]
    seconds: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = raise_nofile(args.pairs as u64 * 2 + 1_024) {
        eprintln!("tcp-hold: cannot raise RLIMIT_NOFILE: {e}");
        return ExitCode::from(2);
    }
    let held = match loopback_pairs(args.pairs) {
        Ok(held) => held,
        Err(e) => {
            eprintln!("tcp-hold: {e}");
            return ExitCode::from(2);
        }
    };
    println!("holding {} connections", held.len());
    let _ = std::io::stdout().flush();
    match args.seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::park();
        },
    }
    drop(held);
    ExitCode::SUCCESS
}
