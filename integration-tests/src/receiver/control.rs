//! `/__capture/...`: what an out-of-process test uses to read the record and steer
//! failures. These paths are never failed on purpose (except that a global `Refuse`
//! closes the listener for them too).
//!
//! - `GET /__capture/requests[?endpoint=traces][&after=SEQ]`: `Dump` as JSON.
//! - `GET /__capture/fail`: the pending steps per scope.
//! - `POST /__capture/fail` with `FailRequest` JSON: replaces (or appends to) a scope's steps.
//! - `DELETE /__capture/fail`: back to normal everywhere.
//! - `POST /__capture/reset`: forgets the recorded requests.
//! - `GET /__capture/health`: `ok`.

use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{full, ReplyBody};
use super::captured::{Captured, Endpoint};
use super::failure::{FailureStep, Scope};
use super::server::Shared;
use super::store::Counters;

pub const PREFIX: &str = "/__capture/";

/// The answer of `GET /__capture/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dump {
    pub counters: Counters,
    pub requests: Vec<Captured>,
}

/// The body of `POST /__capture/fail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailRequest {
    pub scope: Scope,
    pub steps: Vec<FailureStep>,
    #[serde(default)]
    pub append: bool,
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<ReplyBody> {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

fn text(status: StatusCode, message: String) -> Response<ReplyBody> {
    let mut response = Response::new(full(message));
    *response.status_mut() = status;
    response
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn handle(shared: &Shared, parts: &Parts, body: Incoming) -> Response<ReplyBody> {
    let route = parts.uri.path().trim_start_matches(PREFIX);
    match (&parts.method, route) {
        (&Method::GET, "health") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "requests") => requests(shared, parts),
        (&Method::POST, "reset") => {
            shared.store.clear();
            text(StatusCode::OK, "reset\n".into())
        }
        (&Method::GET, "fail") => pending(shared),
        (&Method::DELETE, "fail") => {
            shared.update_schedule(|s| s.clear());
            pending(shared)
        }
        (&Method::POST, "fail") => {
            let bytes = match Limited::new(body, 1 << 20).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("body: {e}\n")),
            };
            match serde_json::from_slice::<FailRequest>(&bytes) {
                Ok(req) => {
                    shared.update_schedule(|s| {
                        if req.append {
                            s.append(req.scope, req.steps)
                        } else {
                            s.set(req.scope, req.steps)
                        }
                    });
                    pending(shared)
                }
                Err(e) => text(StatusCode::BAD_REQUEST, format!("not a FailRequest: {e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "unknown control path\n".into()),
    }
}

fn requests(shared: &Shared, parts: &Parts) -> Response<ReplyBody> {
    let endpoint = match query_param(parts, "endpoint") {
        None => None,
        Some(name) => match Endpoint::parse(&name) {
            Some(e) => Some(e),
            None => return text(StatusCode::BAD_REQUEST, format!("no endpoint {name:?}\n")),
        },
    };
    let after = query_param(parts, "after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let dump = Dump {
        counters: shared.store.counters(),
        requests: shared.store.requests_after(endpoint, after),
    };
    json(StatusCode::OK, &dump)
}

fn pending(shared: &Shared) -> Response<ReplyBody> {
    let steps = shared.update_schedule(|s| s.pending(Instant::now()));
    let map: serde_json::Map<String, serde_json::Value> = steps
        .into_iter()
        .map(|(scope, steps)| {
            let key = serde_json::to_value(scope)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (key, serde_json::to_value(steps).unwrap_or_default())
        })
        .collect();
    json(StatusCode::OK, &map)
}
