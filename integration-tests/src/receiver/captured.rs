//! What the receiver records about one request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::Envelope;
use super::failure::FailureMode;
use super::proto::{Span, TracePayload};

/// Which receiver endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST .../stsAgent/intake` or `.../intake/`
    Intake,
    /// `POST .../stsAgent/api/v1/collector`
    Collector,
    /// `POST .../stsAgent/api/v1/connections`
    Connections,
    /// `GET .../stsAgent/features` (answered with what `Receiver::set_features` set, else
    /// 404 as a receiver without features does)
    Features,
    /// `POST .../stsAgent/api/v0.2/traces`
    Traces,
    /// Anything else (answered 404).
    Unknown,
}

impl Endpoint {
    pub const PREFIX: &'static str = "/stsAgent";

    pub fn classify(method: &str, path: &str) -> Self {
        let Some(rest) = path.strip_prefix(Self::PREFIX) else {
            return Self::Unknown;
        };
        match (method, rest) {
            ("POST", "/intake" | "/intake/") => Self::Intake,
            ("POST", "/api/v1/collector") => Self::Collector,
            ("POST", "/api/v1/connections") => Self::Connections,
            ("GET", "/features") => Self::Features,
            ("POST", "/api/v0.2/traces") => Self::Traces,
            _ => Self::Unknown,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(Value::String(name.to_owned())).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Collector => "collector",
            Self::Connections => "connections",
            Self::Features => "features",
            Self::Traces => "traces",
            Self::Unknown => "unknown",
        }
    }
}

/// A process agent message: its envelope, the body as received (after any
/// Content-Encoding), and the protobuf message bytes when the envelope's encoding could be
/// undone (protobuf or zstd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorMessage {
    pub envelope: Envelope,
    #[serde(with = "hex_bytes")]
    pub raw: Vec<u8>,
    #[serde(with = "hex_opt")]
    pub message: Option<Vec<u8>>,
    /// Why `message` is missing, if it is.
    pub message_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Decoded {
    IntakeJson(Value),
    Traces(TracePayload),
    /// A traces request kept as the (trace id, span id) of its spans only
    /// (`TraceDetail::IdsOnly`).
    TraceIds(Vec<(u64, u64)>),
    /// A message on `/api/v1/collector` or `/api/v1/connections`.
    Collector(CollectorMessage),
    /// A `GET /features` (no body).
    Features,
    /// Not one of the endpoints (or not decoded because it was not a POST).
    Unknown,
    /// A known endpoint whose body could not be decoded (answered 400 unless a failure
    /// was injected).
    Invalid {
        error: String,
    },
    /// The receiver closed the connection before the body was read in full.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    /// 1, 2, ... in arrival order over the receiver's life.
    pub seq: u64,
    pub endpoint: Endpoint,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// From the `api_key` query parameter, else the `sts-api-key`, `DD-API-KEY` or
    /// `X-Dd-APIKey` header.
    pub api_key: Option<String>,
    /// Body bytes as they arrived (before Content-Encoding was undone).
    pub body_raw_len: usize,
    pub decoded: Decoded,
    /// The failure the receiver injected for this request, if any.
    pub injected: Option<FailureMode>,
    /// The status answered; None when the receiver did not answer (hang, close, refuse).
    pub status: Option<u16>,
    pub tls: bool,
    /// Epoch milliseconds when the request head arrived.
    pub received_at_ms: u64,
}

impl Captured {
    /// The first header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Answered 2xx with no injected failure (a delay aside): the payload counts as
    /// delivered.
    pub fn accepted(&self) -> bool {
        matches!(self.injected, None | Some(FailureMode::SlowAccept { .. }))
            && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub fn traces(&self) -> Option<&TracePayload> {
        match &self.decoded {
            Decoded::Traces(t) => Some(t),
            _ => None,
        }
    }

    /// The spans of a fully kept traces request (none for `Decoded::TraceIds`).
    pub fn spans(&self) -> Vec<&Span> {
        self.traces()
            .map(|t| t.all_spans().collect())
            .unwrap_or_default()
    }

    /// (trace id, span id) of the spans of a traces request, however it was kept.
    pub fn span_ids(&self) -> Vec<(u64, u64)> {
        match &self.decoded {
            Decoded::Traces(t) => t.all_spans().map(|s| (s.trace_id, s.span_id)).collect(),
            Decoded::TraceIds(ids) => ids.clone(),
            _ => Vec::new(),
        }
    }

    /// How many spans a traces request carried, however it was kept.
    pub fn span_count(&self) -> usize {
        match &self.decoded {
            Decoded::Traces(t) => t.all_spans().count(),
            Decoded::TraceIds(ids) => ids.len(),
            _ => 0,
        }
    }

    pub fn intake_json(&self) -> Option<&Value> {
        match &self.decoded {
            Decoded::IntakeJson(v) => Some(v),
            _ => None,
        }
    }

    pub fn collector(&self) -> Option<&CollectorMessage> {
        match &self.decoded {
            Decoded::Collector(c) => Some(c),
            _ => None,
        }
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() % 2 != 0 {
        return Err("odd hex length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&super::to_hex(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::from_hex(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let cases = [
            ("POST", "/stsAgent/intake/", Endpoint::Intake),
            ("POST", "/stsAgent/intake", Endpoint::Intake),
            ("POST", "/stsAgent/api/v1/collector", Endpoint::Collector),
            (
                "POST",
                "/stsAgent/api/v1/connections",
                Endpoint::Connections,
            ),
            ("GET", "/stsAgent/features", Endpoint::Features),
            ("POST", "/stsAgent/api/v0.2/traces", Endpoint::Traces),
            ("GET", "/stsAgent/intake", Endpoint::Unknown),
            ("POST", "/intake", Endpoint::Unknown),
        ];
        for (method, path, endpoint) in cases {
            assert_eq!(
                Endpoint::classify(method, path),
                endpoint,
                "{method} {path}"
            );
        }
        assert_eq!(Endpoint::parse("traces"), Some(Endpoint::Traces));
        assert_eq!(Endpoint::parse("nope"), None);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001abff").unwrap(), bytes);
        assert!(from_hex("abc").is_err());
    }
}
