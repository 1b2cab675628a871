//! The trace intake's protobuf messages, written by hand from the public field numbers
//! (`TracePayload`, `APITrace`, `Span` of the trace agent's v0.2 API).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct TracePayload {
    #[prost(string, tag = "1")]
    pub host_name: String,
    #[prost(string, tag = "2")]
    pub env: String,
    #[prost(message, repeated, tag = "3")]
    pub traces: Vec<ApiTrace>,
    #[prost(message, repeated, tag = "4")]
    pub transactions: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ApiTrace {
    #[prost(uint64, tag = "1")]
    pub trace_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(int64, tag = "6")]
    pub start_time: i64,
    #[prost(int64, tag = "7")]
    pub end_time: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Span {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub resource: String,
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    /// Start, nanoseconds since the epoch.
    #[prost(int64, tag = "7")]
    pub start: i64,
    /// Duration in nanoseconds.
    #[prost(int64, tag = "8")]
    pub duration: i64,
    #[prost(int32, tag = "9")]
    pub error: i32,
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    #[prost(string, tag = "12")]
    pub r#type: String,
}

/// A `TracePayload` read for its span ids only (prost skips the other fields): a small
/// part of the memory and time of the full decoding, for receivers that take millions of
/// spans.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracePayloadIds {
    #[prost(message, repeated, tag = "3")]
    pub traces: Vec<ApiTraceIds>,
    #[prost(message, repeated, tag = "4")]
    pub transactions: Vec<SpanIds>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiTraceIds {
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<SpanIds>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanIds {
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
}

impl TracePayloadIds {
    /// (trace id, span id) of every span of every trace, then of the transactions.
    pub fn ids(&self) -> Vec<(u64, u64)> {
        self.traces
            .iter()
            .flat_map(|t| t.spans.iter())
            .chain(self.transactions.iter())
            .map(|s| (s.trace_id, s.span_id))
            .collect()
    }
}

impl TracePayload {
    /// Every span of every trace, then the transactions.
    pub fn all_spans(&self) -> impl Iterator<Item = &Span> {
        self.traces
            .iter()
            .flat_map(|t| t.spans.iter())
            .chain(self.transactions.iter())
    }
}
