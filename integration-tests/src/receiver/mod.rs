//! A capture receiver for the end-to-end tests: a local HTTP or HTTPS server standing in
//! for the StackState receiver. It records what arrives on each endpoint, decodes it with
//! the public formats, and fails on a schedule when told to.
//!
//! Endpoints under `<url>` (`http(s)://127.0.0.1:<port>/stsAgent`):
//! - `POST /intake` and `/intake/`: JSON (gzip/deflate per Content-Encoding);
//! - `POST /api/v1/collector` and `/api/v1/connections`: the process agent's envelope +
//!   zstd protobuf (see `envelope`, and `process_agent` for the decoded messages);
//! - `GET /features`: what `Receiver::set_features` set, else 404;
//! - `POST /api/v0.2/traces`: gzip'd protobuf `TracePayload` (see `proto`);
//! - anything else is recorded as `Unknown` and answered 404; an undecodable body on a
//!   known endpoint is recorded as `Invalid` and answered 400.
//!
//! `control` lists the `/__capture/...` paths an out-of-process test uses. `Receiver` is
//! the async API (inside a tokio runtime); `CaptureReceiver` runs one on its own runtime
//! for sync tests.

mod blocking;
mod body;
mod captured;
pub mod control;
mod decode;
pub mod envelope;
mod error;
mod failure;
pub mod process_agent;
pub mod proto;
mod server;
mod store;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use blocking::CaptureReceiver;
pub use captured::{Captured, CollectorMessage, Decoded, Endpoint};
pub use decode::{content_decode, decode, decode_as, DecodeError, TraceDetail};
pub use error::ReceiverError;
pub use failure::{FailureMode, FailureStep, Lasting, Scope};
pub use process_agent::ProcessAgentMessage;
pub use proto::{ApiTrace, Span, TracePayload, TracePayloadIds};
pub use store::{Counters, Store, DEFAULT_MAX_REQUESTS};

use server::Shared;

#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// HTTPS with a certificate made at start (see `Receiver::cert_pem`).
    pub tls: bool,
    /// 0 picks a free port.
    pub port: u16,
    /// Defaults to 127.0.0.1.
    pub bind: IpAddr,
    /// Requests kept in memory; older ones are dropped and counted.
    pub max_requests: usize,
    /// What is kept of a traces request: everything, or only the span ids.
    pub traces: TraceDetail,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        Self {
            tls: false,
            port: 0,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_requests: DEFAULT_MAX_REQUESTS,
            traces: TraceDetail::Full,
        }
    }
}

impl ReceiverOptions {
    pub fn http() -> Self {
        Self::default()
    }

    pub fn https() -> Self {
        Self {
            tls: true,
            ..Self::default()
        }
    }
}

/// A running receiver; stops when dropped (hanging requests are abandoned).
pub struct Receiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    server_pem: Option<String>,
    shutdown: watch::Sender<bool>,
}

impl Receiver {
    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(options: ReceiverOptions) -> Result<Self, ReceiverError> {
        let certs = if options.tls {
            Some(tls::Tls::generate()?)
        } else {
            None
        };
        let listener = server::bind(SocketAddr::new(options.bind, options.port)).await?;
        let addr = listener
            .local_addr()
            .map_err(|source| ReceiverError::Bind {
                addr: format!("{}:{}", options.bind, options.port),
                source,
            })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = certs.as_ref().map(|c| TlsAcceptor::from(c.config.clone()));
        let shared = Arc::new(Shared::new(
            Store::new(options.max_requests),
            options.traces,
            acceptor,
            shutdown_rx,
        ));
        tokio::spawn(server::accept_loop(shared.clone(), listener));
        Ok(Self {
            shared,
            addr,
            tls: options.tls,
            ca_pem: certs.as_ref().map(|c| c.ca_pem.clone()),
            server_pem: certs.map(|c| c.server_pem),
            shutdown,
        })
    }

