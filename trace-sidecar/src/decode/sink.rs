//! Where the msgpack decoders (v0.3/v0.4 and v0.5) put what they read: the payload is parsed
//! once, by format, and each [`Sink`] makes its own output of it, [`Structs`] the
//! `sts_proto` `Trace`s of [`decode`](super::decode), `ProtoSink` (in `proto.rs`) the relay's
//! protobuf bytes of [`transcode`](super::transcode). So both read every payload alike and
//! fail on it alike, except where each runs out of its memory budget.
//!
//! What a payload says more than once in a span takes the protobuf reading: a field given
//! twice keeps its last value, the entries of two `meta` (or `metrics`) maps are all kept (a
//! later key wins), and a nil `meta` or `metrics` adds nothing.

use std::collections::HashMap;

use sts_proto::daemon::v1::{Span, Trace};

use super::budget::Budget;
use super::error::Fail;

/// A string field of a span, by its field number in relay.proto's `Span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Text {
    Service = 1,
    Name = 2,
    Resource = 3,
    Type = 12,
}

/// An unsigned id field, by its field number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Id {
    Trace = 4,
    Span = 5,
    Parent = 6,
}

/// A signed 64-bit field, by its field number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Time {
    Start = 7,
    Duration = 8,
}

/// What a decoder reports, in payload order. `at` is the offset of what is being reported,
/// for errors. Text comes as the payload's bytes; sinks repair invalid UTF-8 (U+FFFD for
/// each bad sequence), as the Datadog agent does.
pub(crate) trait Sink {
    /// The budget of the decode, for what the decoder allocates itself (v0.5's table).
    fn budget(&mut self) -> &mut Budget;
    /// The payload's array of traces, `n` long (nil traces included).
    fn traces(&mut self, n: usize, at: usize) -> Result<(), Fail>;
    /// A trace of at most `n` spans begins.
    fn trace(&mut self, n: usize, at: usize) -> Result<(), Fail>;
    fn trace_end(&mut self, at: usize) -> Result<(), Fail>;
    fn span(&mut self, at: usize) -> Result<(), Fail>;
    fn span_end(&mut self, at: usize) -> Result<(), Fail>;
    fn text(&mut self, field: Text, text: &[u8], at: usize) -> Result<(), Fail>;
    fn id(&mut self, field: Id, value: u64, at: usize) -> Result<(), Fail>;
    fn time(&mut self, field: Time, value: i64, at: usize) -> Result<(), Fail>;
    fn error(&mut self, value: i32, at: usize) -> Result<(), Fail>;
    /// A `meta` map of `n` entries begins.
    fn meta(&mut self, n: usize, at: usize) -> Result<(), Fail>;
    /// A `meta` key was read; its value comes next (with the key again).
    fn meta_key(&mut self, key: &[u8], at: usize) -> Result<(), Fail>;
    fn meta_entry(&mut self, key: &[u8], value: &[u8], at: usize) -> Result<(), Fail>;
    /// A `metrics` map of `n` entries begins.
    fn metrics(&mut self, n: usize, at: usize) -> Result<(), Fail>;
    /// A `metrics` key was read; its value comes next, unless it was nil (then the entry
    /// is left out).
    fn metric_key(&mut self, key: &[u8], at: usize) -> Result<(), Fail>;
    fn metric_entry(&mut self, key: &[u8], value: f64, at: usize) -> Result<(), Fail>;
}

/// Builds `Trace`s, charging every allocation to the budget first.
pub(crate) struct Structs<'b> {
    budget: &'b mut Budget,
    pub traces: Vec<Trace>,
    spans: Vec<Span>,
    span: Span,
    /// The key of the map entry being read.
    key: String,
}

impl<'b> Structs<'b> {
    pub fn new(budget: &'b mut Budget) -> Self {
        Structs {
            budget,
            traces: Vec::new(),
            spans: Vec::new(),
            span: Span::default(),
            key: String::new(),
        }
    }
}

