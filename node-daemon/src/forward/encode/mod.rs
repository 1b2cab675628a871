//! How bodies are made: gzip, the intake's JSON, topology changes and the trace payload.
//! (The process agent's protobuf and envelope are in `pipelines/process_agent/`.)

pub mod diff;
pub mod gzip;
pub mod intake;
pub mod traces;

use bytes::Bytes;

/// The headers of a gzip body of `content_type` (every intake and traces body is one).
pub fn gzip_headers(content_type: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".to_string(), content_type.to_string()),
        ("Content-Encoding".to_string(), "gzip".to_string()),
    ]
}

/// A JSON message as a gzip body.
pub fn gzip_json(value: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_vec(value).expect("JSON to memory cannot fail");
    Bytes::from(gzip::gzip(&json))
}
