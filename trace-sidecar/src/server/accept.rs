//! The accept loop, one for TCP and the unix socket: where the connection bound is kept.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::connection::{self, Peer};
use super::slots::Admission;
use super::Shared;
use crate::relay::stopped;

/// A listening socket the server accepts trace clients on.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        Ok((stream, Peer::Tcp { peer, local }))
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Io, Peer)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let pid = stream
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok());
        Ok((stream, Peer::Unix(pid)))
    }
}

/// How often at most one kind of event is logged; the counters in /health have them all.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts events and says when to log them: the first at once, then at most once per
/// [`LOG_EVERY`] with how many came since the last line.
struct Throttle {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    fn new() -> Self {
        Self {
            last: None,
            since: 0,
        }
    }

    /// One more event; how many to log now, if it is time.
    fn hit(&mut self) -> Option<u64> {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// Accepts connections on `listener` until `stop`, each in a slot of `shared.slots`.
pub async fn serve<L: Listener>(listener: L, shared: Shared, mut stop: watch::Receiver<bool>) {
    let (mut refused, mut shed, mut failed) = (Throttle::new(), Throttle::new(), Throttle::new());
    let stats = shared.stats.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => return,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = failed.hit() {
                    warn!(
                        "{n} connection(s) could not be accepted (since the last such line): {e}"
                    );
                }
                // Out of descriptors or memory: the listener stays ready, so wait a moment
                // rather than spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = match shared.slots.admit() {
            Admission::Admitted { slot, shed: false } => slot,
            Admission::Admitted { slot, shed: true } => {
                stats.connections_shed.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = shed.hit() {
                    warn!(
                        "{n} connection(s) waiting for a request closed to make room (since the last such line): all {} slots (STS_TRACE_MAX_CONNECTIONS) are taken",
                        shared.slots.max()
                    );
                }
                slot
            }
            Admission::Refused => {
                stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = refused.hit() {
                    warn!(
                        "{n} connection(s) refused (since the last such line): all {} slots (STS_TRACE_MAX_CONNECTIONS) serve requests",
                        shared.slots.max()
                    );
                }
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection::serve(io, peer, slot, shared.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::relay::{BatchLimits, Buffer, Relay};
    use crate::server::Limits;

    async fn server(limits: Limits) -> (SocketAddr, Shared, watch::Sender<bool>) {
        let relay = Relay::new(Buffer::new("test", 1 << 20, BatchLimits::default()));
        let shared = Shared::new(relay, limits);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, shared.clone(), stopped));
        (addr, shared, stop)
    }

    /// Whether the server closed `stream` within `within` (EOF or reset).
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 64];
        loop {
            match tokio::time::timeout(within, stream.read(&mut byte)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    const SLOW_BODY: &[u8] = b"PUT /v0.4/traces HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n";

    #[tokio::test]
    async fn the_bound_sheds_waiting_connections_and_refuses_when_all_serve() {
        let limits = Limits {
            max_connections: 2,
            body_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let (addr, shared, _stop) = server(limits).await;
        let stats = &shared.stats;
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        let mut serving = TcpStream::connect(addr).await.unwrap();
        serving.write_all(SLOW_BODY).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(shared.slots.open(), 2);
        // At the bound: the connection that said nothing gives its slot to the new one.
        let mut newer = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut waiting, Duration::from_secs(2)).await);
        assert_eq!(stats.connections_shed.load(Ordering::Relaxed), 1);
        newer.write_all(SLOW_BODY).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Both slots serve a request: a new connection is closed at once and counted.
        let mut refused = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut refused, Duration::from_secs(2)).await);
        assert_eq!(stats.connections_refused.load(Ordering::Relaxed), 1);
        assert!(!closed_within(&mut serving, Duration::from_millis(200)).await);
        assert_eq!(stats.connections.load(Ordering::Relaxed), 3);
        assert_eq!(shared.slots.open(), 2);
    }

    #[tokio::test]
    async fn deadlines_close_slow_heads_idle_connections_and_slow_bodies() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            body_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let (addr, shared, _stop) = server(limits).await;
        let stats = &shared.stats;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);

        // A head dribbled a byte at a time is cut at the header deadline.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        for byte in b"GET /info HTTP/1.1\r\n".iter().cycle().take(40) {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(closed_within(&mut slow, Duration::from_secs(2)).await);
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(count(&stats.header_timeouts), 1);

        // Answered, then idle: kept past the header deadline, closed at the idle one.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /info HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 15];
        kept.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK");
        assert!(!closed_within(&mut kept, Duration::from_millis(400)).await);
        assert!(closed_within(&mut kept, Duration::from_secs(2)).await);
        assert_eq!(count(&stats.idle_timeouts), 1);

        // A body slower than its deadline: 408, and the connection closes.
        let mut body = TcpStream::connect(addr).await.unwrap();
        body.write_all(SLOW_BODY).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), body.read_to_end(&mut answer));
        read.await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert_eq!(count(&stats.body_timeouts), 1);
        assert_eq!(count(&stats.header_timeouts), 1);
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_answered_431_and_counted() {
        let limits = Limits {
            max_header_bytes: 2048,
            ..Limits::default()
        };
        let (addr, shared, _stop) = server(limits).await;
        for head in [
            format!("GET /info HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(4096)),
            format!(
                "GET /info HTTP/1.1\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("X-{i}: a\r\n"))
                    .collect::<String>()
            ),
        ] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(head.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        }
        let counted = || shared.stats.heads_too_large.load(Ordering::Relaxed);
        for _ in 0..50 {
            if counted() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(counted(), 2);
    }
}
