//! `node-daemon run`: collect on an interval and serve status until told to stop.
//!
//! Two listeners: the read API (status, snapshot, recent spans, reflection and health)
//! on `STS_GRPC_ADDR`, loopback by default, and the sidecars' relay (and health) on
//! `STS_RELAY_ADDR`.

mod auth;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sts_proto::daemon::v1::status_server::StatusServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tracing::{info, warn};

use crate::collect::container::ContainerStore;
use crate::collect::container::Watcher;
use crate::collect::ecs::{EcsDiscovery, EcsOptions};
use crate::config::Config;
use crate::cycle::{Collectors, CycleError};
use crate::forward::Forwarder;
use crate::model::Snapshot;
use crate::privilege;
use crate::shutdown::{self, Shutdown};
use crate::status::{LatestSnapshot, Registry, Report, StatusService, STATUS_SERVICE_NAME};
use crate::traces::{Correlator, RelayService, TraceState};

/// Keeps only the capabilities the collection cycles use; a failure leaves the daemon
/// running with what it has, and says so.
fn give_up_capabilities() {
    match privilege::keep_runtime_capabilities() {
        Ok(dropped) if dropped.permitted != 0 => info!(
            kept = %privilege::describe(privilege::runtime_mask()),
            bounding_set_narrowed = dropped.bounding,
            "dropped {} capabilities the collection cycles do not use",
            dropped.permitted.count_ones()
        ),
        Ok(_) => {}
        Err(e) => warn!("cannot drop unused capabilities, running with them: {e}"),
    }
}

/// How often the container store is checked against a full Docker listing.
const CONTAINER_RESYNC: Duration = Duration::from_secs(60);

/// At most this long between ECS discovery refreshes (answers are cached inside).
const ECS_REFRESH: Duration = Duration::from_secs(30);

