//! A client of the sidecar's OTLP/gRPC port that sends pre-encoded messages: HTTP/2 on one
//! kept connection (hyper's client), blocking on its own current-thread runtime.

use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub struct GrpcClient {
    runtime: tokio::runtime::Runtime,
    sender: SendRequest<Full<Bytes>>,
    uri: String,
}

impl GrpcClient {
    pub fn connect(port: u16) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let sender = runtime.block_on(async {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(io::Error::other)?;
            tokio::spawn(connection);
            Ok::<_, io::Error>(sender)
        })?;
        Ok(Self {
            runtime,
            sender,
            uri: format!("http://127.0.0.1:{port}{EXPORT}"),
        })
    }

    /// Sends one call whose request body is `message` (its prefix and bytes), reads the
    /// whole answer; returns its grpc-status (0: OK).
    pub fn send(&mut self, message: &[u8]) -> io::Result<u32> {
        let request = hyper::Request::post(&self.uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::copy_from_slice(message)))
            .map_err(io::Error::other)?;
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            let response = sender
                .send_request(request)
                .await
                .map_err(io::Error::other)?;
            let in_headers = response.headers().get("grpc-status").cloned();
            let answer = response.into_body().collect().await;
            let answer = answer.map_err(io::Error::other)?;
            let status = in_headers
                .or_else(|| answer.trailers()?.get("grpc-status").cloned())
                .ok_or_else(|| io::Error::other("an answer without grpc-status"))?;
            let status = status.to_str().map_err(io::Error::other)?;
            status.parse().map_err(io::Error::other)
        })
    }
}
