//! Holds open loopback TCP connections for `bench/network-rss.sh`: `--pairs` connected
//! pairs (both ends in this process, RLIMIT_NOFILE raised for them), a few bytes sent
//! both ways on each. Prints `holding <n> connections` once they are open, then sleeps
//! until killed (or for `--seconds`, when given).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

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

/// Lets this process hold `files` descriptors.
fn raise_nofile(files: u64) -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= files {
        return Ok(());
    }
    limit.rlim_cur = files;
    limit.rlim_max = limit.rlim_max.max(files);
    // SAFETY: setrlimit reads the struct given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = raise_nofile(args.pairs as u64 * 2 + 1_024) {
        eprintln!("tcp-hold: cannot raise RLIMIT_NOFILE: {e}");
        return ExitCode::from(2);
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("listener address");
    let mut held = Vec::with_capacity(args.pairs * 2);
    let mut buf = [0u8; 16];
    for i in 0..args.pairs {
        let connected = TcpStream::connect(addr).and_then(|mut client| {
            let (mut server, _) = listener.accept()?;
            client.write_all(b"request")?;
            server.read_exact(&mut buf[..7])?;
            server.write_all(b"answer")?;
            client.read_exact(&mut buf[..6])?;
            Ok((client, server))
        });
        match connected {
            Ok((client, server)) => held.extend([client, server]),
            Err(e) => {
                eprintln!("tcp-hold: connection {i}: {e}");
                return ExitCode::from(2);
            }
        }
    }
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
