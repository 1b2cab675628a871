//! The OTLP/gRPC server over loopback with tonic's generated client: spans buffered for
//! the relay, invalid spans answered as a partial success, a request that would decode to
//! far more than its size refused with INVALID_ARGUMENT, and the server serving on.

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

    // 300,000 empty spans: 600 KB on the wire, far more as structs.
    let huge = request(vec![Span::default(); 300_000]);
    let refused = client.export(huge).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("bytes decoded"), "{refused}");

    let answer = client.export(request(vec![span(4)])).await.unwrap();
    assert!(answer.into_inner().partial_success.is_none());
    assert_eq!(shared.relay.buffer().spans(), 3);
    let health = shared.health();
    assert_eq!(health["otlp_spans_received"], 3);
    assert_eq!(health["otlp_spans_rejected"], 1);

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
