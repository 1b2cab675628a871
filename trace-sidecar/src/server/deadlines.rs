//! The head and idle deadlines of one connection, kept by its socket.
//!
//! hyper's own `header_read_timeout` runs from the moment hyper starts waiting for a head, so
//! it cannot tell a kept-alive connection idling between requests (allowed a minute) from
//! one dribbling a head (allowed seconds). This wrapper can: it sees the head's first byte
//! arrive, and the connection's [`SlotState`] says whether a request is being served (no
//! deadline here then: the body has its own, in the routes).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::slots::{Expired, SlotState};

/// A connection's socket that fails with `TimedOut` once a deadline passes.
pub struct Deadlines<IO> {
    io: IO,
    state: Arc<SlotState>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// The wait ticket last seen: a new one means a request was answered.
    wait: Option<u64>,
    /// When the wait began, and when its head's first byte came (at the start for the
    /// first request: a new connection must send its head at once).
    waiting_since: Instant,
    head_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<IO> Deadlines<IO> {
    pub fn new(io: IO, state: Arc<SlotState>, header: Duration, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            wait: state.waiting(),
            io,
            state,
            header_timeout: header,
            idle_timeout: idle,
            waiting_since: now,
            head_since: Some(now),
            timer: Box::pin(tokio::time::sleep_until(now + header)),
        }
    }

    /// The deadline in force, None while a request is served.
    fn deadline(&mut self) -> Option<(Instant, Expired)> {
        let wait = self.state.waiting()?;
        if self.wait != Some(wait) {
            self.wait = Some(wait);
            self.waiting_since = Instant::now();
            self.head_since = None;
        }
        Some(match self.head_since {
            Some(since) => (since + self.header_timeout, Expired::Header),
            None => (self.waiting_since + self.idle_timeout, Expired::Idle),
        })
    }

    /// Arms the timer for the deadline in force (so the task wakes when it passes, even if
    /// nothing else happens on the socket); the deadline, once it has passed.
    fn passed(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        let (at, expired) = self.deadline()?;
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        self.timer.as_mut().poll(cx).is_ready().then_some(expired)
    }

    /// Bytes read: the first of a head, when the connection was idling.
    fn received(&mut self, n: usize) {
        if n > 0 && self.deadline().is_some() && self.head_since.is_none() {
            self.head_since = Some(Instant::now());
        }
    }

    /// `polled` as it is, unless it is pending and a deadline has passed. Every poll arms
    /// the timer: the answer to a request is written after the request's service set the
    /// connection waiting again, which no read may follow until the idle deadline.
    fn unless_expired<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let passed = self.passed(cx);
        let (Poll::Pending, Some(expired)) = (&polled, passed) else {
            return polled;
        };
        self.state.set_expired(expired);
        let what = match expired {
            Expired::Header => "the request head did not arrive in time",
            Expired::Idle => "the connection idled too long",
        };
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.received(buf.filled().len() - before);
        }
        self.unless_expired(cx, polled)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.unless_expired(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.unless_expired(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.unless_expired(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.unless_expired(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
