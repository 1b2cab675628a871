//! OTLP/gRPC: the collector's `TraceService/Export` on its own listener (tonic). The
//! request is taken as its bytes ([`RawCodec`]) and transcoded where it lies, as
//! OTLP/HTTP's protobuf is; a malformed one is refused with INVALID_ARGUMENT, as the OTLP
//! spec has it. A gzip'd request is inflated within the size limit first (`grpc_gzip`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::{Codec, DecodeBuf, Decoder, ProstCodec};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};

use super::connections::Client;
use super::{grpc_gzip, MAX_REQUEST_BYTES};
use crate::relay::stopped;
use crate::server::Shared;

const ENDPOINT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The message encodings the server takes, told in every answer.
const ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// Requests one connection may have in flight at once.
const STREAMS_PER_CONNECTION: u32 = 16;

/// HTTP/2 flow-control windows, of a request and of a connection: with HTTP/2's default
/// of 64 KiB a request of a few hundred KiB waits for a WINDOW_UPDATE every 32 KiB or so.
/// What a connection may send unread stays far under what its requests may hold anyway
/// ([`MAX_REQUEST_BYTES`] each).
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 2 << 20;

struct Intake {
    shared: Shared,
}

/// Requests taken as their protobuf bytes, which the transcoder reads where they lie;
/// answers encoded by prost.
#[derive(Default)]
struct RawCodec(Prost);

type Prost = ProstCodec<ExportTraceServiceResponse, ExportTraceServiceResponse>;

struct RawDecoder;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = <Prost as Codec>::Encoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `TraceService/Export` served with [`RawCodec`] (what tonic's generated server does with
/// prost's codec).
#[derive(Clone)]
struct Server(Arc<Intake>);

impl NamedService for Server {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl UnaryService<Bytes> for Server {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.export(request).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for Server
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let server = self.clone();
        let shared = self.0.shared.clone();
        if request.uri().path() != ENDPOINT {
            return Box::pin(async move { Ok(sts_proto::grpc::unimplemented()) });
        }
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec::default())
                .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), None);
            let mut response = if grpc_gzip::is_gzip(request.headers()) {
                shared
                    .stats
                    .otlp_requests_gzip
                    .fetch_add(1, Ordering::Relaxed);
                match grpc_gzip::inflate(request).await {
                    Ok(request) => grpc.unary(server, request).await,
                    Err(e) => Status::from(e).into_http(),
                }
            } else {
                grpc.unary(server, request).await
            };
            refused(&mut response, &shared);
            response
                .headers_mut()
                .insert(ACCEPT_ENCODING, http::HeaderValue::from_static("gzip"));
            Ok(response)
        })
    }
}

/// Counts a refused request (an answer of headers only, with a status other than OK), and
/// makes tonic's OUT_OF_RANGE for a message over the size limit RESOURCE_EXHAUSTED: OTLP
/// clients retry OUT_OF_RANGE, and the same message would be refused again. The service
/// itself never answers OUT_OF_RANGE.
fn refused(response: &mut http::Response<tonic::body::BoxBody>, shared: &Shared) {
    let headers = response.headers_mut();
    let Some(code) = headers.get(Status::GRPC_STATUS) else {
        return;
    };
    if code.as_bytes() == b"0" {
        return;
    }
    if code.as_bytes() == (Code::OutOfRange as i32).to_string().as_bytes() {
        headers.insert(Status::GRPC_STATUS, (Code::ResourceExhausted as i32).into());
    }
    shared
        .stats
        .otlp_requests_rejected
        .fetch_add(1, Ordering::Relaxed);
}

impl Intake {
    async fn export(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        // Looked up at the connection's first request, kept for the others.
        let client = request.extensions().get::<Client>();
        let peer = match client {
            Some(client) => client.0.peer().await,
            None => None,
        };
        let answer = super::accept(request.get_ref(), ENDPOINT, peer, &self.shared)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
    let incoming = super::connections::incoming(
        listener,
        shared.limits.max_connections,
        shared.stats.clone(),
    );
    let service = Server(Arc::new(Intake { shared }));
    tonic::transport::Server::builder()
        .timeout(body_timeout.max(Duration::from_secs(1)))
        .max_concurrent_streams(STREAMS_PER_CONNECTION)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION as usize)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move { stopped(&mut stop).await })
        .await
}