impl Sink for Structs<'_> {
    fn budget(&mut self) -> &mut Budget {
        self.budget
    }

    fn traces(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        self.budget.charge_vec::<Trace>(n, at)?;
        self.traces = Vec::with_capacity(n);
        Ok(())
    }

    fn trace(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        self.budget.charge_vec::<Span>(n, at)?;
        self.spans = Vec::with_capacity(n);
        Ok(())
    }

    fn trace_end(&mut self, _at: usize) -> Result<(), Fail> {
        let spans = std::mem::take(&mut self.spans);
        // Within the capacity charged with the payload's array.
        self.traces.push(Trace {
            common: None,
            spans,
        });
        Ok(())
    }

    fn span(&mut self, _at: usize) -> Result<(), Fail> {
        self.span = Span::default();
        Ok(())
    }

    fn span_end(&mut self, _at: usize) -> Result<(), Fail> {
        // Within the capacity charged with the trace's array.
        self.spans.push(std::mem::take(&mut self.span));
        Ok(())
    }

    #[inline]
    fn text(&mut self, field: Text, text: &[u8], at: usize) -> Result<(), Fail> {
        let text = self.budget.string(text, at)?;
        let span = &mut self.span;
        match field {
            Text::Service => span.service = text,
            Text::Name => span.name = text,
            Text::Resource => span.resource = text,
            Text::Type => span.r#type = text,
        }
        Ok(())
    }

    #[inline]
    fn id(&mut self, field: Id, value: u64, _at: usize) -> Result<(), Fail> {
        let span = &mut self.span;
        match field {
            Id::Trace => span.trace_id = value,
            Id::Span => span.span_id = value,
            Id::Parent => span.parent_id = value,
        }
        Ok(())
    }

    #[inline]
    fn time(&mut self, field: Time, value: i64, _at: usize) -> Result<(), Fail> {
        match field {
            Time::Start => self.span.start = value,
            Time::Duration => self.span.duration = value,
        }
        Ok(())
    }

    #[inline]
    fn error(&mut self, value: i32, _at: usize) -> Result<(), Fail> {
        self.span.error = value;
        Ok(())
    }

    fn meta(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        reserve(self.budget, &mut self.span.meta, n, at)
    }

    #[inline]
    fn meta_key(&mut self, key: &[u8], at: usize) -> Result<(), Fail> {
        self.key = self.budget.string(key, at)?;
        Ok(())
    }

    #[inline]
    fn meta_entry(&mut self, _key: &[u8], value: &[u8], at: usize) -> Result<(), Fail> {
        let value = self.budget.string(value, at)?;
        // Within the table reserved for the map's length.
        self.span.meta.insert(std::mem::take(&mut self.key), value);
        Ok(())
    }

    fn metrics(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        reserve(self.budget, &mut self.span.metrics, n, at)
    }

    #[inline]
    fn metric_key(&mut self, key: &[u8], at: usize) -> Result<(), Fail> {
        self.key = self.budget.string(key, at)?;
        Ok(())
    }

    #[inline]
    fn metric_entry(&mut self, _key: &[u8], value: f64, _at: usize) -> Result<(), Fail> {
        self.span
            .metrics
            .insert(std::mem::take(&mut self.key), value);
        Ok(())
    }
}

/// Makes room for `n` more entries in a span's map, charging the table: a new one, or the
/// grown one of a map given twice (the old table may live on while it is copied).
fn reserve<V>(
    budget: &mut Budget,
    map: &mut HashMap<String, V>,
    n: usize,
    at: usize,
) -> Result<(), Fail> {
    if map.is_empty() {
        budget.charge_map::<String, V>(n, at)?;
        *map = HashMap::with_capacity(n);
    } else {
        budget.charge_map::<String, V>(map.len().saturating_add(n), at)?;
        map.reserve(n);
    }
    Ok(())
}
