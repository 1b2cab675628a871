//! The daemon's end of the sidecar relay: takes span batches, checks the optional shared
//! token, drops resent ones, correlates, hands the spans on and acknowledges (`acks.rs`).
//!
//! Batches are read as their bytes (see `wire.rs`), not decoded by prost: the service is
//! served by [`RelayServer`], a hand-written tonic service for `sts.daemon.v1.Relay` whose
//! codec hands each message over as it came.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use sts_proto::daemon::v1::BatchAck;
use tokio_stream::{Stream, StreamExt};
use tonic::codec::{Codec, DecodeBuf, Decoder, ProstCodec};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::acks::{self, Duplicates, RelayBatch, SpanSink};
use super::correlate::Correlator;
use super::state::TraceState;
use super::wire::{BatchHeader, BatchView, WireError};
use crate::config::ApiKey;
use crate::poison::IgnorePoison;

pub(crate) struct RelayService {
    state: TraceState,
    /// Where correlated spans go; None in the embedded default.
    sink: Option<Arc<dyn SpanSink>>,
    token: Option<ApiKey>,
    refusals: Mutex<RefusalLog>,
    correlator: Mutex<Correlator>,
    duplicates: Duplicates,
}

impl RelayService {
    pub(crate) fn new(
        state: TraceState,
        correlator: Correlator,
        token: Option<ApiKey>,
        sink: Option<Arc<dyn SpanSink>>,
    ) -> Self {
        // Batches a previous daemon queued: a sidecar that did not get their
        // acknowledgement sends them again.
        let queued = sink.iter().flat_map(|s| s.queued_at_start()).collect();
        Self {
            state,
            sink,
            token,
            refusals: Mutex::new(RefusalLog::default()),
            correlator: Mutex::new(correlator),
            duplicates: Duplicates::new(queued),
        }
    }

    pub(crate) fn into_server(self) -> RelayServer {
        RelayServer {
            service: Arc::new(self),
        }
    }

    /// Takes one encoded `SpanBatch`. A batch whose header cannot be read cannot be
    /// acknowledged: that ends the stream, as a message prost could not decode would.
    pub(crate) fn take(&self, bytes: Bytes, peer: &str) -> Result<BatchAck, WireError> {
        let (header, payloads) = BatchHeader::read(&bytes)?;
        if let Some(token) = &self.token {
            if !token.matches(header.token.as_bytes()) {
                self.state.add_refused();
                let first = self
                    .refusals
                    .lock()
                    .ignore_poison()
                    .first_in_a_while(peer_ip(peer), Instant::now());
                if first {
                    warn!(%peer, sidecar = %header.sidecar_id, "relay batches refused: wrong or missing relay token (STS_RELAY_TOKEN); logged once a minute per address");
                }
                let reason = "wrong or missing relay token (STS_RELAY_TOKEN)";
                return Ok(acks::refused(&header, reason.into()));
            }
        }
        // Read (and checked) whole before the batch id counts as seen: a malformed batch
        // is refused for good, and the sidecar drops and counts its spans.
        let batch = match BatchView::read(bytes.clone(), header.clone(), &payloads) {
            Ok(batch) => batch,
            Err(e) => {
                let reason = format!("malformed span batch: {e}");
                return Ok(acks::refused(&header, reason));
            }
        };
        let spans = batch.span_count();
        if !self
            .duplicates
            .first_time(&header.sidecar_id, header.batch_id)
        {
            debug!(sidecar = %header.sidecar_id, batch = header.batch_id, "duplicate batch dropped");
            self.state.add_duplicates(spans as u64);
            return Ok(acks::duplicate(&header));
        }
        let mut correlated = Vec::new();
        self.correlator
            .lock()
            .ignore_poison()
            .correlate(&batch, &mut correlated);
        drop(batch);
        let addr = if header.sidecar_addr.is_empty() {
            peer
        } else {
            &header.sidecar_addr
        };
        let count = correlated.len() as u64;
        let kept = match &self.sink {
            Some(sink) => {
                let from = RelayBatch {
                    sidecar_id: header.sidecar_id.clone(),
                    batch_id: header.batch_id,
                };
                // The recent window shares the spans' bytes with what is queued.
                if self.state.keeps_recent() {
                    sink.submit(correlated.clone(), from);
                    correlated
                } else {
                    sink.submit(correlated, from);
                    Vec::new()
                }
            }
            None => correlated,
        };
        self.state.taken(
            &header.sidecar_id,
            addr,
            &header.task_arn,
            header.dropped_spans,
            count,
            kept,
        );
        Ok(acks::taken(&header))
    }

