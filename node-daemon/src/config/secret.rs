//! Secrets that must never reach logs, status output or errors.

use std::fmt;

use url::Url;

/// The StackState API key. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: &str) -> Self {
        Self(value.to_string())
    }

    /// The key itself, for the one place that sends it to the receiver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redacted(&self) -> String {
        "<set, redacted>".into()
    }

    /// Whether `presented` is this secret, in time that depends only on the lengths.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.len() != presented.len() {
            return false;
        }
        let diff = expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// A secret given as `var` or as the contents of the file `file_var` names (ECS
/// `secrets` mounted as files, or a file written by an init container). Setting both is
/// an error; an empty value counts as unset; the file is read by `sts_proto::secret_file`
/// (trimmed, not empty). Errors name the variable and the path, never the contents.
pub fn from_value_or_file(
    raw: &super::RawValues,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<ApiKey>, super::ConfigError> {
    let value = raw.get(var).map(str::trim).filter(|v| !v.is_empty());
    let path = raw.get(file_var).map(str::trim).filter(|v| !v.is_empty());
    match (value, path) {
        (Some(_), Some(_)) => Err(super::ConfigError::Conflict(format!(
            "{var} and {file_var} are both set: give the secret one way"
        ))),
        (Some(v), None) => Ok(Some(ApiKey::new(v))),
        (None, Some(path)) => sts_proto::secret_file::read(std::path::Path::new(path))
            .map(|secret| Some(ApiKey::new(&secret)))
            .map_err(|e| super::ConfigError::SecretFile {
                var: file_var,
                path: path.to_string(),
                reason: e.to_string(),
            }),
        (None, None) => Ok(None),
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL as it may be shown: a password in the user part and the values of
/// key-like query parameters are replaced.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("redacted"));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = ["key", "token", "secret", "password"]
                    .iter()
                    .any(|w| lower.contains(w));
                (
                    k.into_owned(),
                    if secret {
                        "redacted".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_formats_its_value() {
        let key = ApiKey::new("abc123secret");
        assert!(!format!("{key:?}").contains("abc123"));
        assert!(!key.to_string().contains("abc123"));
        assert!(!key.redacted().contains("abc123"));
        assert_eq!(key.expose(), "abc123secret");
    }

    #[test]
    fn urls_lose_passwords_and_key_parameters() {
        let url = Url::parse("https://user:hunter2@sts.example/stsAgent?api_key=k1&x=1").unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("k1"), "{shown}");
        assert!(shown.contains("x=1"), "{shown}");
    }
}
