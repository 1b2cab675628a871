//! `trace-sidecar`: run | status.

// Shipped code handles its errors; tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use trace_sidecar::config::Config;
use trace_sidecar::otlp;
use trace_sidecar::relay::{self, BatchLimits, Buffer, Relay, SenderConfig};
use trace_sidecar::server::{self, Api, Shared};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "trace-sidecar",
    version,
    about = "Receives Datadog-protocol spans and relays them to node-daemon"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve trace clients and relay to the daemon (the default).
    Run,
    /// Print the running sidecar's /health; exit 0 when it answers, 2 when not.
    Status {
        /// host:port of the sidecar [default: 127.0.0.1 and the port of STS_TRACE_LISTEN_ADDR]
        #[arg(long)]
        addr: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("trace-sidecar: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    match args.command.unwrap_or(Command::Run) {
        Command::Status { addr } => {
            let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", config.listen_addr.port()));
            match health(&addr) {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("trace-sidecar is not reachable at {addr}: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("trace-sidecar: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// GET /health over a plain HTTP/1.0 request.
fn health(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: sidecar\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "answered: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}

fn run(config: Config) -> anyhow::Result<()> {
    sts_proto::logging::init(&config.log_level);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (STS_TRACE_LISTEN_ADDR)",
                config.listen_addr
            )
        })?;
    let sidecar_id = format!("{}-{}", hostname(), std::process::id());
    let relay = Relay::new(Buffer::new(
        &sidecar_id,
        config.buffer_bytes,
        BatchLimits::default(),
    ));
    let shared = Shared::new(relay.clone(), config.limits);
    raise_nofile(config.limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = vec![tokio::spawn(server::serve(
        listener,
        shared.clone(),
        stop_rx.clone(),
    ))];
    if let Some(path) = &config.listen_socket {
        let _ = std::fs::remove_file(path);
        let unix = tokio::net::UnixListener::bind(path).with_context(|| {
            format!(
                "cannot listen on {} (STS_TRACE_LISTEN_SOCKET)",
                path.display()
            )
        })?;
        tasks.push(tokio::spawn(server::serve(
            unix,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(addr) = config.otlp_grpc_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (STS_OTLP_GRPC_ADDR)"))?;
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = otlp::grpc::serve(listener, shared, stop).await {
                warn!("OTLP/gRPC server ended: {e}");
            }
        }));
    }
    if let Some(addr) = config.otlp_http_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (STS_OTLP_HTTP_ADDR)"))?;
        tasks.push(tokio::spawn(server::serve(
            listener,
            shared.serving(Api::Otlp),
            stop_rx.clone(),
        )));
    }
    let sender = SenderConfig {
        daemon_url: config.daemon_url.clone(),
        token: config.relay_token.clone(),
        sidecar_addr: config.listen_addr.to_string(),
        task_arn: config.task_arn.clone(),
        window: 8,
    };
    let sending = tokio::spawn(relay::run(
        relay,
        sender,
        stop_rx,
        Duration::from_millis(1500),
    ));
    info!(listen = %config.listen_addr, otlp_grpc = ?config.otlp_grpc_addr, otlp_http = ?config.otlp_http_addr, daemon = %config.daemon_url, "trace-sidecar {} started", env!("CARGO_PKG_VERSION"));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("shutting down; delivering what is buffered");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), sending).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Descriptors the sidecar needs besides its client connections (listeners, the relay's
/// connection, the runtime's, logs).
const SPARE_FILES: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to what `max_connections` needs, as far as the hard limit
/// allows (a container often starts with a soft limit of 1024); says so when it cannot.
fn raise_nofile(max_connections: usize) {
    let wanted = max_connections as u64 + SPARE_FILES;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= wanted {
        return;
    }
    let raised = wanted.min(limit.rlim_max);
    let new = libc::rlimit {
        rlim_cur: raised,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct given.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0;
    let now = if ok { raised } else { limit.rlim_cur };
    if now < wanted {
        warn!(
            "RLIMIT_NOFILE allows {now} open files, fewer than STS_TRACE_MAX_CONNECTIONS ({max_connections}) + {SPARE_FILES}: connections past it fail to be accepted (accept_errors in /health)"
        );
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "sidecar".into())
}
