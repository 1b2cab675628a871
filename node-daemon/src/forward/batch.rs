//! A batch ready to send: where to, with which headers, and its encoded body. Batches
//! are stored on disk as one record: a length-prefixed JSON header, then the body.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Unique: `<host>/<pipeline>/<start ms>/<sequence>`; sent as `X-Sts-Batch-Id`.
    pub id: String,
    /// Appended to the pipeline's base URL, e.g. `/intake`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Spans in the batch (traces pipeline), for status.
    pub spans: u64,
    #[serde(skip)]
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
#[error("stored batch is malformed: {0}")]
pub struct MalformedBatch(String);

impl Batch {
    pub fn to_record(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).expect("batch header serializes");
        let mut record = Vec::with_capacity(4 + header.len() + self.body.len());
        record.extend_from_slice(&(header.len() as u32).to_le_bytes());
        record.extend_from_slice(&header);
        record.extend_from_slice(&self.body);
        record
    }

    pub fn from_record(record: &[u8]) -> Result<Self, MalformedBatch> {
        let len = record
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| MalformedBatch("shorter than its header length".into()))?;
        let header = record
            .get(4..4 + len)
            .ok_or_else(|| MalformedBatch("header runs past the record".into()))?;
        let mut batch: Batch =
            serde_json::from_slice(header).map_err(|e| MalformedBatch(e.to_string()))?;
        batch.body = Bytes::copy_from_slice(&record[4 + len..]);
        Ok(batch)
    }

    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
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
            body: Bytes::from_static(b"\x1f\x8b body"),
        };
        assert_eq!(Batch::from_record(&batch.to_record()).unwrap(), batch);
        assert!(Batch::from_record(b"\xff\xff\xff\x7f{}").is_err());
        assert!(Batch::from_record(b"\x02\x00").is_err());
        assert!(Batch::from_record(b"\x02\x00\x00\x00{x").is_err());
    }
}
