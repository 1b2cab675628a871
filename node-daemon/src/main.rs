//! `node-daemon`: run | status | snapshot.

// Shipped code handles its errors; tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use node_daemon::config::Config;

#[derive(Parser)]
#[command(
    name = "node-daemon",
    version,
    about = "StackState node agent for AWS ECS"
)]
struct Args {
    /// YAML file with STS_* keys; environment variables win over it.
    #[arg(long, global = true, env = "STS_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: collect on an interval and serve status over gRPC.
    Run {
        /// Seconds between collection cycles (overrides STS_COLLECTION_INTERVAL).
        #[arg(long)]
        interval: Option<f64>,
    },
    /// Query a running daemon; exit 0 healthy, 1 unhealthy, 2 unreachable.
    Status {
        /// host:port of the daemon's gRPC endpoint [default: STS_GRPC_ADDR, or 127.0.0.1:7182]
        #[arg(long)]
        addr: Option<String>,
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the daemon.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Collect once, without a daemon, and print the result.
    Snapshot {
        #[arg(long)]
        json: bool,
        /// Print the running daemon's latest snapshot (always JSON) instead of collecting.
        #[arg(long)]
        from_daemon: bool,
        /// host:port of the daemon for --from-daemon [default: as for `status`]
        #[arg(long)]
        addr: Option<String>,
        /// Seconds between the two samples that CPU % and rates need.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Command::Status {
            addr,
            json,
            timeout,
        } => {
            let addr = addr
                .clone()
                .unwrap_or_else(cli::daemon_client::default_addr);
            return cli::status::status(&addr, *json, seconds(*timeout));
        }
        Command::Snapshot {
            from_daemon: true,
            addr,
            ..
        } => {
            let addr = addr
                .clone()
                .unwrap_or_else(cli::daemon_client::default_addr);
            return cli::snapshot::from_daemon(&addr);
        }
        _ => {}
    }
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("node-daemon: configuration error: {e}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    let quiet = matches!(args.command, Command::Snapshot { .. });
    sts_proto::logging::init(if quiet { "warn" } else { &config.log_level });
    let result = match args.command {
        Command::Run { interval } => {
            if let Some(s) = interval {
                config.collection_interval = seconds(s);
            }
            cli::run::run(config)
        }
        Command::Snapshot { json, interval, .. } => {
            cli::snapshot::snapshot(config, seconds(interval), json)
        }
        Command::Status { .. } => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node-daemon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}
