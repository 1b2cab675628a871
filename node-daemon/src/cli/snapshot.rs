use std::fmt::Write as _;
use std::time::Duration;

use node_daemon::collect::container::load_once;
use node_daemon::collect::ecs::{EcsDiscovery, EcsOptions};
use node_daemon::config::Config;
use node_daemon::cycle::Collectors;
use node_daemon::model::Snapshot;
use node_daemon::status::Registry;
use sts_proto::daemon::v1::GetSnapshotRequest;

const DOCKER_TIMEOUT: Duration = Duration::from_secs(5);

/// One cycle without a daemon: two samples `interval` apart so that rates and CPU %
/// are filled, then the second is printed.
pub(crate) fn snapshot(config: Config, interval: Duration, json: bool) -> anyhow::Result<()> {
    let mut collectors = Collectors::new(&config, Registry::default())?;
    if let Some(store) = collectors.container_store() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let loaded = runtime.block_on(async {
            let options = EcsOptions {
                agent_url: config.ecs_agent_url.clone(),
                imds_url: config.ec2_metadata_url.clone(),
                ..EcsOptions::from_env()
            };
            let docker = tokio::time::timeout(DOCKER_TIMEOUT, load_once(&store)).await;
            let ecs = EcsDiscovery::new(options)
                .refresh(store.ecs_agent_ip())
                .await;
            store.set_ecs(ecs);
            docker
        });
        match loaded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("node-daemon: no containers: {e}"),
            Err(_) => eprintln!("node-daemon: no containers: the Docker engine did not answer within {DOCKER_TIMEOUT:?}"),
        }
    }
    collectors.collect()?;
    std::thread::sleep(interval);
    let snapshot = collectors.collect()?;
    if let Some(backend) = collectors.network_backend() {
        eprintln!("node-daemon: network backend {backend}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else {
        print!("{}", table(&snapshot));
    }
    Ok(())
}

/// Prints the daemon's latest snapshot. Exit 2 when unreachable, 1 before its first cycle.
pub(crate) fn from_daemon(addr: &str) -> std::process::ExitCode {
    let reply = super::daemon_client::call(addr, Duration::from_secs(5), |mut client| async move {
        client
            .get_snapshot(GetSnapshotRequest {})
            .await
            .map(tonic::Response::into_inner)
    });
    match reply {
        Ok(reply) if reply.json.is_empty() => {
            eprintln!("node-daemon at {addr} has not finished a cycle yet");
            std::process::ExitCode::from(1)
        }
        Ok(reply) => {
            println!("{}", reply.json);
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            std::process::ExitCode::from(2)
        }
    }
}

fn table(s: &Snapshot) -> String {
    let h = &s.host;
    let t = &h.telemetry;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "host {} ({}, kernel {}, {} CPUs, {} MiB): cpu user {:.1}% system {:.1}% iowait {:.1}% idle {:.1}%, load {:.2} {:.2} {:.2}, memory used {} MiB available {} MiB",
        h.hostname, h.os, h.kernel, h.cpu_count, h.memory_total_bytes >> 20,
        t.cpu.user_pct, t.cpu.system_pct, t.cpu.iowait_pct, t.cpu.idle_pct,
        t.load.load1, t.load.load5, t.load.load15,
        t.memory.used_bytes >> 20, t.memory.available_bytes >> 20,
    );
    let _ = writeln!(
        out,
        "\n{:>7} {:>7} {:<10} {:>6} {:>9} {:>4} {:>5} {:<12} COMMAND",
        "PID", "PPID", "USER", "CPU%", "RSS(KiB)", "THR", "FDS", "CONTAINER"
    );
    for p in &s.processes {
        let container = p
            .container_id
            .as_deref()
            .map_or("-", |id| &id[..id.len().min(12)]);
        let command = if p.cmdline.is_empty() {
            p.name.clone()
        } else {
            p.cmdline.join(" ")
        };
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:<10} {:>6.1} {:>9} {:>4} {:>5} {:<12} {}",
            p.pid,
            p.ppid,
            truncate(&p.user, 10),
            p.cpu_pct.unwrap_or(0.0),
            p.rss_bytes >> 10,
            p.threads,
            p.open_fds.map_or("-".into(), |n| n.to_string()),
            container,
            truncate(&command, 100),
        );
    }
    let _ = writeln!(
        out,
        "\n{} processes, {} containers, {} connections",
        s.processes.len(),
        s.containers.len(),
        s.connections.len()
    );
    out
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