    /// `http(s)://127.0.0.1:<port>/stsAgent`: what `STS_STS_URL` and friends point at.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin(), Endpoint::PREFIX)
    }

    /// `http(s)://127.0.0.1:<port>` (the control paths live here).
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that signed the server certificate (HTTPS only): a client that
    /// trusts it accepts the receiver as `localhost` or `127.0.0.1`.
    pub fn cert_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The server certificate itself (HTTPS only).
    pub fn server_cert_pem(&self) -> Option<&str> {
        self.server_pem.as_deref()
    }

    /// Replaces the steps of `scope`; they run in order, then the scope is back to normal.
    pub fn set_failure(&self, scope: Scope, steps: Vec<FailureStep>) {
        self.shared.update_schedule(|s| s.set(scope, steps));
    }

    /// One step: `fail(Scope::Traces, FailureMode::status(503), Lasting::Requests(2))`.
    pub fn fail(&self, scope: Scope, mode: FailureMode, lasting: Lasting) {
        self.set_failure(scope, vec![FailureStep::new(mode, lasting)]);
    }

    /// Adds steps after the pending ones of `scope`.
    pub fn append_failure(&self, scope: Scope, steps: Vec<FailureStep>) {
        self.shared.update_schedule(|s| s.append(scope, steps));
    }

    /// Back to normal everywhere, at once.
    pub fn clear_failure(&self) {
        self.shared.update_schedule(|s| s.clear());
    }

    /// Whether the listener is open (a global `Refuse` lasting by time closes it).
    pub fn is_listening(&self) -> bool {
        *self.shared.listening.borrow()
    }

    /// Waits (up to `timeout`) until the listener is open or closed as the schedule
    /// wants: after `set_failure` with a global `Refuse`, connections are refused from
    /// then on. True when settled.
    pub async fn settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.is_listening() == self.shared.listener_wanted() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) fn settled_blocking(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.is_listening() == self.shared.listener_wanted() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The steps not yet finished, per scope.
    pub fn pending_failures(&self) -> Vec<(Scope, Vec<FailureStep>)> {
        self.shared.update_schedule(|s| s.pending(Instant::now()))
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Kept requests to `endpoint`, oldest first (failed ones included).
    pub fn requests(&self, endpoint: Endpoint) -> Vec<Captured> {
        self.shared.store.requests(Some(endpoint))
    }

    pub fn all_requests(&self) -> Vec<Captured> {
        self.shared.store.requests(None)
    }

    /// Spans of the accepted traces requests (a failed attempt's spans are left out).
    /// Empty with `TraceDetail::IdsOnly`: see `span_ids`.
    pub fn spans(&self) -> Vec<Span> {
        self.shared.store.spans()
    }

    /// (trace id, span id) of the spans of the accepted traces requests.
    pub fn span_ids(&self) -> Vec<(u64, u64)> {
        self.shared.store.span_ids()
    }

    /// How many spans the accepted traces requests carried.
    pub fn span_count(&self) -> usize {
        self.shared.store.span_count()
    }

    /// What `GET /features` answers (a JSON object); None answers 404.
    pub fn set_features(&self, answer: Option<Value>) {
        self.shared.set_features(answer.map(|v| v.to_string()));
    }

    /// The decoded process agent messages of the accepted requests, oldest first.
    pub fn process_agent_messages(&self) -> Vec<(Captured, ProcessAgentMessage)> {
        process_agent::accepted(&self.shared.store.requests(None))
    }

    /// JSON bodies of the accepted intake requests.
    pub fn intake_messages(&self) -> Vec<Value> {
        self.shared.store.intake_messages()
    }

    pub fn counters(&self) -> Counters {
        self.shared.store.counters()
    }

    /// Waits until `pred` holds over the kept requests; false on timeout.
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(&[Captured]) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut changes = self.shared.store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.store.with(&mut pred) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.shared.store.with(&mut pred),
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
