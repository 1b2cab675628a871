//! The sidecar's bounded span buffer: payloads waiting to be batched, and batches sent
//! but not yet acknowledged by the daemon (resent after a reconnect). When a new payload
//! would pass the byte cap, the oldest unsent payloads go first, then the oldest batches
//! in flight; every span dropped is counted.
//!
//! Payloads are kept protobuf-encoded (`TracePayload`), encoded once when they arrive: a
//! batch is those bytes put together (see [`OutgoingBatch`]), so batching, keeping a batch
//! for a resend and sending it never copy or re-encode spans, and the buffer holds the
//! compact encoding rather than decoded spans (about a quarter of the memory).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use prost::encoding::{self, WireType};
use prost::Message;
use sts_proto::daemon::v1::{ClientInfo, SpanBatch, TracePayload};

use crate::decode::Transcoded;

/// When a batch is cut from the pending payloads.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_spans: usize,
    pub max_bytes: usize,
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_spans: 5_000,
            // Large enough that 5,000 spans of the usual size make one batch: the daemon
            // queues (and syncs) and acknowledges per batch.
            max_bytes: 4 << 20,
            max_delay: Duration::from_secs(1),
        }
    }
}

/// A `SpanBatch` whose payloads are already encoded; it encodes to exactly what
/// `SpanBatch::encode` would write for the same fields (payloads in order), and cloning it
/// only counts references to the payload bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingBatch {
    pub sidecar_id: String,
    pub batch_id: u64,
    /// Each an encoded `TracePayload`.
    pub payloads: Vec<Bytes>,
    pub sidecar_addr: String,
    pub task_arn: String,
    pub dropped_spans: u64,
    pub token: crate::config::RelayToken,
}

// Field numbers of `SpanBatch` in relay.proto.
const SIDECAR_ID: u32 = 1;
const BATCH_ID: u32 = 2;
const PAYLOADS: u32 = 3;
const SIDECAR_ADDR: u32 = 4;
const TASK_ARN: u32 = 5;
const DROPPED_SPANS: u32 = 6;
const TOKEN: u32 = 7;

impl OutgoingBatch {
    /// Strings and ids as prost writes them: fields at their default value are left out.
    fn scalars(&self) -> [(u32, Scalar<'_>); 6] {
        [
            (SIDECAR_ID, Scalar::Str(&self.sidecar_id)),
            (BATCH_ID, Scalar::U64(self.batch_id)),
            (SIDECAR_ADDR, Scalar::Str(&self.sidecar_addr)),
            (TASK_ARN, Scalar::Str(&self.task_arn)),
            (DROPPED_SPANS, Scalar::U64(self.dropped_spans)),
            (TOKEN, Scalar::Str(self.token.expose())),
        ]
    }

    pub fn encoded_len(&self) -> usize {
        let scalars: usize = self
            .scalars()
            .into_iter()
            .map(|(tag, value)| value.encoded_len(tag))
            .sum();
        let payloads: usize = self
            .payloads
            .iter()
            .map(|p| length_delimited_len(PAYLOADS, p.len()))
            .sum();
        scalars + payloads
    }

    /// Writes the `SpanBatch` encoding, fields in field-number order as prost does.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let [id, batch_id, rest @ ..] = self.scalars();
        for (tag, value) in [id, batch_id] {
            value.encode(tag, buf);
        }
        for payload in &self.payloads {
            encoding::encode_key(PAYLOADS, WireType::LengthDelimited, buf);
            encoding::encode_varint(payload.len() as u64, buf);
            buf.put_slice(payload);
        }
        for (tag, value) in rest {
            value.encode(tag, buf);
        }
    }

    /// The batch decoded, as the daemon sees it.
    pub fn to_span_batch(&self) -> Result<SpanBatch, prost::DecodeError> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        SpanBatch::decode(buf.as_slice())
    }
}

#[derive(Clone, Copy)]
enum Scalar<'a> {
    Str(&'a str),
    U64(u64),
}

