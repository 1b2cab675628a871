//! HTTP(S) to the receiver: where a pipeline's requests go, how they carry the API key,
//! TLS verified by default, every failure sorted into "retry" (network errors, timeouts,
//! 408, 429, 5xx) or "give up" (other 4xx), and no API key in any message.

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

/// How a pipeline's requests carry the API key (added when sending, never stored).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// `?api_key=` on the URL, as the agent sends intake.
    Query,
    /// `DD-Api-Key` header, as the trace agent sends.
    Header,
    /// `sts-api-key` header, as the process agent sends.
    StsHeader,
}

/// Adds the API key to a request as the pipeline expects.
pub(crate) fn authorize(
    url: &mut Url,
    headers: &mut Vec<(&str, String)>,
    key: Option<&ApiKey>,
    auth: Auth,
) {
    let Some(key) = key else { return };
    match auth {
        Auth::Query => {
            url.query_pairs_mut().append_pair("api_key", key.expose());
        }
        Auth::Header => headers.push(("DD-Api-Key", key.expose().to_string())),
        Auth::StsHeader => headers.push(("sts-api-key", key.expose().to_string())),
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

#[derive(Clone)]
pub struct ReceiverClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ReceiverClient {
    /// `skip_verification` (STS_SKIP_SSL_VALIDATION) accepts any certificate.
    pub fn new(skip_verification: bool) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let tls = if skip_verification {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                let reason = native
                    .errors
                    .first()
                    .map_or("none found".to_string(), |e| e.to_string());
                return Err(ClientError::Roots(std::io::Error::other(reason)));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// POSTs `body` to `url` with `headers`; Ok when the receiver answered 2xx.
    pub async fn post(
        &self,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<(), SendError> {
        self.exchange(Request::post(url.as_str()), url, headers, body, 0)
            .await
            .map(drop)
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
        mut request: hyper::http::request::Builder,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        max_body: usize,
    ) -> Result<Bytes, SendError> {
        let shown = redact_url(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Rejected(format!("{shown}: cannot build the request: {e}")))?;
        let response =
            match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await {
                Err(_) => {
                    return Err(SendError::Retry(format!(
                        "{shown}: no answer within {REQUEST_TIMEOUT:?}"
                    )))
                }
                Ok(Err(e)) => {
                    return Err(SendError::Retry(format!(
                        "{shown}: {}",
                        sts_proto::error_chain(&e)
                    )))
                }
                Ok(Ok(response)) => response,
            };
        let status = response.status();
        if status.is_success() {
            let body = read_body(response.into_body(), REQUEST_TIMEOUT, max_body).await;
            return Ok(body);
        }
        let body = read_body(response.into_body(), Duration::from_secs(5), MAX_ERROR_BODY).await;
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let message = format!("{shown}: HTTP {status}: {text}");
        let code = status.as_u16();
        if code == 408 || code == 429 || status.is_server_error() {
            Err(SendError::Retry(message))
        } else {
            Err(SendError::Rejected(message))
        }
    }
}

/// At most `max` bytes of a body (the rest is read and dropped, so the connection can be
/// reused); empty when it does not arrive within `within`.
async fn read_body(mut body: hyper::body::Incoming, within: Duration, max: usize) -> Bytes {
    let mut kept = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    Bytes::from(kept)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
