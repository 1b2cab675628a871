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

impl TracePayload {
    /// Every span of every trace, then the transactions.
    pub fn all_spans(&self) -> impl Iterator<Item = &Span> {
        self.traces
            .iter()
            .flat_map(|t| t.spans.iter())
            .chain(self.transactions.iter())
    }
}