impl Scalar<'_> {
    fn encoded_len(self, tag: u32) -> usize {
        match self {
            Scalar::Str(s) if !s.is_empty() => length_delimited_len(tag, s.len()),
            Scalar::U64(v) if v != 0 => encoding::uint64::encoded_len(tag, &v),
            _ => 0,
        }
    }

    fn encode(self, tag: u32, buf: &mut impl BufMut) {
        match self {
            Scalar::Str(s) if !s.is_empty() => {
                encoding::encode_key(tag, WireType::LengthDelimited, buf);
                encoding::encode_varint(s.len() as u64, buf);
                buf.put_slice(s.as_bytes());
            }
            Scalar::U64(v) if v != 0 => encoding::uint64::encode(tag, &v, buf),
            _ => {}
        }
    }
}

fn length_delimited_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// A payload encoded for the buffer, with its span count; done before taking the lock.
#[derive(Debug)]
pub struct EncodedPayload {
    bytes: Bytes,
    spans: usize,
}

impl EncodedPayload {
    pub fn new(payload: &TracePayload) -> Self {
        Self {
            bytes: Bytes::from(payload.encode_to_vec()),
            spans: span_count(payload),
        }
    }

    /// A transcoded payload (its `traces` fields) with the `client` field appended: the
    /// same `TracePayload`, its fields in another order.
    pub fn transcoded(transcoded: Transcoded, client: &ClientInfo) -> Self {
        let mut bytes = transcoded.bytes;
        encoding::message::encode(CLIENT, client, &mut bytes);
        // The transcoder's buffer is sized for the worst case; keep only what is used.
        if bytes.capacity() - bytes.len() > bytes.len() / 16 {
            bytes.shrink_to_fit();
        }
        Self {
            bytes: Bytes::from(bytes),
            spans: transcoded.spans,
        }
    }
}

/// `TracePayload.client`.
const CLIENT: u32 = 1;

#[derive(Debug)]
struct Pending {
    payload: Bytes,
    spans: usize,
}

#[derive(Debug)]
pub struct Buffer {
    cap_bytes: usize,
    limits: BatchLimits,
    sidecar_id: String,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    pending_spans: usize,
    oldest_pending: Option<Instant>,
    /// Sent, not acknowledged; by batch id, with (bytes, spans).
    inflight: BTreeMap<u64, (OutgoingBatch, usize, usize)>,
    inflight_bytes: usize,
    next_batch_id: u64,
    dropped_spans: u64,
}

fn span_count(payload: &TracePayload) -> usize {
    payload.traces.iter().map(|t| t.spans.len()).sum()
}