    async fn stream(
        self: Arc<Self>,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<AckStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let acks = async_stream_acks(move |tx| async move {
            let mut sidecar = None;
            while let Some(message) = inbound.next().await {
                let bytes = match message {
                    Ok(bytes) => bytes,
                    Err(status) => {
                        debug!(%peer, "relay stream ended: {}", status.message());
                        break;
                    }
                };
                // Correlation reads /proc and queueing writes (and syncs) the disk queue:
                // off the runtime thread.
                let (this, from) = (self.clone(), peer.clone());
                let taken = match tokio::task::spawn_blocking(move || this.take(bytes, &from)).await
                {
                    Ok(taken) => taken,
                    Err(e) => {
                        warn!(%peer, "relay batch not taken: {e}");
                        break;
                    }
                };
                let ack = match taken {
                    Ok(ack) => ack,
                    Err(e) => {
                        warn!(%peer, "relay stream closed: malformed span batch: {e}");
                        let status = Status::invalid_argument(format!("malformed span batch: {e}"));
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                sidecar.get_or_insert_with(|| ack.sidecar_id.clone());
                if !ack.accepted {
                    debug!(%peer, "relay batch refused: {}", ack.reason);
                }
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
            if let Some(id) = sidecar {
                self.state.disconnected(&id);
            }
        });
        Ok(Response::new(acks))
    }
}

/// Addresses whose refusals were logged lately, so that a sidecar with a wrong token
/// logs once a minute, not once a batch. Bounded: when full it starts over.
#[derive(Debug, Default)]
struct RefusalLog {
    last: HashMap<Option<IpAddr>, Instant>,
}

/// How often one address's refusals are logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
const MAX_REFUSAL_ADDRS: usize = 4096;

impl RefusalLog {
    fn first_in_a_while(&mut self, addr: Option<IpAddr>, now: Instant) -> bool {
        if let Some(last) = self.last.get(&addr) {
            if now.duration_since(*last) < REFUSAL_LOG_EVERY {
                return false;
            }
        }
        if self.last.len() >= MAX_REFUSAL_ADDRS {
            self.last.clear();
        }
        self.last.insert(addr, now);
        true
    }
}

fn peer_ip(peer: &str) -> Option<IpAddr> {
    peer.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// The largest batch the daemon decodes (the sidecar batches well below this).
pub(crate) const MAX_BATCH_BYTES: usize = 32 << 20;

type AckStream = Pin<Box<dyn Stream<Item = Result<BatchAck, Status>> + Send>>;

/// The `sts.daemon.v1.Relay` gRPC service, as tonic-build would generate it for
/// relay.proto except for its codec: batches come in as their bytes.
#[derive(Clone)]
pub(crate) struct RelayServer {
    service: Arc<RelayService>,
}

impl NamedService for RelayServer {
    const NAME: &'static str = "sts.daemon.v1.Relay";
}

impl<B> Service<http::Request<B>> for RelayServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != "/sts.daemon.v1.Relay/Stream" {
            return Box::pin(async { Ok(sts_proto::grpc::unimplemented()) });
        }
        let method = StreamMethod(self.service.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(RelayCodec::default())
                .apply_max_message_size_config(Some(MAX_BATCH_BYTES), None);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

struct StreamMethod(Arc<RelayService>);

impl StreamingService<Bytes> for StreamMethod {
    type Response = BatchAck;
    type ResponseStream = AckStream;
    type Future = BoxFuture<Response<AckStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(self.0.clone().stream(request))
    }
}

/// Batches in as their bytes (no copy: a slice of tonic's buffer), acks out through prost.
#[derive(Debug, Default)]
struct RelayCodec {
    acks: ProstCodec<BatchAck, BatchAck>,
}

impl Codec for RelayCodec {
    type Encode = BatchAck;
    type Decode = Bytes;
    type Encoder = <ProstCodec<BatchAck, BatchAck> as Codec>::Encoder;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        self.acks.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

#[derive(Debug)]
struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

/// Runs `produce` on a task that sends acks into a bounded channel read as the reply stream.
fn async_stream_acks<F, Fut>(produce: F) -> AckStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<BatchAck, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
pub(crate) mod tests {
    use prost::Message;
    use sts_proto::daemon::v1::{Span, SpanBatch, Trace, TracePayload};

    use super::*;

    /// An encoded `SpanBatch` of sidecar `app-7` (also for the forwarder's tests).
    pub(crate) fn batch(id: u64, spans: u64) -> Bytes {
        SpanBatch {
            sidecar_id: "app-7".into(),
            batch_id: id,
            payloads: vec![TracePayload {
                client: None,
                traces: vec![Trace {
                    common: None,
                    spans: (1..=spans)
                        .map(|s| Span {
                            trace_id: id,
                            span_id: s,
                            service: "shop".into(),
                            ..Span::default()
                        })
                        .collect(),
                }],
            }],
            ..SpanBatch::default()
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn a_wrong_token_is_refused_counted_and_logged_once_a_minute() {
        let relay = RelayService::new(
            TraceState::new(10),
            Correlator::new("h", None),
            Some(ApiKey::new("right")),
            None,
        );
        let ack = relay.take(batch(1, 3), "10.0.0.9:4000").unwrap();
        assert!(
            !ack.accepted && ack.reason.contains("STS_RELAY_TOKEN"),
            "{ack:?}"
        );
        assert_eq!(relay.state.batches_refused(), 1);
        assert_eq!(relay.state.spans_received(), 0);

        let mut log = RefusalLog::default();
        let (ip, other) = (peer_ip("10.0.0.9:4000"), peer_ip("10.0.0.10:4000"));
        let t0 = Instant::now();
        assert!(log.first_in_a_while(ip, t0));
        assert!(!log.first_in_a_while(ip, t0 + Duration::from_secs(59)));
        assert!(log.first_in_a_while(other, t0 + Duration::from_secs(1)));
        assert!(log.first_in_a_while(ip, t0 + Duration::from_secs(61)));
    }
}
