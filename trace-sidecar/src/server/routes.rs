//! The trace-client endpoints: what each path accepts and answers.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use sts_proto::daemon::v1::ClientInfo;
use tracing::debug;

use super::{Api, Connection, Shared};
use crate::decode::{self, Format};

/// Request bodies larger than this are refused with 413, as the Datadog agent does.
pub const MAX_BODY_BYTES: usize = 25 << 20;

/// The endpoints `/info` lists: exactly those implemented. Client-side stats
/// (`/v0.6/stats`) are not, and `client_drop_p0s` is false, so clients send every trace.
pub const ENDPOINTS: &[&str] = &[
    "/v0.3/traces",
    "/v0.4/traces",
    "/v0.5/traces",
    "/v0.3/services",
    "/v0.4/services",
    "/info",
];

pub type Reply = Response<Full<Bytes>>;

pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    reply(status, "text/plain; charset=utf-8", body.into())
}

pub async fn handle(request: Request<Incoming>, shared: &Shared, connection: &Connection) -> Reply {
    if shared.api == Api::Otlp {
        return crate::otlp::http::handle(request, shared, connection).await;
    }
    let path = request.uri().path().to_string();
    let path = path.strip_suffix('/').unwrap_or(&path);
    let method = request.method().clone();
    let writes = method == Method::PUT || method == Method::POST;
    match path {
        "/v0.3/traces" | "/v0.4/traces" | "/v0.5/traces" if writes => {
            traces(request, path, shared, connection).await
        }
        "/v0.3/services" | "/v0.4/services" if writes => match read_body(request, shared).await {
            Ok(_) => text(StatusCode::OK, "OK"),
            Err(reply) => reply,
        },
        "/info" if method == Method::GET => reply(StatusCode::OK, "application/json", info()),
        "/health" if method == Method::GET => reply(
            StatusCode::OK,
            "application/json",
            shared.health().to_string(),
        ),
        _ if ENDPOINTS.contains(&path) || path == "/health" => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("{path} is not an endpoint of trace-sidecar"),
        ),
    }
}

/// Why a request body was not read: the answer's status and text, and whether the
/// connection must close after it.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
    pub close: bool,
}

impl BodyError {
    /// The answer in plain text.
    pub fn text_reply(self) -> Reply {
        let mut reply = text(self.status, self.message);
        if self.close {
            reply
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        reply
    }
}

/// The whole body, within the body deadline and [`MAX_BODY_BYTES`]; else the answer.
async fn read_body(request: Request<Incoming>, shared: &Shared) -> Result<Bytes, Reply> {
    read_body_within(request, shared, MAX_BODY_BYTES)
        .await
        .map_err(BodyError::text_reply)
}

/// The whole body, within the body deadline and `limit` bytes (413 past it).
pub async fn read_body_within(
    request: Request<Incoming>,
    shared: &Shared,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let too_large = || BodyError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than {limit} bytes"),
        close: false,
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let deadline = shared.limits.body_timeout;
    let collected = Limited::new(request.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(deadline, collected).await else {
        shared.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
        // The rest of the body may still come: this connection cannot carry another request.
        return Err(BodyError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the request body did not arrive within {} s",
                deadline.as_secs_f64()
            ),
            close: true,
        });
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("cannot read the request body: {e}"),
            close: false,
        }),
    }
}

fn header(request: &Request<Incoming>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn traces(
    request: Request<Incoming>,
    path: &str,
    shared: &Shared,
    connection: &Connection,
) -> Reply {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let Some(format) = decode::format_for(path, content_type.as_deref()) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("{path} is not a trace endpoint"),
        );
    };
    let mut client = ClientInfo {
        lang: header(&request, "datadog-meta-lang"),
        lang_version: header(&request, "datadog-meta-lang-version"),
        tracer_version: header(&request, "datadog-meta-tracer-version"),
        container_id: header(&request, "datadog-container-id"),
        entity_id: header(&request, "datadog-entity-id"),
        endpoint: path.to_string(),
        ..ClientInfo::default()
    };
    let declared_traces = header(&request, "x-datadog-trace-count");
    let body = match read_body(request, shared).await {
        Ok(body) => body,
        Err(reply) => {
            shared
                .stats
                .rejected_payloads
                .fetch_add(1, Ordering::Relaxed);
            return reply;
        }
    };
    let transcoded = match decode::transcode(format, &body) {
        Ok(transcoded) => transcoded,
        Err(e) => {
            shared
                .stats
                .rejected_payloads
                .fetch_add(1, Ordering::Relaxed);
            debug!(%path, "payload refused: {e}");
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot decode {path} payload: {e}"),
            );
        }
    };
    drop(body);
    if !declared_traces.is_empty() && declared_traces != transcoded.traces.to_string() {
        debug!(%declared_traces, decoded = transcoded.traces, "X-Datadog-Trace-Count differs from the payload");
    }
    let spans = transcoded.spans;
    if spans > 0 {
        if let Some(peer) = connection.peer().await {
            client.peer_pid = peer.pid;
            client.peer_start_ticks = peer.start_ticks;
            client.peer_cgroup = peer.cgroup.clone();
        }
        shared
            .stats
            .received_spans
            .fetch_add(spans as u64, Ordering::Relaxed);
        shared.relay.push_transcoded(transcoded, &client);
    }
    match format {
        Format::V03Json | Format::V03Msgpack => text(StatusCode::OK, "OK"),
        Format::V04 | Format::V05 => reply(
            StatusCode::OK,
            "application/json",
            r#"{"rate_by_service":{"service:,env:":1}}"#,
        ),
    }
}

fn info() -> String {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": ENDPOINTS,
        "client_drop_p0s": false,
        "span_meta_structs": false,
        "long_running_spans": false,
        "feature_flags": [],
        "config": {"statsd_port": 0, "receiver_port": 8126},
    })
    .to_string()
}
