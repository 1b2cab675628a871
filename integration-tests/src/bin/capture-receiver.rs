//! The capture receiver as a process: for manual checks, and for tests that need to kill
//! the receiver. Prints `url=<base URL>` (and `ca=<path>` with --tls) on stdout once it
//! listens, then serves until SIGTERM or SIGINT. Read what arrived with
//! `curl <origin>/__capture/requests`; steer failures with `POST <origin>/__capture/fail`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use integration_tests::receiver::{Receiver, ReceiverOptions, DEFAULT_MAX_REQUESTS};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "A local stand-in for the StackState receiver that records what arrives")]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Serve HTTPS with a certificate made at start.
    #[arg(long)]
    tls: bool,
    /// Where to write the CA certificate (PEM) that clients should trust (with --tls).
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Requests kept in memory.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS)]
    max_requests: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options = ReceiverOptions {
        tls: args.tls,
        port: args.port,
        bind: args.bind,
        max_requests: args.max_requests,
        ..ReceiverOptions::default()
    };
    let receiver = match Receiver::start(options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("capture-receiver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Some(pem) = receiver.cert_pem() {
        let path = args.ca_out.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("capture-receiver-{}.pem", std::process::id()))
        });
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("capture-receiver: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        let _ = writeln!(out, "ca={}", path.display());
    }
    let _ = writeln!(out, "url={}", receiver.url());
    let _ = out.flush();
    drop(out);

    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("capture-receiver: cannot handle signals");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(receiver);
    ExitCode::SUCCESS
}
