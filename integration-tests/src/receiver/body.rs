//! Response bodies: a whole one, and one that sends part of itself then fails (which makes
//! hyper close the connection mid-body).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use thiserror::Error;
use tokio::time::Sleep;

#[derive(Debug, Error)]
#[error("capture receiver closed the connection on purpose")]
pub struct Closed;

pub type ReplyBody = BoxBody<Bytes, Closed>;

pub fn full(text: impl Into<Bytes>) -> ReplyBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Declares `declared` bytes, sends `chunk`, waits a moment so the chunk is flushed, then
/// fails.
pub struct Partial {
    declared: u64,
    chunk: Option<Bytes>,
    pause: Pin<Box<Sleep>>,
}

impl Partial {
    pub fn boxed(declared: u64, chunk: Bytes) -> ReplyBody {
        Self {
            declared,
            chunk: Some(chunk),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        }
        .boxed()
    }
}

impl Body for Partial {
    type Data = Bytes;
    type Error = Closed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Closed>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Closed))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}
