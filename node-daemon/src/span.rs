//! A correlated span as the daemon keeps and forwards it: the bytes the sidecar relayed and
//! the meta entries correlation added, never decoded on the way (see `traces/wire.rs`);
//! and the names of the meta entries and metrics that the relay reads and correlation
//! writes. The relay (`traces`) makes these spans, the forwarder (`forward`) sends them.

use bytes::{Buf, Bytes};
use prost::Message;
use sts_proto::daemon::v1::Span;

/// Meta entries correlation adds: what the StackState Java client marks spans with, the
/// interpreter's service naming, the container and ECS task. A client may set `span.pid`
/// and `span.serviceURN` itself; the relay reads both.
pub(crate) const META_HOSTNAME: &str = "span.hostname";
pub(crate) const META_PID: &str = "span.pid";
pub(crate) const META_STARTTIME: &str = "span.starttime";
pub(crate) const META_SERVICE_URN: &str = "span.serviceURN";
pub(crate) const META_SERVICE_NAME: &str = "span.serviceName";
pub(crate) const META_SERVICE_TYPE: &str = "span.serviceType";
pub(crate) const META_SERVICE_INSTANCE_URN: &str = "span.serviceInstanceURN";
pub(crate) const META_PROCESS_URN: &str = "span.processURN";
pub(crate) const META_CONTAINER_ID: &str = "container.id";
pub(crate) const META_TASK_ARN: &str = "ecs.task_arn";
pub(crate) const META_TASK_FAMILY: &str = "ecs.task_family";
pub(crate) const META_TASK_REVISION: &str = "ecs.task_revision";
pub(crate) const META_CONTAINER_NAME: &str = "ecs.container_name";
/// The metric Python and Node clients put on root spans: the client's pid.
pub(crate) const METRIC_PROCESS_ID: &str = "process_id";
/// Meta keys of the client that the relay reads for the interpreter's service naming.
pub(crate) const META_KIND: &str = "span.kind";
pub(crate) const META_LANGUAGE: &str = "language";
pub(crate) const META_DB_TYPE: &str = "db.type";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrelatedSpan {
    /// The fields its trace's spans share (relay.proto `Trace.common`; empty when none),
    /// written before `raw`, which wins over them.
    pub common: Bytes,
    /// The relay `Span` encoding, as the sidecar sent it.
    pub raw: Bytes,
    /// `meta` map entries (field 10) the daemon adds: written after `raw`, so they win
    /// over any entry of the same key the client set, as protobuf merges maps.
    pub extra: Bytes,
    pub trace_id: u64,
    /// Unix nanoseconds, and the duration.
    pub start: i64,
    pub duration: i64,
}

impl CorrelatedSpan {
    /// A span of the same bytes as `span`.
    #[cfg(test)]
    pub(crate) fn from_span(span: &Span) -> Self {
        CorrelatedSpan {
            common: Bytes::new(),
            raw: Bytes::from(span.encode_to_vec()),
            extra: Bytes::new(),
            trace_id: span.trace_id,
            start: span.start,
            duration: span.duration,
        }
    }

    /// The length of the span's encoding: the relayed bytes and the added entries.
    pub fn encoded_len(&self) -> usize {
        self.common.len() + self.raw.len() + self.extra.len()
    }

    /// The span's encoding into `buf` (the receiver's `Span` has the same field numbers).
    pub(crate) fn write_to(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.common);
        buf.extend_from_slice(&self.raw);
        buf.extend_from_slice(&self.extra);
    }

    /// The span, decoded (for `GetRecentSpans`).
    pub(crate) fn decode(&self) -> Result<Span, prost::DecodeError> {
        let parts = self.common.clone().chain(self.raw.clone());
        Span::decode(parts.chain(self.extra.clone()))
    }
}

/// Appends a `meta` map entry `{key: value}` (field 10), as prost writes one.
pub(crate) fn put_meta(buf: &mut Vec<u8>, key: &str, value: &str) {
    let part = |len: usize| {
        if len == 0 {
            0
        } else {
            1 + prost::encoding::encoded_len_varint(len as u64) + len
        }
    };
    let entry = part(key.len()) + part(value.len());
    buf.push(10 << 3 | 2);
    prost::encoding::encode_varint(entry as u64, buf);
    for (tag, text) in [(1u8 << 3 | 2, key), (2 << 3 | 2, value)] {
        if !text.is_empty() {
            buf.push(tag);
            prost::encoding::encode_varint(text.len() as u64, buf);
            buf.extend_from_slice(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn added_entries_win_and_decode_with_the_span() {
        let span = Span {
            service: "web".into(),
            trace_id: 5,
            start: 10,
            duration: 2,
            meta: HashMap::from([
                ("span.hostname".into(), "client-said".into()),
                ("env".into(), "prod".into()),
            ]),
            ..Span::default()
        };
        let mut correlated = CorrelatedSpan::from_span(&span);
        let mut extra = Vec::new();
        put_meta(&mut extra, "span.hostname", "h1");
        put_meta(&mut extra, "empty", "");
        correlated.extra = Bytes::from(extra);
        let decoded = correlated.decode().unwrap();
        assert_eq!(decoded.meta["span.hostname"], "h1");
        assert_eq!(decoded.meta["env"], "prod");
        assert_eq!(decoded.meta["empty"], "");
        let mut buf = Vec::new();
        correlated.write_to(&mut buf);
        assert_eq!(buf.len(), correlated.encoded_len());
        assert_eq!(Span::decode(buf.as_slice()).unwrap(), decoded);
    }
}