impl Buffer {
    pub fn new(sidecar_id: &str, cap_bytes: usize, limits: BatchLimits) -> Self {
        Self {
            cap_bytes,
            limits,
            sidecar_id: sidecar_id.to_string(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            pending_spans: 0,
            oldest_pending: None,
            inflight: BTreeMap::new(),
            inflight_bytes: 0,
            next_batch_id: 1,
            dropped_spans: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.pending_bytes + self.inflight_bytes
    }

    pub fn spans(&self) -> usize {
        self.pending_spans + self.inflight.values().map(|(_, _, s)| s).sum::<usize>()
    }

    pub fn dropped_spans(&self) -> u64 {
        self.dropped_spans
    }

    /// Adds a payload; drops the oldest data while it would not fit.
    pub fn push(&mut self, payload: TracePayload) {
        self.push_encoded(EncodedPayload::new(&payload));
    }

    /// Adds an encoded payload; drops the oldest data while it would not fit.
    pub fn push_encoded(&mut self, encoded: EncodedPayload) {
        let EncodedPayload {
            bytes: payload,
            spans,
        } = encoded;
        let bytes = payload.len();
        if bytes > self.cap_bytes {
            self.dropped_spans += spans as u64;
            return;
        }
        while self.bytes() + bytes > self.cap_bytes {
            if let Some(old) = self.pending.pop_front() {
                self.pending_bytes -= old.payload.len();
                self.pending_spans -= old.spans;
                self.dropped_spans += old.spans as u64;
            } else if let Some((_, (_, b, s))) = self.inflight.pop_first() {
                self.inflight_bytes -= b;
                self.dropped_spans += s as u64;
            } else {
                break;
            }
        }
        self.oldest_pending.get_or_insert_with(Instant::now);
        self.pending_bytes += bytes;
        self.pending_spans += spans;
        self.pending.push_back(Pending { payload, spans });
    }

    /// How long until the pending payloads are due as a batch; zero when due now, None
    /// when nothing is pending.
    pub fn due_in(&self) -> Option<Duration> {
        let oldest = self.oldest_pending?;
        if self.pending_spans >= self.limits.max_spans
            || self.pending_bytes >= self.limits.max_bytes
        {
            return Some(Duration::ZERO);
        }
        Some(self.limits.max_delay.saturating_sub(oldest.elapsed()))
    }

    /// Cuts the next batch (if one is due), keeps it as in flight and returns a copy to send
    /// (which shares the payload bytes).
    pub fn next_batch(&mut self, force: bool) -> Option<OutgoingBatch> {
        if !force && self.due_in()? > Duration::ZERO {
            return None;
        }
        let mut payloads = Vec::new();
        let (mut bytes, mut spans) = (0, 0);
        while let Some(front) = self.pending.front() {
            if !payloads.is_empty()
                && (spans + front.spans > self.limits.max_spans
                    || bytes + front.payload.len() > self.limits.max_bytes)
            {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            bytes += p.payload.len();
            spans += p.spans;
            payloads.push(p.payload);
        }
        if payloads.is_empty() {
            return None;
        }
        self.pending_bytes -= bytes;
        self.pending_spans -= spans;
        self.oldest_pending = (!self.pending.is_empty()).then(Instant::now);
        let batch = OutgoingBatch {
            sidecar_id: self.sidecar_id.clone(),
            batch_id: self.next_batch_id,
            payloads,
            dropped_spans: self.dropped_spans,
            ..OutgoingBatch::default()
        };
        self.next_batch_id += 1;
        self.inflight_bytes += bytes;
        self.inflight
            .insert(batch.batch_id, (batch.clone(), bytes, spans));
        Some(batch)
    }

    /// Every batch in flight, oldest first, for a resend after reconnecting.
    pub fn inflight(&self) -> Vec<OutgoingBatch> {
        self.inflight.values().map(|(b, _, _)| b.clone()).collect()
    }

    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// The daemon took the batch: forget it. Returns its span count.
    pub fn acked(&mut self, batch_id: u64) -> usize {
        match self.inflight.remove(&batch_id) {
            Some((_, bytes, spans)) => {
                self.inflight_bytes -= bytes;
                spans
            }
            None => 0,
        }
    }

    /// The daemon refused the batch for good (e.g. a wrong token): drop and count it.
    pub fn refused(&mut self, batch_id: u64) {
        let spans = self.acked(batch_id);
        self.dropped_spans += spans as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sts_proto::daemon::v1::{Span, Trace};

    fn payload(spans: usize) -> TracePayload {
        TracePayload {
            client: None,
            traces: vec![Trace {
                common: None,
                spans: (0..spans)
                    .map(|i| Span {
                        span_id: i as u64 + 1,
                        name: "x".repeat(50),
                        ..Span::default()
                    })
                    .collect(),
            }],
        }
    }

    fn limits(max_spans: usize) -> BatchLimits {
        BatchLimits {
            max_spans,
            max_bytes: 1 << 20,
            max_delay: Duration::from_secs(60),
        }
    }

    #[test]
    fn batches_by_count_and_acks_free_memory() {
        let mut b = Buffer::new("s", 1 << 20, limits(10));
        b.push(payload(4));
        assert!(b.next_batch(false).is_none(), "not due yet");
        b.push(payload(6));
        let batch = b.next_batch(false).expect("due by count");
        assert_eq!(batch.batch_id, 1);
        assert_eq!(batch.payloads.len(), 2);
        assert_eq!(b.inflight().len(), 1);
        assert_eq!(b.acked(1), 10);
        assert_eq!(b.bytes(), 0);
        assert_eq!(b.acked(1), 0, "second ack of the same id is harmless");
    }

    #[test]
    fn full_buffer_drops_oldest_and_counts() {
        let one = payload(10).encoded_len();
        let mut b = Buffer::new("s", one * 3, limits(1000));
        for _ in 0..5 {
            b.push(payload(10));
        }
        assert!(b.bytes() <= one * 3);
        assert_eq!(b.dropped_spans(), 20);
        assert_eq!(b.spans(), 30);
        // A payload larger than the whole cap is dropped at once.
        b.push(payload(1000));
        assert_eq!(b.dropped_spans(), 1020);
    }

    #[test]
    fn inflight_is_dropped_last_and_forced_batches() {
        let one = payload(10).encoded_len();
        let mut b = Buffer::new("s", one * 2, limits(1000));
        b.push(payload(10));
        let sent = b.next_batch(true).unwrap();
        b.push(payload(10));
        // Full: the unsent payload goes before the batch already on its way.
        b.push(payload(10));
        assert_eq!(b.dropped_spans(), 10);
        assert_eq!(b.inflight()[0].batch_id, sent.batch_id);
        assert_eq!(b.spans(), 20);
        b.refused(99);
        assert_eq!(b.dropped_spans(), 10);
        b.refused(sent.batch_id);
        assert_eq!(b.dropped_spans(), 20);
    }

    #[test]
    fn transcoded_payloads_carry_their_client() {
        let want = payload(3);
        let mut body = vec![0x91];
        rmp::encode::write_array_len(&mut body, 3).unwrap();
        for span in &want.traces[0].spans {
            rmp::encode::write_map_len(&mut body, 2).unwrap();
            rmp::encode::write_str(&mut body, "span_id").unwrap();
            rmp::encode::write_uint(&mut body, span.span_id).unwrap();
            rmp::encode::write_str(&mut body, "name").unwrap();
            rmp::encode::write_str(&mut body, &span.name).unwrap();
        }
        let transcoded = crate::decode::transcode(crate::decode::Format::V04, &body).unwrap();
        let client = sts_proto::daemon::v1::ClientInfo {
            lang: "python".into(),
            peer_pid: 42,
            ..Default::default()
        };
        let encoded = EncodedPayload::transcoded(transcoded, &client);
        assert_eq!(encoded.spans, 3);
        let got = TracePayload::decode(encoded.bytes.clone()).unwrap();
        assert_eq!(got.client.as_ref(), Some(&client));
        assert_eq!(got.traces, want.traces);
        let mut b = Buffer::new("s", 1 << 20, limits(1000));
        b.push_encoded(encoded);
        let batch = b.next_batch(true).unwrap().to_span_batch().unwrap();
        assert_eq!(batch.payloads, vec![got]);
    }

    #[test]
    fn outgoing_batch_encodes_as_prost_does() {
        let mut with_client = payload(3);
        with_client.client = Some(sts_proto::daemon::v1::ClientInfo {
            lang: "python".into(),
            peer_pid: 42,
            endpoint: "/v0.4/traces".into(),
            ..Default::default()
        });
        let payloads = [with_client, payload(0), payload(200)];
        let mut b = Buffer::new("sidecar-1", 1 << 20, limits(1000));
        for p in &payloads {
            b.push(p.clone());
        }
        let mut batch = b.next_batch(true).unwrap();
        let cases = [
            ("", "", "", 0),
            (
                "10.0.0.5:8126",
                "arn:aws:ecs:eu-west-1:1:task/c/1",
                "t0ken",
                300,
            ),
        ];
        for (addr, arn, token, dropped) in cases {
            batch.sidecar_addr = addr.into();
            batch.task_arn = arn.into();
            batch.token = token.into();
            batch.dropped_spans = dropped;
            let want = SpanBatch {
                sidecar_id: "sidecar-1".into(),
                batch_id: 1,
                payloads: payloads.to_vec(),
                sidecar_addr: addr.into(),
                task_arn: arn.into(),
                dropped_spans: dropped,
                token: token.into(),
            };
            let mut got = Vec::new();
            batch.encode(&mut got);
            assert_eq!(got, want.encode_to_vec(), "same bytes as prost");
            assert_eq!(batch.encoded_len(), got.len());
            assert_eq!(batch.to_span_batch().unwrap(), want);
        }
    }
}