/// How long the gRPC server may take to finish in-flight calls at shutdown.
const SERVER_DRAIN: Duration = Duration::from_millis(1200);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr} ({var}): {source}")]
    Bind {
        var: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Collectors(#[from] CycleError),
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Runs until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let registry = Registry::default();
    let collectors = Collectors::new(&config, registry.clone())?;
    let listener = bind("STS_GRPC_ADDR", config.grpc_addr).await?;
    let relay_listener = match config.apm_enabled {
        true => Some(bind("STS_RELAY_ADDR", config.relay_addr).await?),
        false => None,
    };
    // Everything that needs more than the cycles' capabilities is done: the eBPF programs
    // are loaded and the listeners bound.
    give_up_capabilities();
    info!(
        addr = %config.grpc_addr,
        relay = %config.relay_addr,
        hostname = collectors.hostname(),
        interval_s = config.collection_interval.as_secs_f64(),
        "node-daemon {} started",
        env!("CARGO_PKG_VERSION")
    );
    match (&config.sts_url, &config.otlp) {
        (None, None) => {
            info!("STS_STS_URL is not set: collecting without sending (embedded default)")
        }
        (None, Some(_)) => info!("STS_STS_URL is not set: sending over OTLP only"),
        _ => {}
    }

    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(STATUS_SERVICE_NAME, ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sts_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let latest = LatestSnapshot::default();
    let store = collectors.container_store();
    let traces = config
        .apm_enabled
        .then(|| TraceState::new(config.trace_recent_spans));
    let (trigger, stop) = shutdown::channel();
    let started = Forwarder::start(&config, collectors.hostname(), &stop)?;
    let (forwarder, forward_tasks) = match started {
        Some((forwarder, tasks)) => {
            forwarder.register(&registry);
            (Some(forwarder), tasks)
        }
        None => (None, Vec::new()),
    };
    let relay = traces.clone().map(|state| {
        let correlator = Correlator::new(collectors.hostname(), store.clone());
        let token = config.relay_token.clone();
        let spans = forwarder.as_ref().map(|f| f.spans());
        RelayService::new(state, correlator, token, spans).into_server()
    });
    let trace_relay = if relay.is_some() {
        format!("listening on {}", config.relay_addr)
    } else {
        "disabled (STS_APM_ENABLED=false)".to_string()
    };
    let status = StatusService {
        registry: registry.clone(),
        latest: latest.clone(),
        traces,
        trace_relay,
        containers: store.clone(),
        live: forwarder.clone().map(|f| f as Arc<dyn Report>),
        hostname: collectors.hostname().to_string(),
        config: config.summary(),
        started: Instant::now(),
    };

    let watcher = store.clone().map(|store| {
        tokio::spawn(
            Watcher {
                store,
                resync_every: CONTAINER_RESYNC,
            }
            .run(stop.clone()),
        )
    });
    let ecs = store.clone().map(|store| {
        let options = EcsOptions {
            agent_url: config.ecs_agent_url.clone(),
            imds_url: config.ec2_metadata_url.clone(),
            ..EcsOptions::from_env()
        };
        let every = config.collection_interval.min(ECS_REFRESH);
        tokio::spawn(ecs_loop(
            EcsDiscovery::new(options),
            store,
            every,
            stop.clone(),
        ))
    });
    let auth = auth::BearerAuth::new(config.grpc_token.clone());
    let read_api = tonic::transport::Server::builder()
        .add_service(health_service.clone())
        .add_service(InterceptedService::new(reflection, auth.clone()))
        .add_service(StatusServer::with_interceptor(status, auth));
    let mut servers = vec![tokio::spawn(
        read_api.serve_with_incoming_shutdown(incoming(listener), stop.clone().wait_owned()),
    )];
    if let (Some(listener), Some(relay)) = (relay_listener, relay) {
        let relay_api = tonic::transport::Server::builder()
            .initial_stream_window_size(crate::traces::RELAY_STREAM_WINDOW)
            .initial_connection_window_size(crate::traces::RELAY_CONNECTION_WINDOW)
            .max_frame_size(crate::traces::RELAY_MAX_FRAME)
            .add_service(health_service)
            .add_service(relay);
        servers.push(tokio::spawn(relay_api.serve_with_incoming_shutdown(
            incoming(listener),
            stop.clone().wait_owned(),
        )));
    }
    let collecting = tokio::spawn(collect_loop(
        CollectLoop {
            collectors,
            interval: config.collection_interval,
            registry,
            health,
            latest,
            store,
            forwarder,
        },
        stop,
    ));

    shutdown.await;
    info!("shutting down");
    trigger.trigger();
    let _ = tokio::time::timeout(SERVER_DRAIN, join_all(servers)).await;
    collecting.abort();
    for task in [watcher, ecs].into_iter().flatten() {
        task.abort();
    }
    // Senders stop at the signal; whatever they had not sent stays in the disk queue.
    for task in forward_tasks {
        let _ = tokio::time::timeout(Duration::from_millis(300), task).await;
    }
    Ok(())
}

async fn bind(var: &'static str, addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { var, addr, source })
}

/// Accepted connections, with Nagle off: small replies (status, relay acks) must not
/// wait for its delay.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    })
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>) {
    for task in tasks {
        let _ = task.await;
    }
}

struct CollectLoop {
    collectors: Collectors,
    interval: Duration,
    registry: Registry,
    health: tonic_health::server::HealthReporter,
    latest: LatestSnapshot,
    /// Its changes trigger an early cycle, so a new container shows within a second.
    store: Option<ContainerStore>,
    /// None in the embedded default (no STS_STS_URL): nothing is sent.
    forwarder: Option<Arc<Forwarder>>,
}

/// Cycles are at least this far apart, however often containers change.
const MIN_CYCLE_GAP: Duration = Duration::from_millis(100);

async fn collect_loop(state: CollectLoop, mut stop: Shutdown) {
    let CollectLoop {
        collectors,
        interval,
        registry,
        mut health,
        latest,
        store,
        forwarder,
    } = state;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collectors = Some(collectors);
    let container_change = async |store: &Option<ContainerStore>| match store {
        Some(store) => store.changed().await,
        None => std::future::pending().await,
    };
    loop {
        let early = tokio::select! {
            _ = ticker.tick() => false,
            _ = container_change(&store) => true,
            _ = stop.wait() => return,
        };
        if early {
            tokio::time::sleep(MIN_CYCLE_GAP).await;
        }
        let Some(mut owned) = collectors.take() else {
            return;
        };
        // For the health this cycle sends (status requests read the sinks live): the sinks
        // as the last cycle left them, what they have not sent since (read after this
        // cycle's submit, each per-cycle queue would always hold its new batch).
        if let Some(forwarder) = &forwarder {
            forwarder.report(&registry);
        }
        // /proc reads block; keep them off the runtime thread.
        let sending = forwarder.clone();
        let health_now = (registry.healthy(), registry.summary());
        let Ok((owned, result)) = tokio::task::spawn_blocking(move || {
            let result = owned.collect();
            // Encoding and queueing (on disk) happen here, off the runtime thread.
            if let (Ok(snapshot), Some(forwarder)) = (&result, &sending) {
                forwarder.submit_snapshot(snapshot, health_now.0, &health_now.1);
            }
            (owned, result)
        })
        .await
        else {
            warn!("collection cycle panicked; stopping collection");
            return;
        };
        collectors = Some(owned);
        log_cycle(&result);
        if let Ok(snapshot) = result {
            latest.publish(snapshot);
        }
        // The cycle's transient copies (socket lists, the previous snapshot) are freed.
        crate::heap::trim();
        let serving = if registry.healthy() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", serving).await;
        health
            .set_service_status(STATUS_SERVICE_NAME, serving)
            .await;
    }
}

fn log_cycle(result: &Result<Snapshot, CycleError>) {
    match result {
        Ok(s) => info!(
            processes = s.processes.len(),
            containers = s.containers.len(),
            connections = s.connections.len(),
            cpu_user_pct = format_args!("{:.1}", s.host.telemetry.cpu.user_pct),
            mem_used_mb = s.host.telemetry.memory.used_bytes >> 20,
            "cycle"
        ),
        Err(e) => warn!("cycle failed: {}", sts_proto::error_chain(e)),
    }
}

/// Refreshes ECS discovery into the container store until stopped.
async fn ecs_loop(
    mut discovery: EcsDiscovery,
    store: ContainerStore,
    every: Duration,
    mut stop: Shutdown,
) {
    loop {
        let info = discovery.refresh(store.ecs_agent_ip()).await;
        store.set_ecs(info);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait() => return,
        }
    }
}
