//! OTLP/gRPC: the collector's `TraceService/Export` on its own listener (tonic).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::MAX_REQUEST_BYTES;
use crate::relay::stopped;
use crate::server::{look_up, Peer, Shared};

const ENDPOINT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Requests one connection may have in flight at once.
const STREAMS_PER_CONNECTION: u32 = 16;

struct Service {
    shared: Shared,
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let peer = match (request.remote_addr(), request.local_addr()) {
            (Some(peer), Some(local)) => {
                let found = tokio::task::spawn_blocking(move || look_up(Peer::Tcp { peer, local }));
                found.await.ok().flatten()
            }
            _ => None,
        };
        let answer = super::accept(request.get_ref(), ENDPOINT, peer.as_ref(), &self.shared);
        Ok(Response::new(answer))
    }
}

/// Serves OTLP/gRPC on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let body_timeout = shared.limits.body_timeout;
    let service =
        TraceServiceServer::new(Service { shared }).max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder()
        .timeout(body_timeout.max(Duration::from_secs(1)))
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION as usize)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            stopped(&mut stop).await
        })
        .await
}
