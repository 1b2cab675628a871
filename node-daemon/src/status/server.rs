//! The gRPC Status service, plus grpc.health.v1 and server reflection beside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sts_proto::daemon::v1::status_server::Status;
use sts_proto::daemon::v1::{
    GetRecentSpansRequest, GetRecentSpansResponse, GetSnapshotRequest, GetSnapshotResponse,
    GetStatusRequest, GetStatusResponse,
};
use tonic::{Request, Response};

use super::registry::Registry;
use super::{LatestSnapshot, Report};
use crate::collect::container::ContainerStore;
use crate::traces::TraceState;

pub(crate) struct StatusService {
    pub(crate) registry: Registry,
    pub(crate) latest: LatestSnapshot,
    /// None when the trace relay is off.
    pub(crate) traces: Option<TraceState>,
    pub(crate) trace_relay: String,
    pub(crate) containers: Option<ContainerStore>,
    /// Read at each status request (the forwarder's sinks); None when nothing is sent.
    pub(crate) live: Option<Arc<dyn Report>>,
    pub(crate) hostname: String,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) started: Instant,
}

impl StatusService {
    pub(crate) fn response(&self) -> GetStatusResponse {
        GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: self.hostname.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            config: self.config.clone().into_iter().collect(),
            collectors: self.registry.collectors(),
            drops: self.registry.drops().into_iter().collect(),
            healthy: self.registry.healthy(),
            sidecars: self
                .traces
                .as_ref()
                .map(TraceState::sidecars)
                .unwrap_or_default(),
            spans_received_total: self.traces.as_ref().map_or(0, TraceState::spans_received),
            spans_duplicate_total: self.traces.as_ref().map_or(0, TraceState::spans_duplicate),
            relay_refused_total: self.traces.as_ref().map_or(0, TraceState::batches_refused),
            trace_relay: self.trace_relay.clone(),
            ecs: self.containers.as_ref().map_or_else(
                || "ecs: not collected (STS_PROCESS_AGENT_ENABLED=false)".into(),
                |s| s.ecs().status_line(),
            ),
        }
    }
}

#[tonic::async_trait]
impl Status for StatusService {
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, tonic::Status> {
        if let Some(live) = &self.live {
            // Live counts, not the last cycle's; reading a disk queue's length may wait
            // for a write in progress, so off the runtime's threads.
            let (live, registry) = (live.clone(), self.registry.clone());
            let _ = tokio::task::spawn_blocking(move || live.report(&registry)).await;
        }
        Ok(Response::new(self.response()))
    }

    async fn get_recent_spans(
        &self,
        request: Request<GetRecentSpansRequest>,
    ) -> Result<Response<GetRecentSpansResponse>, tonic::Status> {
        let limit = request.into_inner().limit as usize;
        let spans = self
            .traces
            .as_ref()
            .map(|t| t.recent(limit))
            .unwrap_or_default();
        Ok(Response::new(GetRecentSpansResponse { spans }))
    }

    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, tonic::Status> {
        let (json, collected_unix_ms) = self.latest.json();
        Ok(Response::new(GetSnapshotResponse {
            json: json.unwrap_or_default(),
            collected_unix_ms,
        }))
    }
}

/// The service name grpc.health.v1 reports for the Status service.
pub(crate) const STATUS_SERVICE_NAME: &str = "sts.daemon.v1.Status";
