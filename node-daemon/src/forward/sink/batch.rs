//! A batch ready to send: where to, with which headers, and its encoded body. Batches
//! are stored on disk as one record: a length-prefixed JSON header, then the body.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::unix_ms_now;
use crate::forward::queue::{DiskQueue, QueueError};
use crate::traces::RelayBatch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Unique: `<host>/<pipeline>/<start ms>/<sequence>`; sent as `X-Sts-Batch-Id`.
    pub id: String,
    /// Appended to the pipeline's base URL, e.g. `/intake`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Spans in the batch (traces pipeline), for status.
    pub spans: u64,
    /// The sidecar batch whose spans end with this batch (traces pipeline): kept in the
    /// queue with it, so that a restarted daemon knows the sidecar batch was taken even
    /// if the acknowledgement never reached the sidecar (`traces/acks.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayBatch>,
    #[serde(skip)]
    pub body: Bytes,
}

/// Makes this daemon's batches, for every pipeline: ids unique to its host and start.
#[derive(Debug)]
pub(crate) struct Batcher {
    hostname: String,
    started_ms: i64,
    sequence: AtomicU64,
}

impl Batcher {
    pub(crate) fn new(hostname: &str) -> Self {
        Self {
            hostname: hostname.to_string(),
            started_ms: unix_ms_now(),
            sequence: AtomicU64::new(0),
        }
    }

    pub(crate) fn hostname(&self) -> &str {
        &self.hostname
    }

    /// A batch of `pipeline` with the next id, for `path` below the pipeline's base URL.
    pub(crate) fn batch(
        &self,
        pipeline: &str,
        path: &str,
        headers: Vec<(String, String)>,
        spans: u64,
        body: Bytes,
    ) -> Batch {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        Batch {
            id: format!("{}/{pipeline}/{}/{seq}", self.hostname, self.started_ms),
            path: path.to_string(),
            headers,
            spans,
            relay: None,
            body,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored batch is malformed: {0}")]
pub struct MalformedBatch(String);

impl Batch {
    /// The record's start: the header's length and the header. The body follows it, as
    /// it is (`DiskQueue::push_parts` writes the two without putting them together).
    pub fn record_head(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).expect("batch header serializes");
        let mut head = Vec::with_capacity(4 + header.len());
        head.extend_from_slice(&(header.len() as u32).to_le_bytes());
        head.extend_from_slice(&header);
        head
    }

    /// The request's headers: the batch's own and its id (`X-Sts-Batch-Id`).
    pub fn request_headers(&self) -> Vec<(&str, String)> {
        let mut headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        headers.push(("X-Sts-Batch-Id", self.id.clone()));
        headers
    }

    /// The batch of a record; its body is the record's tail, not a copy.
    pub fn from_record(record: Vec<u8>) -> Result<Self, MalformedBatch> {
        let (mut batch, body_at) = Self::header(&record)?;
        batch.body = Bytes::from(record).slice(body_at..);
        Ok(batch)
    }

    /// The batch without its body, from the start of a record (at least the header).
    pub(crate) fn header_from_prefix(prefix: &[u8]) -> Result<Self, MalformedBatch> {
        Self::header(prefix).map(|(batch, _)| batch)
    }

    /// The header, with an empty body, and where the body starts.
    fn header(record: &[u8]) -> Result<(Self, usize), MalformedBatch> {
        let len = record
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| MalformedBatch("shorter than its header length".into()))?;
        let header = record
            .get(4..4 + len)
            .ok_or_else(|| MalformedBatch("header runs past the record".into()))?;
        let batch = serde_json::from_slice(header).map_err(|e| MalformedBatch(e.to_string()))?;
        Ok((batch, 4 + len))
    }

    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }
}

/// Queues `batches` on `disk` in order, one record each, with one sync for all; each
/// batch's outcome.
pub fn push_batches(disk: &mut DiskQueue, batches: &[Batch]) -> Vec<Result<(), QueueError>> {
    let heads: Vec<Vec<u8>> = batches.iter().map(Batch::record_head).collect();
    let records: Vec<[&[u8]; 2]> = heads
        .iter()
        .zip(batches)
        .map(|(head, b)| [head.as_slice(), &b.body[..]])
        .collect();
    let parts: Vec<&[&[u8]]> = records.iter().map(|r| &r[..]).collect();
    disk.push_many(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_garbage() {
        let batch = Batch {
            id: "h/traces/1/2".into(),
            path: "/api/v0.2/traces".into(),
            headers: vec![("Content-Encoding".into(), "gzip".into())],
            spans: 7,
            relay: Some(RelayBatch {
                sidecar_id: "app-1".into(),
                batch_id: 12,
            }),
            body: Bytes::from_static(b"\x1f\x8b body"),
        };
        assert_eq!(
            batch.request_headers(),
            [
                ("Content-Encoding", "gzip".to_string()),
                ("X-Sts-Batch-Id", "h/traces/1/2".to_string())
            ]
        );
        let record = [&batch.record_head()[..], &batch.body].concat();
        assert_eq!(Batch::from_record(record.clone()).unwrap(), batch);
        let header_len = record.len() - batch.body.len();
        let head = Batch::header_from_prefix(&record[..header_len + 2]).unwrap();
        assert_eq!((head.relay, head.body.len()), (batch.relay.clone(), 0));
        assert!(Batch::header_from_prefix(&record[..header_len - 1]).is_err());
        // Records queued before the field existed.
        let old = br#"{"id":"h/t/1/2","path":"/intake","headers":[],"spans":0}"#;
        let mut record = (old.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(old);
        assert_eq!(Batch::from_record(record).unwrap().relay, None);
        assert!(Batch::from_record(b"\xff\xff\xff\x7f{}".to_vec()).is_err());
        assert!(Batch::from_record(b"\x02\x00".to_vec()).is_err());
        assert!(Batch::from_record(b"\x02\x00\x00\x00{x".to_vec()).is_err());
    }
}
