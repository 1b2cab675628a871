//! What an OTLP/JSON `ExportTraceServiceRequest` would take as structs, found before
//! decoding it by counting its JSON objects: an object of two bytes is a struct of hundreds
//! of bytes decoded, so a hostile body could ask for far more than its size. (Protobuf
//! requests are not decoded into structs: the transcoder reads them where they lie.)

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// The largest struct a JSON object of a request can become, doubled, as a `Vec` may hold
/// twice what it was given.
fn largest_struct() -> usize {
    let sizes = [
        size_of::<ResourceSpans>(),
        size_of::<Resource>(),
        size_of::<ScopeSpans>(),
        size_of::<InstrumentationScope>(),
        size_of::<Span>(),
        size_of::<Event>(),
        size_of::<Link>(),
        size_of::<Status>(),
        size_of::<KeyValue>(),
        size_of::<AnyValue>(),
        size_of::<ArrayValue>(),
        size_of::<KeyValueList>(),
    ];
    2 * sizes.into_iter().max().unwrap_or(0)
}

/// Why the request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error("it would take more than {0} bytes decoded")]
    TooLarge(usize),
}

/// Checks that an OTLP/JSON `body` decodes into at most `budget` bytes: each JSON object
/// becomes at most one struct (counted as the largest, doubled), strings at most their
/// text's length.
pub fn check_json(body: &[u8], budget: usize) -> Result<(), BudgetError> {
    let largest = largest_struct();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_cost_the_largest_struct() {
        let largest = largest_struct();
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
}
