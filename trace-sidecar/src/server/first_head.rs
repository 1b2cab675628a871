//! A connection's first request head, read before hyper takes the connection.
//!
//! hyper gives every connection 8 KiB read and write buffers as it starts, and grows the
//! read buffer as a head trickles in (about 13 KiB for a connection that says nothing, 25
//! KiB for one that sent ten bytes): thousands of slow or silent connections would cost
//! hundreds of megabytes. Until its first head is complete a connection holds only the
//! bytes it sent; hyper then starts with those bytes in front of the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Reads until the end of the first head (a blank line), the end of the stream, or `max`
/// bytes (hyper answers a head that long with 431). Empty: the client closed first.
pub async fn read<IO: AsyncRead + Unpin>(io: &mut IO, max: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let scanned = head.len().saturating_sub(3);
        if head.len() >= max || io.read_buf(&mut head).await? == 0 {
            return Ok(head);
        }
        if ends_head(&head[scanned..]) {
            return Ok(head);
        }
    }
}

/// Whether `bytes` hold a blank line (CRLF or bare LF, as hyper's parser accepts).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// `io` with bytes already read from it in front.
pub struct Prefixed<IO> {
    prefix: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(prefix: Vec<u8>, io: IO) -> Self {
        Self { prefix, at: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn reads_up_to_the_blank_line_and_hands_the_bytes_on() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = b"GET /info HTTP/1.1\r\nHost: s\r\n\r\nGET /next";
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(5) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let head = read(&mut server, 1024).await.unwrap();
        assert!(head.starts_with(b"GET /info HTTP/1.1\r\nHost: s\r\n\r\n"));
        drop(writer.await.unwrap());
        let mut all = Vec::new();
        Prefixed::new(head, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, sent);
    }

    #[tokio::test]
    async fn stops_at_the_limit_and_at_the_end_of_the_stream() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&[b'a'; 3000]).await.unwrap();
        let head = read(&mut server, 1000).await.unwrap();
        assert!(head.len() >= 1000 && head.len() <= 3000, "{}", head.len());
        drop(client);
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(read(&mut server, 1000).await.unwrap().is_empty());
        assert!(ends_head(b"GET / HTTP/1.0\n\n") && !ends_head(b"GET / HTTP/1.1\r\n"));
    }
}
