//! Traces: the correlated spans of each relay batch, as trace payloads. The spans of one
//! relay batch make one batch (more past the count or size limit of `encode/traces.rs`);
//! they are not held back to wait for more, since the relay acknowledges the sidecar's
//! batch once they are queued and a span waiting in memory would be lost to a crash after
//! the sidecar let it go (`traces/acks.rs`).

use std::sync::{Mutex, TryLockError};

use bytes::Bytes;

use super::{Answer, Base, Outlet, QueuedAtStart, Spec};
use crate::forward::client::Auth;
use crate::forward::encode::traces::{Encoder, TRACES_PATH};
use crate::span::CorrelatedSpan;
use crate::traces::{RelayBatch, SpanSink};

pub(crate) const SPEC: Spec = Spec {
    name: "traces",
    status: "forward.traces",
    queue_weight: 4,
    base: Base::Apm,
    auth: Auth::Header,
    answer: Answer::Ignored,
};

pub(crate) struct Pipeline {
    pub(crate) out: Outlet,
    /// Kept from batch to batch (a batch finding it busy gets one of its own).
    encoder: Mutex<Encoder>,
    queued_at_start: QueuedAtStart,
}

impl Pipeline {
    pub(crate) fn new(out: Outlet) -> Self {
        Self {
            queued_at_start: QueuedAtStart::read(&out.sink),
            out,
            encoder: Mutex::default(),
        }
    }

    fn encode(&self, spans: &[CorrelatedSpan]) -> Vec<u8> {
        let hostname = self.out.hostname();
        match self.encoder.try_lock() {
            Ok(mut encoder) => encoder.encode(hostname, spans),
            // A panic mid-batch leaves nothing to undo: encode starts afresh.
            Err(TryLockError::Poisoned(p)) => p.into_inner().encode(hostname, spans),
            Err(TryLockError::WouldBlock) => Encoder::default().encode(hostname, spans),
        }
    }
}

impl SpanSink for Pipeline {
    /// Queued (on disk with `STS_QUEUE_DIR`) when this returns.
    fn submit(&self, spans: Vec<CorrelatedSpan>, from: RelayBatch) {
        self.out.submit_relayed(TRACES_PATH, spans, from, |spans| {
            (Bytes::from(self.encode(spans)), spans.len() as u64)
        });
    }

    fn queued_at_start(&self) -> Vec<RelayBatch> {
        self.queued_at_start.take()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::Config;
    use crate::forward::Forwarder;
    use crate::shutdown::{self, Shutdown};
    use crate::traces::relay::tests::batch;
    use crate::traces::{Correlator, RelayService, TraceState};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A daemon's relay forwarding (to a receiver that is not there) through a disk queue
    /// in `dir`, its relay state and its forwarder; inside a runtime.
    struct Daemon {
        relay: RelayService,
        state: TraceState,
        forwarder: Arc<Forwarder>,
    }

    impl Daemon {
        fn start(dir: &std::path::Path, shutdown: Shutdown) -> Self {
            let config = Config::from_pairs(&[
                ("STS_STS_URL", "http://127.0.0.1:9/stsAgent"),
                ("STS_QUEUE_DIR", &dir.display().to_string()),
            ])
            .unwrap();
            let (forwarder, _tasks) = Forwarder::start(&config, "h", &shutdown).unwrap().unwrap();
            let state = TraceState::new(0);
            let relay = RelayService::new(
                state.clone(),
                Correlator::new("h", None),
                None,
                Some(forwarder.spans()),
            );
            Self {
                relay,
                state,
                forwarder,
            }
        }

        fn queued(&self) -> u64 {
            let receiver = self.forwarder.receiver.as_ref().expect("a receiver");
            receiver.traces.out.sink.queued().0
        }
    }

    #[test]
    fn the_spans_of_an_acknowledged_batch_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (_trigger, shutdown) = shutdown::channel();
        runtime().block_on(async {
            let daemon = Daemon::start(dir.path(), shutdown);
            let ack = daemon.relay.take(batch(1, 3), "peer").unwrap();
            assert!(ack.accepted && ack.reason.is_empty(), "{ack:?}");
            assert_eq!(daemon.queued(), 1, "acknowledged spans only in memory");
        });
    }

    #[test]
    fn a_batch_queued_before_a_crash_is_a_duplicate_after_the_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (_trigger, shutdown) = shutdown::channel();
        // The first daemon queues batch 5 and "crashes" before the sidecar has the ack.
        runtime().block_on(async {
            let first = Daemon::start(dir.path(), shutdown.clone());
            assert_eq!(first.relay.take(batch(5, 3), "peer").unwrap().reason, "");
        });

        // The sidecar sends it again, then the next one, to the next daemon.
        runtime().block_on(async {
            let second = Daemon::start(dir.path(), shutdown);
            let again = second.relay.take(batch(5, 3), "peer").unwrap();
            assert!(again.accepted);
            assert_eq!(again.reason, "duplicate");
            assert_eq!(second.state.spans_duplicate(), 3);
            assert_eq!(second.relay.take(batch(6, 2), "peer").unwrap().reason, "");
            assert_eq!(second.state.spans_received(), 2);
            assert_eq!(second.queued(), 2, "batches 5 and 6, once each");
        });
    }
}
