//! Hostile HTTP clients on loopback: many connections that each send a prefix and then one
//! byte every period (a slowloris dribbling a head, or a body slower than declared), or
//! nothing at all; they see the server close them. One thread drives them all, with
//! non-blocking sockets; it stops when dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What each connection sends.
#[derive(Debug, Clone)]
pub struct SlowClient {
    /// Sent at once when connected.
    pub prefix: Vec<u8>,
    /// Then this byte, every period; None: nothing more.
    pub dribble: Option<(u8, Duration)>,
    /// Open a new connection for each one the server closed (a persistent attacker).
    pub reconnect: bool,
}

impl SlowClient {
    /// A request head that never ends: its last header's value grows a byte a period.
    pub fn slow_head(period: Duration) -> Self {
        Self {
            prefix: b"GET /info HTTP/1.1\r\nHost: sidecar\r\nX-Slow: ".to_vec(),
            dribble: Some((b'a', period)),
            reconnect: false,
        }
    }

    /// One whole request first (so that the server's HTTP machinery holds the connection
    /// with its buffers), then a head that never ends.
    pub fn slow_head_after_a_request(period: Duration) -> Self {
        let mut client = Self::slow_head(period);
        let request = b"GET /info HTTP/1.1\r\nHost: sidecar\r\n\r\n";
        client.prefix.splice(0..0, request.iter().copied());
        client
    }

    /// Connections that say nothing.
    pub fn silent() -> Self {
        Self {
            prefix: Vec::new(),
            dribble: None,
            reconnect: false,
        }
    }

    /// A whole trace request head declaring a body of `declared` bytes that never comes.
    pub fn stalled_body(declared: usize) -> Self {
        let head = format!(
            "PUT /v0.4/traces HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/msgpack\r\n\
             Content-Length: {declared}\r\n\r\n"
        );
        Self {
            prefix: head.into_bytes(),
            dribble: None,
            reconnect: false,
        }
    }

    pub fn reconnecting(mut self) -> Self {
        self.reconnect = true;
        self
    }
}

/// What the clients saw so far.
#[derive(Debug, Default)]
pub struct SlowStats {
    /// Connections made, reconnections included.
    pub opened: AtomicU64,
    /// Connections the server closed (EOF or reset on a read, or a failed write).
    pub closed_by_server: AtomicU64,
    /// Connections that could not be made.
    pub connect_errors: AtomicU64,
    /// Bytes the server answered, over all connections.
    pub answered_bytes: AtomicU64,
}

impl SlowStats {
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn closed_by_server(&self) -> u64 {
        self.closed_by_server.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.opened() - self.closed_by_server()
    }
}

/// `count` slow connections to `addr`, driven until dropped.
pub struct SlowClients {
    pub stats: Arc<SlowStats>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// How often the driver looks for closed connections.
const CHECK_EVERY: Duration = Duration::from_millis(50);

impl SlowClients {
    pub fn start(addr: SocketAddr, count: usize, client: SlowClient) -> Self {
        let stats = Arc::new(SlowStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, stop) = (stats.clone(), stop.clone());
            thread::spawn(move || drive(addr, count, &client, &stats, &stop))
        };
        Self {
            stats,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(addr: SocketAddr, client: &SlowClient, stats: &SlowStats) -> Option<TcpStream> {
    let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).and_then(|mut s| {
        s.write_all(&client.prefix)?;
        s.set_nonblocking(true)?;
        Ok(s)
    });
    match connected {
        Ok(stream) => {
            stats.opened.fetch_add(1, Ordering::Relaxed);
            Some(stream)
        }
        Err(_) => {
            stats.connect_errors.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whether the server has closed `stream`; counts what it answered.
fn server_closed(stream: &mut TcpStream, stats: &SlowStats) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                stats.answered_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

fn drive(
    addr: SocketAddr,
    count: usize,
    client: &SlowClient,
    stats: &SlowStats,
    stop: &AtomicBool,
) {
    let mut streams: Vec<Option<TcpStream>> = Vec::with_capacity(count);
    for _ in 0..count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        streams.push(connect(addr, client, stats));
    }
    let mut next_byte = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let dribble =
            client
                .dribble
                .filter(|_| Instant::now() >= next_byte)
                .map(|(byte, period)| {
                    next_byte = Instant::now() + period;
                    byte
                });
        for slot in streams.iter_mut() {
            let Some(stream) = slot else { continue };
            let wrote = match dribble.map(|b| stream.write(&[b])) {
                None | Some(Ok(_)) => true,
                Some(Err(e)) => e.kind() == ErrorKind::WouldBlock,
            };
            if !wrote || server_closed(stream, stats) {
                stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
                *slot = None;
            }
            if slot.is_none() && client.reconnect {
                *slot = connect(addr, client, stats);
            }
        }
        thread::sleep(CHECK_EVERY);
    }
}
