//! OTLP trace intake: OTLP/gRPC (`grpc`) and OTLP/HTTP (`http`) requests transcoded
//! (`transcode`) into the relay's spans and buffered as the Datadog path's are.

pub mod budget;
mod connections;
pub mod grpc;
mod grpc_gzip;
pub mod gzip;
pub mod http;
pub mod transcode;
pub mod wire;

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use sts_proto::daemon::v1::ClientInfo;

use crate::decode::Limits as DecodeLimits;
use crate::peer::PeerProcess;
use crate::server::Shared;

/// The largest OTLP request body, encoded (gRPC's customary default), and the most a gzip'd
/// one may inflate to. Smaller than the Datadog path's: an OTLP/JSON request is decoded
/// into structs before it is transcoded, and a span takes tens of times its encoded size
/// as structs.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// An OTLP request body that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
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

/// Decodes an OTLP/JSON body within the Datadog path's decode budget (checked before
/// decoding).
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, RequestError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(RequestError::JsonNotObject);
    }
    budget::check_json(body, DecodeLimits::DEFAULT.budget(body.len()))?;
    let request: JsonRequest = serde_json::from_slice(body)?;
    Ok(ExportTraceServiceRequest {
        resource_spans: request.resource_spans,
    })
}

/// An OTLP/HTTP body as the protobuf the transcoder reads: inflated first when `gzipped`
/// (to at most [`MAX_REQUEST_BYTES`]); JSON (`json`) decoded and encoded as protobuf,
/// protobuf as it came.
pub fn protobuf_body(
    body: &[u8],
    json: bool,
    gzipped: bool,
) -> Result<Cow<'_, [u8]>, RequestError> {
    let body = if gzipped {
        Cow::Owned(gzip::gunzip(body, MAX_REQUEST_BYTES)?)
    } else {
        Cow::Borrowed(body)
    };
    if json {
        Ok(Cow::Owned(decode_json(&body)?.encode_to_vec()))
    } else {
        Ok(body)
    }
}

/// Transcodes the protobuf `ExportTraceServiceRequest` `body`, buffers its valid spans for
/// the relay with what is known of the client, counts; the answer says which spans were
/// refused (the spec's partial success). A malformed request, or one whose spans would
/// take more than the budget transcoded, is refused whole.
pub fn accept(
    body: &[u8],
    endpoint: &str,
    peer: Option<&PeerProcess>,
    shared: &Shared,
) -> Result<ExportTraceServiceResponse, RequestError> {
    let transcoded = transcode::transcode(body)?;
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
        let sdk = transcoded.sdk;
        let mut client = ClientInfo {
            lang: sdk.language,
            tracer_version: sdk.version,
            container_id: sdk.container_id,
            endpoint: endpoint.to_string(),
            ..ClientInfo::default()
        };
        if let Some(peer) = peer {
            client.peer_pid = peer.pid;
            client.peer_start_ticks = peer.start_ticks;
            client.peer_cgroup = peer.cgroup.clone();
        }
        shared.relay.push_transcoded(transcoded.payload, &client);
    }
    Ok(ExportTraceServiceResponse { partial_success })
}
