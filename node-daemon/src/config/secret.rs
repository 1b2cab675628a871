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
