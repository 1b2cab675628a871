//! One client connection: its peer process, its HTTP/1.1 service, and how it ended.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tracing::debug;

use super::deadlines::Deadlines;
use super::first_head::{self, Prefixed};
use super::slots::{Expired, Slot};
use super::{routes, Shared};
use crate::peer::{find_peer_pid, PeerProcess};

/// Who is at the other end, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp { peer: SocketAddr, local: SocketAddr },
    Unix(Option<u32>),
}

/// A connection's client process, looked up when its first request head is complete: the
/// client is waiting for the answer then, so one that exits as soon as it is answered is
/// still known; a connection that never completes a head costs no /proc scan.
pub struct Connection {
    lookup: Mutex<Lookup>,
    found: OnceCell<Option<PeerProcess>>,
}

enum Lookup {
    NotStarted(Peer),
    Running(JoinHandle<Option<PeerProcess>>),
    Taken,
}

impl Connection {
    pub(crate) fn new(peer: Peer) -> Self {
        Self {
            lookup: Mutex::new(Lookup::NotStarted(peer)),
            found: OnceCell::new(),
        }
    }

    /// Starts looking the client process up, once: through the host /proc for TCP, from
    /// the kernel's word (SO_PEERCRED) for a unix socket.
    fn start_lookup(&self) {
        let mut lookup = self.lookup.lock().unwrap_or_else(PoisonError::into_inner);
        if let Lookup::NotStarted(peer) = *lookup {
            *lookup = Lookup::Running(tokio::task::spawn_blocking(move || look_up(peer)));
        }
    }

    /// The client process, as it was when its first request came.
    pub async fn peer(&self) -> Option<&PeerProcess> {
        self.found
            .get_or_init(|| async {
                self.start_lookup();
                let running = {
                    let mut lookup = self.lookup.lock().unwrap_or_else(PoisonError::into_inner);
                    std::mem::replace(&mut *lookup, Lookup::Taken)
                };
                match running {
                    Lookup::Running(handle) => handle.await.ok().flatten(),
                    Lookup::NotStarted(_) | Lookup::Taken => None,
                }
            })
            .await
            .as_ref()
    }
}

impl Drop for Connection {
    /// A lookup still queued for a connection that is gone never runs.
    fn drop(&mut self) {
        if let Ok(Lookup::Running(handle)) = self.lookup.get_mut() {
            handle.abort();
        }
    }
}

/// The process at the other end of `peer`, with its start and cgroup when readable.
pub fn look_up(peer: Peer) -> Option<PeerProcess> {
    let pid = match peer {
        Peer::Tcp { peer, local } => find_peer_pid(peer, local)?,
        Peer::Unix(pid) => pid?,
    };
    Some(PeerProcess::read(pid).unwrap_or(PeerProcess {
        pid,
        start_ticks: 0,
        cgroup: String::new(),
    }))
}

/// Serves HTTP/1.1 on `io` until the client closes, a deadline passes, or the connection
/// is shed for a newer one; counts how it ended.
pub async fn serve<IO>(io: IO, peer: Peer, slot: Slot, shared: Shared)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = slot.state().clone();
    let stats = shared.stats.clone();
    let ended = tokio::select! {
        ended = serve_http(io, peer, slot, shared) => ended,
        _ = state.shed.notified() => return,
    };
    let counter = match (state.expired(), &ended) {
        (Some(Expired::Header), _) => &stats.header_timeouts,
        (Some(Expired::Idle), _) => &stats.idle_timeouts,
        (None, Err(e)) if e.is_parse_too_large() => &stats.heads_too_large,
        (None, Err(e)) => {
            debug!("client connection ended: {e}");
            return;
        }
        (None, Ok(())) => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The first head read here, then hyper; Ok when the connection ended without an HTTP
/// error (a deadline's is in the slot's state).
async fn serve_http<IO>(io: IO, peer: Peer, slot: Slot, shared: Shared) -> hyper::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    let mut io = Deadlines::new(
        io,
        slot.state().clone(),
        limits.header_timeout,
        limits.idle_timeout,
    );
    let head = match first_head::read(&mut io, limits.max_header_bytes).await {
        Ok(head) if !head.is_empty() => head,
        Ok(_) | Err(_) => return Ok(()),
    };
    let connection = Arc::new(Connection::new(peer));
    let slot = Arc::new(slot);
    let service = service_fn(move |request| {
        slot.state().serving();
        connection.start_lookup();
        let (shared, connection, slot) = (shared.clone(), connection.clone(), slot.clone());
        async move {
            let reply = routes::handle(request, &shared, &connection).await;
            slot.waiting();
            Ok::<_, std::convert::Infallible>(reply)
        }
    });
    http1::Builder::new()
        .keep_alive(true)
        .max_header_size(limits.max_header_bytes)
        // The deadlines are kept by `Deadlines` (hyper's would also end idle connections).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(Prefixed::new(head, io)), service)
        .await
}
