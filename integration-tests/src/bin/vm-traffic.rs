//! Traffic with known byte counts for the kernel matrix (integration-tests/vm/): one end of
//! a TCP or UDP exchange on loopback per process. Prints `ready <pid>` once its part of
//! the exchange is done, then holds its socket until killed (`hold`) or closes it
//! (`close`, TCP only), and exits.
//!
//!   vm-traffic tcp-server PORT N M hold|close   read N bytes, send M back
//!   vm-traffic tcp-client PORT N M hold|close   send N bytes, read M
//!   vm-traffic udp-server PORT N                read datagrams until N bytes came
//!   vm-traffic udp-client PORT N                send N bytes in datagrams of 1,000

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;

const DATAGRAM: usize = 1_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-traffic {}: {e}", args.join(" "));
            ExitCode::from(2)
        }
    }
}

fn number(args: &[String], at: usize) -> std::io::Result<usize> {
    args.get(at)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("argument {at} must be a number")))
}

fn run(args: &[String]) -> std::io::Result<()> {
    let port = number(args, 1)?;
    let addr = format!("127.0.0.1:{port}");
    match args[0].as_str() {
        "tcp-server" => {
            let (n, m) = (number(args, 2)?, number(args, 3)?);
            let (mut stream, _) = TcpListener::bind(&addr)?.accept()?;
            let mut buf = vec![0u8; n];
            stream.read_exact(&mut buf)?;
            stream.write_all(&vec![2u8; m])?;
            finish(stream, args.get(4))
        }
        "tcp-client" => {
            let (n, m) = (number(args, 2)?, number(args, 3)?);
            let mut stream = connect(&addr)?;
            stream.write_all(&vec![1u8; n])?;
            let mut buf = vec![0u8; m];
            stream.read_exact(&mut buf)?;
            finish(stream, args.get(4))
        }
        "udp-server" => {
            let n = number(args, 2)?;
            let socket = UdpSocket::bind(&addr)?;
            let (mut got, mut buf) = (0, [0u8; 65_536]);
            while got < n {
                got += socket.recv(&mut buf)?;
            }
            hold(socket)
        }
        "udp-client" => {
            let n = number(args, 2)?;
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(&addr)?;
            let mut left = n;
            while left > 0 {
                let size = left.min(DATAGRAM);
                left -= socket.send(&vec![3u8; size])?;
            }
            hold(socket)
        }
        other => Err(std::io::Error::other(format!("unknown mode {other}"))),
    }
}

/// The server may not listen yet: retry for up to 10 s.
fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut tries = 0;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(_) if tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

fn finish(stream: TcpStream, how: Option<&String>) -> std::io::Result<()> {
    match how.map(String::as_str) {
        Some("close") => {
            drop(stream);
            hold(())
        }
        _ => hold(stream),
    }
}

fn ready() -> std::io::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", std::process::id())?;
    out.flush()
}

fn hold<T>(socket: T) -> std::io::Result<()> {
    ready()?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        let _ = &socket;
    }
}
