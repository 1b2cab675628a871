//! The HTTP/1.1 server trace clients talk to, on TCP and optionally on a unix socket.

mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;
use tracing::debug;

pub use routes::{ENDPOINTS, MAX_BODY_BYTES};

use crate::peer::{find_peer_pid, PeerProcess};
use crate::relay::{stopped, Relay};

#[derive(Debug, Default)]
pub struct ServerStats {
    pub received_spans: AtomicU64,
    pub rejected_payloads: AtomicU64,
    pub connections: AtomicU64,
}

/// What every connection's handlers share.
#[derive(Debug, Clone)]
pub struct Shared {
    pub relay: Relay,
    pub stats: Arc<ServerStats>,
}

impl Shared {
    /// The `/health` document, also what `trace-sidecar status` prints.
    pub fn health(&self) -> serde_json::Value {
        let relay = &self.relay.stats;
        let buffer = self.relay.buffer();
        let connected = relay.connected.load(Ordering::Relaxed);
        serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "daemon_connected": connected,
            "daemon_error": relay.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
            "spans_received": self.stats.received_spans.load(Ordering::Relaxed),
            "spans_relayed": relay.relayed_spans.load(Ordering::Relaxed),
            "spans_dropped": buffer.dropped_spans(),
            "spans_buffered": buffer.spans(),
            "buffer_bytes": buffer.bytes(),
            "payloads_rejected": self.stats.rejected_payloads.load(Ordering::Relaxed),
            "connections": self.stats.connections.load(Ordering::Relaxed),
        })
    }
}

/// One client connection and the process at its other end, looked up as it connects: a
/// client that sends its spans and exits at once is still known.
pub struct Connection {
    lookup: Mutex<Option<JoinHandle<Option<PeerProcess>>>>,
    found: OnceCell<Option<PeerProcess>>,
}

impl Connection {
    /// Starts looking the client process up: through the host /proc for TCP, from the
    /// kernel's word (SO_PEERCRED) for a unix socket.
    fn start(peer: Peer) -> Self {
        let lookup = tokio::task::spawn_blocking(move || {
            let pid = match peer {
                Peer::Tcp { peer, local } => find_peer_pid(peer, local)?,
                Peer::Unix(pid) => pid?,
            };
            Some(PeerProcess::read(pid).unwrap_or(PeerProcess {
                pid,
                start_ticks: 0,
                cgroup: String::new(),
            }))
        });
        Self {
            lookup: Mutex::new(Some(lookup)),
            found: OnceCell::new(),
        }
    }

    /// The client process, as it was when it connected.
    pub async fn peer(&self) -> Option<&PeerProcess> {
        self.found
            .get_or_init(|| async {
                let lookup = self.lookup.lock().ok()?.take()?;
                lookup.await.ok().flatten()
            })
            .await
            .as_ref()
    }
}

enum Peer {
    Tcp { peer: SocketAddr, local: SocketAddr },
    Unix(Option<u32>),
}

async fn serve_connection<IO>(io: IO, connection: Connection, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let connection = Arc::new(connection);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let connection = connection.clone();
        async move {
            Ok::<_, std::convert::Infallible>(routes::handle(request, &shared, &connection).await)
        }
    });
    if let Err(e) = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!("client connection ended: {e}");
    }
}

/// Accepts TCP connections until `stop`.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let connection = Connection::start(Peer::Tcp { peer, local });
        tokio::spawn(serve_connection(stream, connection, shared.clone()));
    }
}

/// Accepts unix-socket connections until `stop`.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let pid = stream
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok());
        let connection = Connection::start(Peer::Unix(pid));
        tokio::spawn(serve_connection(stream, connection, shared.clone()));
    }
}
