//! A one-request-per-connection HTTP/1.1 client for plain-http local endpoints.
//!
//! Every exchange (connect, request, answer head and body) runs under one deadline, so a
//! server that accepts and never answers costs at most `timeout`. Only `200 OK` is an
//! answer; any other status is an error. Bodies above `max_body` bytes are refused, whether
//! announced by `Content-Length` or streamed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use url::{Host, Position, Url};

use super::EcsError;

const AGENT_NAME: &str = concat!("sts-node-daemon/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
pub(super) struct HttpClient {
    timeout: Duration,
    max_body: usize,
}

/// Aborts the task driving a connection when the exchange ends or is dropped, which
/// closes the socket of a server that never answered.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration, max_body: usize) -> Self {
        Self { timeout, max_body }
    }

    pub(crate) async fn get(&self, url: &Url, headers: &[(&str, &str)]) -> Result<Bytes, EcsError> {
        self.send(Method::GET, url, headers).await
    }

    pub(crate) async fn put(&self, url: &Url, headers: &[(&str, &str)]) -> Result<Bytes, EcsError> {
        self.send(Method::PUT, url, headers).await
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<T, EcsError> {
        let body = self.get(url, headers).await?;
        serde_json::from_slice(&body).map_err(|source| EcsError::Parse {
            url: url.clone(),
            source,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, EcsError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, url, headers)).await {
            Ok(result) => result,
            Err(_) => Err(EcsError::Timeout {
                url: url.clone(),
                after: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, EcsError> {
        let http = |source| EcsError::Http {
            url: url.clone(),
            source,
        };
        let stream = connect(url).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            // Its errors surface through `send_request` or the body.
            let _ = connection.await;
        }));

        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url[Position::BeforePath..Position::AfterQuery])
            .header(HOST, &url[Position::BeforeHost..Position::AfterPort])
            .header(USER_AGENT, AGENT_NAME)
            .header(CONNECTION, "close");
        if method == Method::PUT {
            request = request.header(CONTENT_LENGTH, "0");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|source| EcsError::Request {
                url: url.clone(),
                source,
            })?;

        let response = sender.send_request(request).await.map_err(http)?;
        if response.status() != StatusCode::OK {
            return Err(EcsError::Status {
                url: url.clone(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || EcsError::TooLarge {
            url: url.clone(),
            limit: self.max_body,
        };
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|length| length > self.max_body as u64) {
            return Err(too_large());
        }
        match Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
            Err(source) => Err(EcsError::Body {
                url: url.clone(),
                source,
            }),
        }
    }
}

async fn connect(url: &Url) -> Result<TcpStream, EcsError> {
    let invalid = |reason| EcsError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    if url.scheme() != "http" {
        return Err(invalid("only http:// URLs are supported here"));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = match url.host() {
        Some(Host::Domain(name)) => TcpStream::connect((name, port)).await,
        Some(Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
        Some(Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
        None => return Err(invalid("has no host")),
    };
    let stream = stream.map_err(|source| EcsError::Connect {
        url: url.clone(),
        source,
    })?;
    // Requests are one small packet; do not wait for more.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_other_schemes_before_connecting() {
        let client = HttpClient::new(Duration::from_millis(100), 1024);
        let url = Url::parse("https://169.254.169.254/latest").unwrap();
        let err = client.get(&url, &[]).await.unwrap_err();
        assert!(matches!(err, EcsError::InvalidUrl { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("https://169.254.169.254/latest: "));
    }

    #[tokio::test]
    async fn connection_refused_is_unreachable() {
        // Bind then drop: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::new(Duration::from_secs(1), 1024);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/metadata")).unwrap();
        let err = client.get(&url, &[]).await.unwrap_err();
        assert!(matches!(err, EcsError::Connect { .. }), "{err}");
        assert!(err.is_unreachable());
    }
}
