//! HTTP(S) to the receiver and the OTLP endpoint: where a pipeline's requests go, how they
//! carry the API key or the endpoint's headers, TLS verified by default (`tls.rs`),
//! unary gRPC calls for OTLP/gRPC (`grpc.rs`), every failure sorted into "retry" (network
//! errors, timeouts, 408, 429, 5xx, gRPC's transient codes) or "give up" (other 4xx and
//! codes), and no secret in any message.

mod grpc;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use url::Url;

use crate::config::secret::redact_url;
use crate::config::ApiKey;

/// How long one request may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error answer is kept for the log.
const MAX_ERROR_BODY: usize = 512;
/// How much of an accepted answer a pipeline that reads it keeps (OTLP's partial
/// success).
pub(crate) const MAX_ANSWER_BODY: usize = 16 << 10;

/// How a pipeline's requests carry the API key (added when sending, never stored).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// `?api_key=` on the URL, as the agent sends intake.
    Query,
    /// `DD-Api-Key` header, as the trace agent sends.
    Header,
    /// `sts-api-key` header, as the process agent sends.
    StsHeader,
    /// No API key: the endpoint's own headers (OTLP's `STS_OTLP_HEADERS`).
    EndpointHeaders,
}

/// The secrets a sink's requests may carry: the StackState API key, and the OTLP
/// endpoint's headers.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) headers: Arc<[(String, ApiKey)]>,
}

/// Adds the credentials to a request as the pipeline expects.
pub(crate) fn authorize<'a>(
    url: &mut Url,
    headers: &mut Vec<(&'a str, String)>,
    credentials: &'a Credentials,
    auth: Auth,
) {
    if let Auth::EndpointHeaders = auth {
        for (name, value) in credentials.headers.iter() {
            headers.push((name.as_str(), value.expose().to_string()));
        }
        return;
    }
    let Some(key) = &credentials.api_key else {
        return;
    };
    match auth {
        Auth::Query => {
            url.query_pairs_mut().append_pair("api_key", key.expose());
        }
        Auth::Header => headers.push(("DD-Api-Key", key.expose().to_string())),
        Auth::StsHeader => headers.push(("sts-api-key", key.expose().to_string())),
        Auth::EndpointHeaders => {}
    }
}

/// `base` (`https://host/stsAgent`) with `path` (`/intake`) appended, keeping its query.
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another try later.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the batch for good; retrying would not help.
    #[error("{0}")]
    Rejected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot load the system's CA certificates: {0}")]
    Roots(std::io::Error),
}

/// A batch path and the gRPC method it is sent to.
pub(crate) type Route = (&'static str, &'static str);

#[derive(Clone)]
pub struct ReceiverClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Unary gRPC calls instead of plain POSTs.
    grpc: bool,
    routes: &'static [Route],
}

impl ReceiverClient {
    /// HTTP/1.1 (and HTTPS); `skip_verification` (STS_SKIP_SSL_VALIDATION) accepts any
    /// certificate.
    pub fn new(skip_verification: bool) -> Result<Self, ClientError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(skip_verification)?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            grpc: false,
            routes: &[],
        })
    }

    /// gRPC: HTTP/2 only (ALPN `h2` over TLS, prior knowledge over plain TCP); `post`
    /// makes unary calls and reads their `grpc-status`; a batch's path goes to the method
    /// `routes` give it.
    pub(crate) fn grpc(
        skip_verification: bool,
        routes: &'static [Route],
    ) -> Result<Self, ClientError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config(skip_verification)?)
            .https_or_http()
            .enable_http2()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector),
            grpc: true,
            routes,
        })
    }

    /// Where a batch of `path` goes: its gRPC method, or the path itself.
    pub(crate) fn route<'a>(&self, path: &'a str) -> &'a str {
        self.routes
            .iter()
            .find(|(from, _)| *from == path)
            .map_or(path, |(_, to)| to)
    }

    /// POSTs `body` to `url` with `headers`; Ok with the answer's body (its first `keep`
    /// bytes) when the receiver answered 2xx. A gRPC client makes a unary call of the
    /// message `body` instead (`grpc.rs`): Ok with the answer's message when its
    /// `grpc-status` is 0.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        keep: usize,
    ) -> Result<Bytes, SendError> {
        if self.grpc {
            return self.unary(url, headers, body, keep).await;
        }
        let request = Request::post(url.as_str());
        self.exchange(request, url, headers, body, keep).await
    }

    /// A GET whose answer's body is kept up to `max_body` bytes.
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        max_body: usize,
    ) -> Result<Bytes, SendError> {
        self.exchange(
            Request::get(url.as_str()),
            url,
            headers,
            Bytes::new(),
            max_body,
        )
        .await
    }

    /// Sends the request; a success answers with the first `max_body` bytes of the body.
    async fn exchange(
        &self,
        request: hyper::http::request::Builder,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        max_body: usize,
    ) -> Result<Bytes, SendError> {
        let shown = redact_url(url);
        let response = self.send(request, &shown, headers, body).await?;
        let status = response.status();
        if status.is_success() {
            let answer = read_body(response.into_body(), REQUEST_TIMEOUT, max_body).await;
            return Ok(answer.body);
        }
        let answer = read_body(response.into_body(), Duration::from_secs(5), MAX_ERROR_BODY).await;
        let text = String::from_utf8_lossy(&answer.body).trim().to_string();
        let message = format!("{shown}: HTTP {status}: {text}");
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(SendError::Retry(message))
        } else {
            Err(SendError::Rejected(message))
        }
    }

    /// The answer's head, within [`REQUEST_TIMEOUT`]; `shown` is the URL as errors say it.
    async fn send(
        &self,
        mut request: hyper::http::request::Builder,
        shown: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, SendError> {
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Rejected(format!("{shown}: cannot build the request: {e}")))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
            Err(_) => Err(SendError::Retry(format!(
                "{shown}: no answer within {REQUEST_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(SendError::Retry(format!(
                "{shown}: {}",
                sts_proto::error_chain(&e)
            ))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// What was read of an answer's body.
struct Answer {
    body: Bytes,
    trailers: Option<hyper::HeaderMap>,
}

/// At most `max` bytes of a body (the rest is read and dropped, so the connection can be
/// reused), and its trailers; empty when it does not arrive within `within`.
async fn read_body(mut body: hyper::body::Incoming, within: Duration, max: usize) -> Answer {
    let mut kept = Vec::new();
    let mut trailers = None;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            match frame.into_data() {
                Ok(data) => {
                    let room = max.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    Answer {
        body: Bytes::from(kept),
        trailers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_append_to_the_base_path() {
        let base = Url::parse("https://sts.example/stsAgent").unwrap();
        assert_eq!(
            endpoint(&base, "/intake").as_str(),
            "https://sts.example/stsAgent/intake"
        );
        let base = Url::parse("https://sts.example/stsAgent/?x=1").unwrap();
        assert_eq!(
            endpoint(&base, "/api/v0.2/traces").as_str(),
            "https://sts.example/stsAgent/api/v0.2/traces?x=1"
        );
    }
}
