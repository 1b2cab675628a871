//! The gRPC Status service, plus grpc.health.v1 and server reflection beside it.

use std::collections::BTreeMap;
use std::time::Instant;

use sts_proto::daemon::v1::status_server::{Status, StatusServer};
use sts_proto::daemon::v1::{GetStatusRequest, GetStatusResponse};
use tonic::{Request, Response};

use super::registry::Registry;

pub struct StatusService {
    pub registry: Registry,
    pub hostname: String,
    pub config: BTreeMap<String, String>,
    pub started: Instant,
}

impl StatusService {
    pub fn into_server(self) -> StatusServer<Self> {
        StatusServer::new(self)
    }

    pub fn response(&self) -> GetStatusResponse {
        GetStatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: self.hostname.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            config: self.config.clone().into_iter().collect(),
            collectors: self.registry.collectors(),
            drops: self.registry.drops().into_iter().collect(),
            healthy: self.registry.healthy(),
        }
    }
}

#[tonic::async_trait]
impl Status for StatusService {
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, tonic::Status> {
        Ok(Response::new(self.response()))
    }
}

/// The service name grpc.health.v1 reports for the Status service.
pub const STATUS_SERVICE_NAME: &str = "sts.daemon.v1.Status";
