//! The OTLP/gRPC server over loopback with tonic's generated client: spans buffered for
//! the relay, invalid spans answered as a partial success (300,000 of them at once), and
//! the server serving on; gzip'd requests inflated within the size limit,
//! RESOURCE_EXHAUSTED past it; a malformed one INVALID_ARGUMENT.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tokio::net::TcpListener;
use tokio::sync::watch;
use trace_sidecar::otlp::grpc;
use trace_sidecar::relay::{BatchLimits, Buffer, Relay};
use trace_sidecar::server::{Limits, Shared};

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn span(id: u64) -> Span {
    Span {
        trace_id: [7u8; 16].to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        name: "work".into(),
        ..Span::default()
    }
}

#[tokio::test]
async fn export_partial_success_and_refusals() {
    let relay = Relay::new(Buffer::new("test", 64 << 20, BatchLimits::default()));
    let shared = Shared::new(relay, Limits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(grpc::serve(listener, shared.clone(), stopped));
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let mut bad = span(3);
    bad.trace_id.truncate(4);
    let answer = client
        .export(request(vec![span(1), span(2), bad]))
        .await
        .unwrap()
        .into_inner();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("trace_id has 4 bytes"));
    assert_eq!(shared.relay.buffer().spans(), 2);

    // 300,000 empty spans: 600 KB on the wire, read where they lie, each refused.
    let huge = request(vec![Span::default(); 300_000]);
    let answer = client.export(huge).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 300_000);

    let answer = client.export(request(vec![span(4)])).await.unwrap();
    assert!(answer.into_inner().partial_success.is_none());
    assert_eq!(shared.relay.buffer().spans(), 3);
    let health = shared.health();
    assert_eq!(health["otlp_spans_received"], 3);
    assert_eq!(health["otlp_spans_rejected"], 300_001);

    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn connections_past_the_bound_wait_for_a_place() {
    let relay = Relay::new(Buffer::new("test", 1 << 20, BatchLimits::default()));
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let shared = Shared::new(relay, limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(grpc::serve(listener, shared.clone(), stopped));

    let mut first = TraceServiceClient::connect(url.clone()).await.unwrap();
    first.export(request(vec![span(1)])).await.unwrap();
    let mut second = TraceServiceClient::connect(url).await.unwrap();
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        second.export(request(vec![span(2)])),
    )
    .await;
    assert!(waiting.is_err(), "the second connection waits for a place");
    drop(first);
    let served = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        second.export(request(vec![span(3)])),
    )
    .await;
    assert!(served.expect("served once the first closed").is_ok());
    assert_eq!(shared.relay.buffer().spans(), 2);
}

/// One call over HTTP/2 with `body` as the request's framed messages and
/// `grpc-encoding: gzip`: the answer's grpc-status and its grpc-accept-encoding header.
async fn export_gzipd(addr: std::net::SocketAddr, body: Vec<u8>) -> (String, String) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let executor = hyper_util::rt::TokioExecutor::new();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(executor, io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(format!(
        "http://{addr}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-encoding", "gzip")
    .body(Full::new(bytes::Bytes::from(body)))
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let accepts = response.headers()["grpc-accept-encoding"]
        .to_str()
        .unwrap()
        .to_string();
    let in_headers = response.headers().get("grpc-status").cloned();
    let collected = response.into_body().collect().await.unwrap();
    let status = in_headers
        .or_else(|| collected.trailers()?.get("grpc-status").cloned())
        .expect("a grpc-status");
    (status.to_str().unwrap().to_string(), accepts)
}

/// A gRPC message: the compressed flag, the length, the bytes.
fn framed(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend((message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzipd_requests_inflated_within_the_limit() {
    use prost::Message;
    let relay = Relay::new(Buffer::new("test", 64 << 20, BatchLimits::default()));
    let shared = Shared::new(relay, Limits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(grpc::serve(listener, shared.clone(), stopped));

    let export = request(vec![span(1), span(2)]).encode_to_vec();
    let answer = export_gzipd(addr, framed(true, &gzip(&export))).await;
    assert_eq!(answer, ("0".to_string(), "gzip".to_string()));
    assert_eq!(shared.relay.buffer().spans(), 2);

    // A string attribute of 4 MiB of zeroes: a valid request, 4 KB gzip'd.
    let mut bomb = span(3);
    bomb.name = "\0".repeat(trace_sidecar::otlp::MAX_REQUEST_BYTES);
    let bomb = gzip(&request(vec![bomb]).encode_to_vec());
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let resource_exhausted = (tonic::Code::ResourceExhausted as i32).to_string();
    assert_eq!(
        export_gzipd(addr, framed(true, &bomb)).await.0,
        resource_exhausted
    );
    let corrupt = framed(true, b"\x1f\x8b not quite gzip");
    let invalid_argument = (tonic::Code::InvalidArgument as i32).to_string();
    assert_eq!(export_gzipd(addr, corrupt).await.0, invalid_argument);
    // Not protobuf, as it came (the flag says so): the transcoder refuses it.
    let malformed = framed(false, b"\xff\xff\xff");
    assert_eq!(export_gzipd(addr, malformed).await.0, invalid_argument);
    assert_eq!(shared.relay.buffer().spans(), 2);

    // Uncompressed past the limit: RESOURCE_EXHAUSTED too, which OTLP clients do not retry.
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut large = span(4);
    large.name = "x".repeat(trace_sidecar::otlp::MAX_REQUEST_BYTES);
    let refused = client.export(request(vec![large])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    let health = shared.health();
    assert_eq!(health["otlp_requests_rejected"], 4, "{health}");
    assert_eq!(health["otlp_requests_gzip"], 4, "{health}");
}
