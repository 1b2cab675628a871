//! What the server allows one client and all of them together.

use std::time::Duration;

/// The connection bound, the deadlines and the head size limit. A hostile or broken client
/// (one that connects and says nothing, dribbles a header byte at a time, or sends a body
/// slower than it declared) holds a slot and memory only until one of these ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, TCP and unix socket together (STS_TRACE_MAX_CONNECTIONS).
    pub max_connections: usize,
    /// A request head (start line and headers) must arrive whole within this: from the
    /// connection's start for its first request, from the head's first byte for the next
    /// ones (STS_TRACE_HEADER_TIMEOUT).
    pub header_timeout: Duration,
    /// A request body must arrive whole within this from the end of its head
    /// (STS_TRACE_BODY_TIMEOUT).
    pub body_timeout: Duration,
    /// A kept-alive connection waiting for its next request is closed after this
    /// (STS_TRACE_IDLE_TIMEOUT).
    pub idle_timeout: Duration,
    /// The largest request head; a larger one is answered 431, as is one of more than 100
    /// headers (hyper's own limit) (STS_TRACE_MAX_HEADER_BYTES).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 << 10,
        }
    }
}
