//! Decode errors: what went wrong and where, worded for the text of an HTTP 400.

use std::fmt;

/// Why a payload could not be decoded, and where in it.
///
/// Displays as e.g. `trace 3 span 1: field `meta`: expected a map, got string (at byte 812)`.
/// Trace, span and entry numbers count from 0, in payload order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}{reason} (at byte {offset})")]
pub struct DecodeError {
    /// The part of the payload being decoded.
    pub location: Location,
    /// What was wrong with it.
    pub reason: Reason,
    /// Byte offset in the body where the problem was found.
    pub offset: usize,
}

/// Where in the payload an error was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// Index of the v0.5 string table entry.
    pub string: Option<u32>,
    /// Index of the trace in the payload.
    pub trace: Option<u32>,
    /// Index of the span in its trace.
    pub span: Option<u32>,
    /// Span field, e.g. `meta`.
    pub field: Option<&'static str>,
    /// Index of the entry in a `meta` or `metrics` map.
    pub entry: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::<String>::new();
        if let Some(i) = self.string {
            parts.push(format!("string table entry {i}"));
        }
        match (self.trace, self.span) {
            (Some(t), Some(s)) => parts.push(format!("trace {t} span {s}")),
            (Some(t), None) => parts.push(format!("trace {t}")),
            (None, Some(s)) => parts.push(format!("span {s}")),
            (None, None) => {}
        }
        match (self.field, self.entry) {
            (Some(field), Some(e)) => parts.push(format!("field `{field}` entry {e}")),
            (Some(field), None) => parts.push(format!("field `{field}`")),
            (None, _) => {}
        }
        if parts.is_empty() {
            parts.push("payload".to_owned());
        }
        write!(f, "{}: ", parts.join(": "))
    }
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reason {
    #[error("expected {expected}, got {got}")]
    Type {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the payload ends early ({needed} more bytes needed)")]
    Truncated { needed: usize },
    #[error("{what} of length {claimed} needs more than the {left} bytes left")]
    Length {
        what: &'static str,
        claimed: u64,
        left: usize,
    },
    #[error("{value} does not fit in {target}")]
    Range { value: i128, target: &'static str },
    #[error("string index {index} is outside the string table ({len} entries)")]
    StringIndex { index: i128, len: usize },
    #[error("expected {expected} elements, got {got}")]
    Arity { expected: u32, got: u32 },
    #[error("the reserved byte 0xc1 is not MessagePack")]
    Reserved,
    #[error("{0} bytes follow the end of the payload")]
    Trailing(usize),
    #[error("the decoded traces would take more than {limit} bytes of memory (the limit for this {body}-byte body)")]
    TooLarge { limit: usize, body: usize },
    #[error("{0}")]
    Json(String),
}

/// An error inside a span or the string table, before the trace and span are known.
#[derive(Debug)]
pub(crate) struct Fail {
    pub reason: Reason,
    pub offset: usize,
    pub field: Option<&'static str>,
    pub entry: Option<u32>,
}

/// An index as kept in errors (arrays and maps have at most 2^32-1 elements in msgpack).
pub(crate) fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Fail {
    #[cold]
    pub fn new(reason: Reason, offset: usize) -> Self {
        Fail {
            reason,
            offset,
            field: None,
            entry: None,
        }
    }

    /// Names the span field being decoded, unless a deeper one was named already.
    #[cold]
    pub fn field(mut self, field: &'static str) -> Self {
        self.field.get_or_insert(field);
        self
    }

    #[cold]
    pub fn entry(mut self, entry: usize) -> Self {
        self.entry.get_or_insert(index(entry));
        self
    }

    #[cold]
    pub fn at(self, mut location: Location) -> DecodeError {
        location.field = self.field;
        location.entry = self.entry;
        DecodeError {
            location,
            reason: self.reason,
            offset: self.offset,
        }
    }
}

impl Location {
    pub(crate) fn payload() -> Self {
        Location::default()
    }

    pub(crate) fn trace(trace: usize) -> Self {
        Location {
            trace: Some(index(trace)),
            ..Location::default()
        }
    }

    pub(crate) fn span(trace: usize, span: usize) -> Self {
        Location {
            trace: Some(index(trace)),
            span: Some(index(span)),
            ..Location::default()
        }
    }

    pub(crate) fn string(i: usize) -> Self {
        Location {
            string: Some(index(i)),
            ..Location::default()
        }
    }
}
