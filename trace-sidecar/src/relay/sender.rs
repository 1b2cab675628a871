//! Streams batches to the daemon over gRPC: one bidirectional stream per connection,
//! at most `window` batches unacknowledged, everything unacknowledged resent (same batch
//! ids, so the daemon drops duplicates) after a reconnect with jittered backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use sts_proto::daemon::v1::{BatchAck, ClientInfo, TracePayload};
use tokio::sync::{mpsc, watch, Notify};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tracing::{debug, info, warn};

use super::buffer::{Buffer, EncodedPayload, OutgoingBatch};
use crate::decode::Transcoded;

/// The largest batch message the sidecar sends (the daemon decodes up to 32 MiB).
const MAX_MESSAGE: usize = 32 << 20;

#[derive(Debug, Default)]
pub struct RelayStats {
    pub connected: AtomicBool,
    pub relayed_spans: AtomicU64,
    pub acked_batches: AtomicU64,
    pub last_error: Mutex<String>,
}

/// Shared between the HTTP handlers (which push) and the sender task.
#[derive(Debug, Clone)]
pub struct Relay {
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    pub stats: Arc<RelayStats>,
}

impl Relay {
    pub fn new(buffer: Buffer) -> Self {
        Self {
            buffer: Arc::new(Mutex::new(buffer)),
            wake: Arc::default(),
            stats: Arc::default(),
        }
    }

    pub fn buffer(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes the payload (outside the lock) and buffers it.
    pub fn push(&self, payload: TracePayload) {
        let encoded = EncodedPayload::new(&payload);
        drop(payload);
        self.push_encoded(encoded);
    }

    /// Buffers a transcoded payload with what is known of its client.
    pub fn push_transcoded(&self, transcoded: Transcoded, client: &ClientInfo) {
        self.push_encoded(EncodedPayload::transcoded(transcoded, client));
    }

    fn push_encoded(&self, encoded: EncodedPayload) {
        self.buffer().push_encoded(encoded);
        self.wake.notify_one();
    }
}

#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// `http://host:port` of the daemon.
    pub daemon_url: String,
    pub token: Option<crate::config::RelayToken>,
    /// Facts the daemon shows in its status.
    pub sidecar_addr: String,
    pub task_arn: String,
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect to node-daemon at {0}: {reason}", reason = sts_proto::error_chain(.1))]
    Connect(String, tonic::transport::Error),
    #[error("node-daemon at {0} refused the relay: {1}")]
    Refused(String, tonic::Status),
    #[error("relay stream to {0} ended: {1}")]
    Ended(String, String),
}

/// Runs until `stop`; then tries for up to `drain` to deliver what is buffered.
pub async fn run(
    relay: Relay,
    config: SenderConfig,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = session(&relay, &config, &mut stop, drain).await;
        relay.stats.connected.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) => return,
            Err(e) => {
                let message = e.to_string();
                let mut last = relay
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if *last != message {
                    warn!("{message}; buffering and retrying");
                }
                *last = message;
            }
        }
        if *stop.borrow() {
            return;
        }
        let jitter = Duration::from_millis(
            u64::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_millis()),
            ) % 200,
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn session(
    relay: &Relay,
    config: &SenderConfig,
    stop: &mut watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), SessionError> {
    let url = &config.daemon_url;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| SessionError::Connect(url.clone(), e))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| SessionError::Connect(url.clone(), e))?;
    let mut client = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<OutgoingBatch>(config.window.max(1) * 2);
    let resend = relay.buffer().inflight();
    for batch in resend {
        let _ = tx.try_send(stamp(batch, relay, config));
    }
    client
        .ready()
        .await
        .map_err(|e| SessionError::Connect(url.clone(), e))?;
    // What the generated `RelayClient::stream` does, with a codec that writes the batches'
    // pre-encoded bytes.
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new("sts.daemon.v1.Relay", "Stream"));
    let mut acks = client
        .streaming(
            request,
            PathAndQuery::from_static("/sts.daemon.v1.Relay/Stream"),
            BatchCodec,
        )
        .await
        .map_err(|s| SessionError::Refused(url.clone(), s))?
        .into_inner();
    relay.stats.connected.store(true, Ordering::Relaxed);
    relay
        .stats
        .last_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    info!("relaying spans to node-daemon at {url}");
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let (due, inflight) = {
            let buffer = relay.buffer();
            (buffer.due_in(), buffer.inflight_count())
        };
        if let Some(deadline) = draining {
            if (due.is_none() && inflight == 0) || tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
        }
        let can_send = inflight < config.window && due.is_some();
        let wait = if draining.is_some() {
            Duration::ZERO
        } else {
            due.unwrap_or(Duration::from_secs(3600))
        };
        tokio::select! {
            ack = acks.message() => {
                let ack = ack
                    .map_err(|s| SessionError::Ended(url.clone(), s.message().to_string()))?
                    .ok_or_else(|| SessionError::Ended(url.clone(), "closed by the daemon".into()))?;
                let mut buffer = relay.buffer();
                if ack.accepted {
                    let spans = buffer.acked(ack.batch_id);
                    relay.stats.relayed_spans.fetch_add(spans as u64, Ordering::Relaxed);
                    relay.stats.acked_batches.fetch_add(1, Ordering::Relaxed);
                } else {
                    warn!(batch = ack.batch_id, "node-daemon refused a batch: {}", ack.reason);
                    buffer.refused(ack.batch_id);
                }
            }
            _ = tokio::time::sleep(wait), if can_send => {
                let batch = relay.buffer().next_batch(draining.is_some());
                if let Some(batch) = batch {
                    debug!(batch = batch.batch_id, "sending batch");
                    if tx.send(stamp(batch, relay, config)).await.is_err() {
                        return Err(SessionError::Ended(url.clone(), "request stream closed".into()));
                    }
                }
            }
            _ = relay.wake.notified(), if draining.is_none() => {}
            _ = stopped(stop), if draining.is_none() => {
                draining = Some(tokio::time::Instant::now() + drain);
            }
        }
    }
}

/// Adds what the daemon shows about this sidecar to a batch about to be sent.
fn stamp(mut batch: OutgoingBatch, relay: &Relay, config: &SenderConfig) -> OutgoingBatch {
    batch.token = config.token.clone().unwrap_or_default();
    batch.sidecar_addr = config.sidecar_addr.clone();
    batch.task_arn = config.task_arn.clone();
    batch.dropped_spans = relay.buffer().dropped_spans();
    batch
}

/// The relay stream's codec: batches out as their pre-encoded `SpanBatch` bytes, acks in
/// through prost.
#[derive(Debug, Clone, Copy, Default)]
struct BatchCodec;

impl Codec for BatchCodec {
    type Encode = OutgoingBatch;
    type Decode = BatchAck;
    type Encoder = BatchCodec;
    type Decoder = BatchCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BatchCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BatchCodec
    }
}

impl Encoder for BatchCodec {
    type Item = OutgoingBatch;
    type Error = tonic::Status;

    fn encode(&mut self, item: OutgoingBatch, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        buf.reserve(item.encoded_len());
        item.encode(buf);
        Ok(())
    }
}

impl Decoder for BatchCodec {
    type Item = BatchAck;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<BatchAck>, Self::Error> {
        BatchAck::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("cannot decode a batch ack: {e}")))
    }
}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
