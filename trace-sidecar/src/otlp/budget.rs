//! What an `ExportTraceServiceRequest` would take as structs, found before decoding it (by
//! walking its protobuf wire format, or counting its JSON objects): a message of two bytes
//! on the wire is a struct of hundreds of bytes decoded, so a hostile body could ask for
//! far more than its size.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Messages nested deeper are refused (prost's own limit).
const MAX_DEPTH: usize = 100;

#[derive(Clone, Copy)]
enum Message {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

const ALL: [Message; 13] = [
    Message::Request,
    Message::ResourceSpans,
    Message::Resource,
    Message::ScopeSpans,
    Message::Scope,
    Message::Span,
    Message::Event,
    Message::Link,
    Message::Status,
    Message::KeyValue,
    Message::AnyValue,
    Message::ArrayValue,
    Message::KeyValueList,
];

impl Message {
    /// The message a length-delimited `field` holds; None for strings and bytes.
    fn child(self, field: u64) -> Option<Message> {
        use Message as M;
        Some(match (self, field) {
            (M::Request, 1) => M::ResourceSpans,
            (M::ResourceSpans, 1) => M::Resource,
            (M::ResourceSpans, 2) => M::ScopeSpans,
            (M::Resource, 1) | (M::Scope, 3) | (M::Span, 9) | (M::Event, 3) | (M::Link, 4) => {
                M::KeyValue
            }
            (M::ScopeSpans, 1) => M::Scope,
            (M::ScopeSpans, 2) => M::Span,
            (M::Span, 11) => M::Event,
            (M::Span, 13) => M::Link,
            (M::Span, 15) => M::Status,
            (M::KeyValue, 2) | (M::ArrayValue, 1) => M::AnyValue,
            (M::AnyValue, 5) => M::ArrayValue,
            (M::AnyValue, 6) => M::KeyValueList,
            (M::KeyValueList, 1) => M::KeyValue,
            _ => return None,
        })
    }

    /// Its struct's size; doubled, as a `Vec` may hold twice what it was given.
    fn cost(self) -> usize {
        2 * match self {
            Message::Request => 0,
            Message::ResourceSpans => size_of::<ResourceSpans>(),
            Message::Resource => size_of::<Resource>(),
            Message::ScopeSpans => size_of::<ScopeSpans>(),
            Message::Scope => size_of::<InstrumentationScope>(),
            Message::Span => size_of::<Span>(),
            Message::Event => size_of::<Event>(),
            Message::Link => size_of::<Link>(),
            Message::Status => size_of::<Status>(),
            Message::KeyValue => size_of::<KeyValue>(),
            Message::AnyValue => size_of::<AnyValue>(),
            Message::ArrayValue => size_of::<ArrayValue>(),
            Message::KeyValueList => size_of::<KeyValueList>(),
        }
    }
}

/// Why the walk stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("messages nested more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("it would take more than {0} bytes decoded")]
    TooLarge(usize),
}

/// Checks that an OTLP/JSON `body` decodes into at most `budget` bytes: each JSON object
/// becomes at most one struct (counted as the largest, doubled), strings at most their
/// text's length.
pub fn check_json(body: &[u8], budget: usize) -> Result<(), BudgetError> {
    let largest = ALL.iter().map(|m| m.cost()).max().unwrap_or(0);
    let mut objects = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        match (in_string, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'{') => objects += 1,
            _ => {}
        }
    }
    let needed = objects.saturating_mul(largest).saturating_add(body.len());
    if needed > budget {
        return Err(BudgetError::TooLarge(budget));
    }
    Ok(())
}

/// Checks that a protobuf `body` decodes into at most `budget` bytes of structs and strings.
pub fn check(body: &[u8], budget: usize) -> Result<(), BudgetError> {
    let mut left = budget;
    walk(body, 0, Message::Request, 0, &mut left, budget)
}

fn walk(
    buf: &[u8],
    base: usize,
    message: Message,
    depth: usize,
    left: &mut usize,
    budget: usize,
) -> Result<(), BudgetError> {
    if depth > MAX_DEPTH {
        return Err(BudgetError::TooDeep);
    }
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let malformed = || BudgetError::Malformed(base + start);
        let key = varint(buf, &mut at).ok_or_else(malformed)?;
        let skip = match key & 7 {
            0 => varint(buf, &mut at).map(|_| 0).ok_or_else(malformed)?,
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(buf, &mut at).ok_or_else(malformed)?;
                usize::try_from(len).map_err(|_| malformed())?
            }
            _ => return Err(malformed()),
        };
        let end = at.checked_add(skip).filter(|e| *e <= buf.len());
        let end = end.ok_or_else(|| BudgetError::Malformed(base + at))?;
        if key & 7 == 2 {
            let child = message.child(key >> 3);
            let cost = child.map_or(end - at, Message::cost);
            *left = left
                .checked_sub(cost)
                .ok_or(BudgetError::TooLarge(budget))?;
            if let Some(child) = child {
                walk(&buf[at..end], base + at, child, depth + 1, left, budget)?;
            }
        }
        at = end;
    }
    Ok(())
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    #[test]
    fn empty_messages_cost_their_structs() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(); 1000],
        };
        let body = request.encode_to_vec();
        assert_eq!(body.len(), 2000);
        let cost = 1000 * Message::ResourceSpans.cost();
        assert_eq!(check(&body, cost), Ok(()));
        assert_eq!(check(&body, cost - 1), Err(BudgetError::TooLarge(cost - 1)));
    }

    #[test]
    fn json_objects_cost_the_largest_struct() {
        let largest = ALL.iter().map(|m| m.cost()).max().unwrap();
        let body = br#"{"a":"{{{{\"{{"}"#;
        assert_eq!(
            check_json(body, largest + body.len()),
            Ok(()),
            "braces in strings are text"
        );
        let two = br#"{"a":{}}"#;
        assert_eq!(check_json(two, 2 * largest + two.len()), Ok(()));
        assert!(check_json(two, 2 * largest + two.len() - 1).is_err());
    }

    #[test]
    fn malformed_and_nested_too_deep() {
        assert_eq!(
            check(b"\x0a\x05\x01", 1 << 20),
            Err(BudgetError::Malformed(2))
        );
        assert!(matches!(
            check(b"\x0b", 1 << 20),
            Err(BudgetError::Malformed(_))
        ));
        // An AnyValue holding an ArrayValue holding an AnyValue ... 200 deep.
        let mut value: Vec<u8> = Vec::new();
        for i in 0..200 {
            let tag = if i % 2 == 0 { 0x0a } else { 0x2a };
            let mut outer = vec![tag];
            prost::encoding::encode_varint(value.len() as u64, &mut outer);
            outer.extend_from_slice(&value);
            value = outer;
        }
        let mut kv = vec![0x12];
        prost::encoding::encode_varint(value.len() as u64, &mut kv);
        kv.extend(value);
        let mut left = usize::MAX;
        let walked = walk(&kv, 0, Message::KeyValue, 0, &mut left, usize::MAX);
        assert_eq!(walked, Err(BudgetError::TooDeep));
    }
}
