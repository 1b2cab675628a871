//! The daemon's end of the sidecar relay: takes span batches, drops resent ones by batch
//! id, checks the optional shared token, correlates and acknowledges.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sts_proto::daemon::v1::relay_server::{Relay, RelayServer};
use sts_proto::daemon::v1::{BatchAck, SpanBatch};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::correlate::Correlator;
use super::dedup::SeenBatches;
use super::state::TraceState;
use crate::forward::Forwarder;

/// Sidecars whose seen batch ids are remembered at most.
const MAX_TRACKED_SIDECARS: usize = 4096;

pub struct RelayService {
    state: TraceState,
    /// Where correlated spans go; None in the embedded default.
    forwarder: Option<Arc<Forwarder>>,
    token: Option<String>,
    correlator: Arc<Mutex<Correlator>>,
    seen: Arc<Mutex<HashMap<String, SeenBatches>>>,
}

impl RelayService {
    pub fn new(
        state: TraceState,
        correlator: Correlator,
        token: Option<String>,
        forwarder: Option<Arc<Forwarder>>,
    ) -> Self {
        Self {
            state,
            forwarder,
            token,
            correlator: Arc::new(Mutex::new(correlator)),
            seen: Arc::default(),
        }
    }

    pub fn into_server(self) -> RelayServer<Self> {
        RelayServer::new(self).max_decoding_message_size(MAX_BATCH_BYTES)
    }

    fn take(&self, batch: SpanBatch, peer: &str) -> BatchAck {
        let ack = |accepted: bool, reason: &str| BatchAck {
            sidecar_id: batch.sidecar_id.clone(),
            batch_id: batch.batch_id,
            accepted,
            reason: reason.to_string(),
        };
        if let Some(token) = &self.token {
            if &batch.token != token {
                return ack(false, "wrong or missing relay token (STS_RELAY_TOKEN)");
            }
        }
        let spans: usize = batch
            .payloads
            .iter()
            .flat_map(|p| &p.traces)
            .map(|t| t.spans.len())
            .sum();
        let fresh = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.contains_key(&batch.sidecar_id) && seen.len() >= MAX_TRACKED_SIDECARS {
                seen.clear();
            }
            seen.entry(batch.sidecar_id.clone())
                .or_default()
                .insert(batch.batch_id)
        };
        if !fresh {
            debug!(sidecar = %batch.sidecar_id, batch = batch.batch_id, "duplicate batch dropped");
            self.state.add_duplicates(spans as u64);
            return ack(true, "duplicate");
        }
        let mut correlated = Vec::with_capacity(spans);
        {
            let mut correlator = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
            for payload in batch.payloads {
                let client = payload.client.unwrap_or_default();
                for mut trace in payload.traces {
                    correlator.correlate(&client, &mut trace);
                    correlated.extend(trace.spans);
                }
            }
        }
        let addr = if batch.sidecar_addr.is_empty() {
            peer
        } else {
            &batch.sidecar_addr
        };
        let count = correlated.len() as u64;
        let kept = match &self.forwarder {
            Some(forwarder) => {
                forwarder.submit_spans_keeping(correlated, self.state.keeps_recent())
            }
            None => correlated,
        };
        self.state.taken(
            &batch.sidecar_id,
            addr,
            &batch.task_arn,
            batch.dropped_spans,
            count,
            kept,
        );
        ack(true, "")
    }
}

/// The largest batch the daemon decodes (the sidecar batches well below this).
pub const MAX_BATCH_BYTES: usize = 32 << 20;

type AckStream = Pin<Box<dyn Stream<Item = Result<BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<SpanBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let this = RelayService {
            state: self.state.clone(),
            forwarder: self.forwarder.clone(),
            token: self.token.clone(),
            correlator: self.correlator.clone(),
            seen: self.seen.clone(),
        };
        let acks = async_stream_acks(move |tx| async move {
            let mut sidecar = None;
            while let Some(message) = inbound.next().await {
                let batch = match message {
                    Ok(batch) => batch,
                    Err(status) => {
                        debug!(%peer, "relay stream ended: {}", status.message());
                        break;
                    }
                };
                sidecar.get_or_insert_with(|| batch.sidecar_id.clone());
                let ack = this.take(batch, &peer);
                if !ack.accepted {
                    warn!(%peer, "relay batch refused: {}", ack.reason);
                }
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
            if let Some(id) = sidecar {
                this.state.disconnected(&id);
            }
        });
        Ok(Response::new(acks))
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
