//! The OTLP/gRPC listener's connections, at most `STS_TRACE_MAX_CONNECTIONS` open at once
//! (as many as the HTTP listeners share): at the bound, new ones wait in the kernel's
//! accept queue until one closes. Each carries its client process, looked up once (at its
//! first request) as an HTTP connection's is, for every request on it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::server::{Connection, Peer, ServerStats};

/// A connection holding its place among the open ones until it is dropped.
pub struct Bounded {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    client: Client,
}

/// What tonic gives each request of a connection (its `ConnectInfo`): the client process.
#[derive(Clone)]
pub struct Client(pub Arc<Connection>);

/// The accepted connections, at most `max` open at once; accept failures are counted in
/// `accept_errors` and the loop goes on.
pub fn incoming(
    listener: TcpListener,
    max: usize,
    stats: Arc<ServerStats>,
) -> ReceiverStream<io::Result<Bounded>> {
    let (tx, rx) = mpsc::channel(1);
    let places = Arc::new(Semaphore::new(max));
    tokio::spawn(async move {
        loop {
            let Ok(place) = places.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let client = match stream.local_addr() {
                        Ok(local) => Connection::new(Peer::Tcp { peer, local }),
                        // No local address to look the peer up by: no client process.
                        Err(_) => Connection::new(Peer::Unix(None)),
                    };
                    let connection = Bounded {
                        stream,
                        _place: place,
                        client: Client(Arc::new(client)),
                    };
                    if tx.send(Ok(connection)).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

impl Connected for Bounded {
    type ConnectInfo = Client;

    fn connect_info(&self) -> Client {
        self.client.clone()
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
