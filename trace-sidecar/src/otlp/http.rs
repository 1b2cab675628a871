//! OTLP/HTTP: `POST /v1/traces`, protobuf or JSON, plain or gzip'd, answered as the OTLP
//! spec says: 200 with an `ExportTraceServiceResponse` (its partial success naming refused
//! spans) in the request's encoding; 4xx with a `google.rpc.Status` in it (413 for a body
//! over [`MAX_REQUEST_BYTES`], gzip'd or inflated).

use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use prost::Message;
use tracing::debug;

use super::gzip::GzipError;
use super::{RequestError, MAX_REQUEST_BYTES};
use crate::server::{read_body_within, reply, BodyError, Connection, Reply, Shared};

pub const TRACES_PATH: &str = "/v1/traces";

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, what OTLP/HTTP answers a failed request with.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC's INVALID_ARGUMENT, the code of a request refused for its content.
const INVALID_ARGUMENT: i32 = 3;

#[derive(Clone, Copy)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

pub async fn handle(request: Request<Incoming>, shared: &Shared, connection: &Connection) -> Reply {
    let path = request.uri().path().trim_end_matches('/');
    if path == "/health" && request.method() == Method::GET {
        return reply(
            StatusCode::OK,
            "application/json",
            shared.health().to_string(),
        );
    }
    if path != TRACES_PATH {
        let message = format!("{path} is not an OTLP endpoint of trace-sidecar: {TRACES_PATH} is");
        return failure(
            shared,
            Encoding::Protobuf,
            refused(StatusCode::NOT_FOUND, message),
        );
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let encoding = match media {
        PROTOBUF | "application/protobuf" => Encoding::Protobuf,
        JSON => Encoding::Json,
        other => {
            let message = format!("content type {other:?}: expected {PROTOBUF} or {JSON}");
            let error = refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
            return failure(shared, Encoding::Protobuf, error);
        }
    };
    if request.method() != Method::POST {
        let message = format!("{} is not allowed on {TRACES_PATH}", request.method());
        return failure(
            shared,
            encoding,
            refused(StatusCode::METHOD_NOT_ALLOWED, message),
        );
    }
    let gzipped = match content_encoding(&request) {
        Ok(gzipped) => gzipped,
        Err(message) => {
            let error = refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
            return failure(shared, encoding, error);
        }
    };
    if gzipped {
        shared
            .stats
            .otlp_requests_gzip
            .fetch_add(1, Ordering::Relaxed);
    }
    let body = match read_body_within(request, shared, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(e) => return failure(shared, encoding, e),
    };
    let json = matches!(encoding, Encoding::Json);
    let protobuf = match super::protobuf_body(&body, json, gzipped) {
        Ok(protobuf) => protobuf,
        Err(e) => {
            debug!("OTLP/HTTP request refused: {e}");
            let status = match e {
                RequestError::Gzip(GzipError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return failure(shared, encoding, refused(status, e.to_string()));
        }
    };
    let peer = connection.peer().await;
    let answer = match super::accept(&protobuf, TRACES_PATH, peer, shared) {
        Ok(answer) => answer,
        Err(e) => {
            debug!("OTLP/HTTP request refused: {e}");
            return failure(
                shared,
                encoding,
                refused(StatusCode::BAD_REQUEST, e.to_string()),
            );
        }
    };
    let body = match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec()),
    };
    reply(StatusCode::OK, encoding.content_type(), body)
}

/// Whether the body is gzip'd (`Content-Encoding: gzip`); an error naming any other
/// coding than `identity`.
fn content_encoding(request: &Request<Incoming>) -> Result<bool, String> {
    let Some(coding) = request.headers().get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let coding = coding.to_str().unwrap_or("?").trim();
    if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else if coding.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(format!(
            "content encoding {coding:?} is not supported: send gzip or uncompressed"
        ))
    }
}

fn refused(status: StatusCode, message: String) -> BodyError {
    BodyError {
        status,
        message,
        close: false,
    }
}

/// A refused request: counted, answered with a `Status` in the request's encoding.
fn failure(shared: &Shared, encoding: Encoding, error: BodyError) -> Reply {
    shared
        .stats
        .otlp_requests_rejected
        .fetch_add(1, Ordering::Relaxed);
    let status = RpcStatus {
        code: INVALID_ARGUMENT,
        message: error.message.clone(),
    };
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    let close = error.close;
    let mut answer = reply(error.status, encoding.content_type(), body);
    if close {
        answer.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    answer
}
