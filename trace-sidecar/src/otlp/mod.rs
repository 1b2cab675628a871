//! OTLP trace intake: OTLP/gRPC (`grpc`) and OTLP/HTTP (`http`) requests transcoded
//! (`transcode`) into the relay's spans and buffered as the Datadog path's are.

pub mod budget;
mod connections;
pub mod grpc;
mod grpc_gzip;
pub mod gzip;
pub mod http;
pub mod transcode;

use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use sts_proto::daemon::v1::ClientInfo;

use crate::decode::Limits as DecodeLimits;
use crate::peer::PeerProcess;
use crate::server::Shared;

/// The largest OTLP request body, encoded (gRPC's customary default), and the most a gzip'd
/// one may inflate to. Smaller than the Datadog path's: a request is decoded into structs
/// before it is transcoded, and a span takes tens of times its encoded size as structs.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// An OTLP request body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("OTLP ExportTraceServiceRequest refused: {0}")]
    Budget(#[from] budget::BudgetError),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: not a JSON object")]
    JsonNotObject,
    #[error(transparent)]
    Gzip(#[from] gzip::GzipError),
    #[error("OTLP ExportTraceServiceRequest refused: {0}")]
    Transcode(#[from] transcode::TranscodeError),
}

/// `ExportTraceServiceRequest` in OTLP/JSON, where an absent field is its default (the
/// generated type requires `resourceSpans`).
#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct JsonRequest {
    resource_spans: Vec<ResourceSpans>,
}

/// Decodes an OTLP/HTTP body, protobuf or JSON when `json`, within the Datadog path's
/// decode budget (checked before decoding).
pub fn decode(body: &[u8], json: bool) -> Result<ExportTraceServiceRequest, RequestError> {
    if json {
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(RequestError::JsonNotObject);
        }
        budget::check_json(body, DecodeLimits::DEFAULT.budget(body.len()))?;
        let request: JsonRequest = serde_json::from_slice(body)?;
        Ok(ExportTraceServiceRequest {
            resource_spans: request.resource_spans,
        })
    } else {
        budget::check(body, DecodeLimits::DEFAULT.budget(body.len()))?;
        Ok(ExportTraceServiceRequest::decode(body)?)
    }
}

/// Decodes an OTLP/HTTP body as [`decode`] does, inflated first when `gzipped` (to at most
/// [`MAX_REQUEST_BYTES`]).
pub fn decode_body(
    body: &[u8],
    json: bool,
    gzipped: bool,
) -> Result<ExportTraceServiceRequest, RequestError> {
    if gzipped {
        decode(&gzip::gunzip(body, MAX_REQUEST_BYTES)?, json)
    } else {
        decode(body, json)
    }
}

/// Transcodes `request`, buffers its valid spans for the relay with what is known of the
/// client, counts; the answer says which spans were refused (the spec's partial success).
/// A request whose spans would take more than the budget transcoded is refused whole.
pub fn accept(
    request: &ExportTraceServiceRequest,
    endpoint: &str,
    peer: Option<&PeerProcess>,
    shared: &Shared,
) -> Result<ExportTraceServiceResponse, RequestError> {
    let transcoded = transcode::transcode(request)?;
    let stats = &shared.stats;
    stats
        .otlp_spans_received
        .fetch_add(transcoded.spans as u64, Ordering::Relaxed);
    stats
        .otlp_spans_rejected
        .fetch_add(transcoded.rejected as u64, Ordering::Relaxed);
    let partial_success = (transcoded.rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: transcoded.rejected as i64,
        error_message: transcoded.first_error.unwrap_or_default(),
    });
    if transcoded.spans > 0 {
        stats
            .received_spans
            .fetch_add(transcoded.spans as u64, Ordering::Relaxed);
        let mut client = client_info(request, endpoint);
        if let Some(peer) = peer {
            client.peer_pid = peer.pid;
            client.peer_start_ticks = peer.start_ticks;
            client.peer_cgroup = peer.cgroup.clone();
        }
        shared.relay.push_transcoded(transcoded.payload, &client);
    }
    Ok(ExportTraceServiceResponse { partial_success })
}

/// The client as the first resource describes its SDK.
fn client_info(request: &ExportTraceServiceRequest, endpoint: &str) -> ClientInfo {
    let resource = request
        .resource_spans
        .first()
        .and_then(|r| r.resource.as_ref())
        .map(|r| r.attributes.as_slice())
        .unwrap_or_default();
    let get = |key: &str| {
        resource
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    ClientInfo {
        lang: get("telemetry.sdk.language"),
        tracer_version: get("telemetry.sdk.version"),
        container_id: get("container.id"),
        endpoint: endpoint.to_string(),
        ..ClientInfo::default()
    }
}
