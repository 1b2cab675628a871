//! The OTLP export's settings (`STS_OTLP_*`): where to, over which protocol, with which
//! headers (a bearer token, say: a secret, never shown) and how its TLS is checked.

use url::Url;

use super::{parse, secret, ApiKey, ConfigError, Getter};

/// OTLP export; off (None in `Config`) without `STS_OTLP_ENDPOINT`.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// gRPC: the server's base (`http://collector:4317`); HTTP: the base the signal paths
    /// (`/v1/traces`, `/v1/metrics`) are appended to, as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Url,
    pub protocol: OtlpProtocol,
    /// Sent with every export; the values are secrets.
    pub headers: Vec<(String, ApiKey)>,
    pub skip_ssl_validation: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            _ => Err("expected `grpc` or `http/protobuf`".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

pub(super) fn load(get: &Getter) -> Result<Option<OtlpConfig>, ConfigError> {
    // Every key is read (and checked) even when the export is off.
    let headers = secret::from_value_or_file(get.raw, "STS_OTLP_HEADERS", "STS_OTLP_HEADERS_FILE")?;
    let protocol = get.value("STS_OTLP_PROTOCOL", OtlpProtocol::parse)?;
    let skip_ssl_validation = get.value("STS_OTLP_SKIP_SSL_VALIDATION", parse::boolean)?;
    let Some(endpoint) = get.opt("STS_OTLP_ENDPOINT", parse::http_url)? else {
        if headers.is_some() {
            return Err(ConfigError::Conflict(
                "STS_OTLP_HEADERS is set but STS_OTLP_ENDPOINT is not: set the endpoint to export over OTLP".into(),
            ));
        }
        return Ok(None);
    };
    let headers = match headers {
        Some(text) => parse_headers(text.expose()).map_err(|reason| ConfigError::Secret {
            var: "STS_OTLP_HEADERS",
            reason,
        })?,
        None => Vec::new(),
    };
    Ok(Some(OtlpConfig {
        endpoint,
        protocol,
        headers,
        skip_ssl_validation,
    }))
}

/// `name=value` pairs separated by commas, values percent-decoded (the format of
/// `OTEL_EXPORTER_OTLP_HEADERS`). Errors name the header, never a value.
pub fn parse_headers(text: &str) -> Result<Vec<(String, ApiKey)>, String> {
    let mut headers = Vec::new();
    for (n, pair) in text.split(',').enumerate() {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("entry {} has no `=`: write `name=value`", n + 1));
        };
        let name = name.trim().to_ascii_lowercase();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!("entry {}: `{name}` is not a header name", n + 1));
        }
        let (decoded, escapes_valid) = percent_decode(value.trim());
        let value = String::from_utf8(decoded)
            .ok()
            .filter(|v| escapes_valid && v.chars().all(|c| c == '\t' || !c.is_control()))
            .ok_or_else(|| {
                format!("header `{name}`: the value is not valid percent-encoded text")
            })?;
        headers.push((name, ApiKey::new(&value)));
    }
    Ok(headers)
}

/// `text` with its `%XX` escapes decoded, and whether every `%` began one (the others
/// are kept as they are): the headers' values and gRPC's `grpc-message`.
pub(crate) fn percent_decode(text: &str) -> (Vec<u8>, bool) {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut valid = true;
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high << 4 | low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                valid &= byte != b'%';
                out.push(byte);
                i += 1;
            }
        }
    }
    (out, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pairs_with_decoded_values() {
        let headers = parse_headers("Authorization=Bearer%20t0k3n, x-tenant = a=b ,").unwrap();
        let shown: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.expose()))
            .collect();
        assert_eq!(
            shown,
            [("authorization", "Bearer t0k3n"), ("x-tenant", "a=b")]
        );
    }

    #[test]
    fn bad_headers_are_refused_without_their_values() {
        for (text, says) in [
            ("authorization", "no `=`"),
            ("bad name=secret1", "not a header name"),
            ("authorization=secret1%zz", "not valid"),
            ("authorization=secret1%0a", "not valid"),
            ("authorization=secret1%+1", "not valid"),
        ] {
            let error = parse_headers(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
            assert!(!error.contains("secret1"), "{error}");
        }
    }
}
