//! The receiver on a runtime of its own, for sync tests.

use std::ops::Deref;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use super::captured::Captured;
use super::error::ReceiverError;
use super::failure::{FailureMode, FailureStep, Lasting, Scope};
use super::proto::Span;
use super::{Receiver, ReceiverOptions};

const SETTLE: Duration = Duration::from_secs(2);

/// A `Receiver` served by its own tokio runtime; derefs to it. Stops when dropped.
pub struct CaptureReceiver {
    receiver: Option<Receiver>,
    runtime: Option<Runtime>,
}

impl CaptureReceiver {
    /// Starts a receiver; panics when it cannot (a test cannot go on without it).
    pub fn spawn(options: ReceiverOptions) -> Self {
        Self::try_spawn(options).unwrap_or_else(|e| panic!("capture receiver: {e}"))
    }

    pub fn try_spawn(options: ReceiverOptions) -> Result<Self, ReceiverError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("capture-receiver")
            .enable_all()
            .build()
            .map_err(ReceiverError::Runtime)?;
        let receiver = runtime.block_on(Receiver::start(options))?;
        Ok(Self {
            receiver: Some(receiver),
            runtime: Some(runtime),
        })
    }

    pub fn http() -> Self {
        Self::spawn(ReceiverOptions::http())
    }

    pub fn https() -> Self {
        Self::spawn(ReceiverOptions::https())
    }

    /// As `Receiver::set_failure`, returning once the listener is closed or open as the
    /// schedule wants (so a global `Refuse` is in force when this returns).
    pub fn set_failure(&self, scope: Scope, steps: Vec<FailureStep>) {
        self.deref().set_failure(scope, steps);
        self.settled_blocking(SETTLE);
    }

    /// As `Receiver::fail`, settled as `set_failure`.
    pub fn fail(&self, scope: Scope, mode: FailureMode, lasting: Lasting) {
        self.deref().fail(scope, mode, lasting);
        self.settled_blocking(SETTLE);
    }

    /// As `Receiver::clear_failure`, returning once the listener is open again.
    pub fn clear_failure(&self) {
        self.deref().clear_failure();
        self.settled_blocking(SETTLE);
    }

    /// Polls `pred` over the kept requests every 10 ms; false on timeout.
    pub fn wait_for(&self, mut pred: impl FnMut(&[Captured]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.store().with(&mut pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for at least `n` accepted spans; returns those there are at the end.
    pub fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Deref for CaptureReceiver {
    type Target = Receiver;

    fn deref(&self) -> &Receiver {
        self.receiver.as_ref().expect("present until drop")
    }
}

impl Drop for CaptureReceiver {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
