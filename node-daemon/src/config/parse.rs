//! Parsers for single configuration values. Each returns the reason as a plain string;
//! the caller names the variable.

use regex::Regex;
use url::Url;

pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected one of true/false/1/0/yes/no".into()),
    }
}

/// An http(s) URL. Rejects a bare host (`stackstate.example.com/stsAgent`) and a
/// `host:port` that the URL grammar would read as a scheme.
pub fn http_url(raw: &str) -> Result<Url, String> {
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| match e {
        url::ParseError::RelativeUrlWithoutBase => {
            "has no scheme; write it as https://<host>/stsAgent".to_string()
        }
        other => other.to_string(),
    })?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
        "http" | "https" => Err("has no host".into()),
        other => Err(format!(
            "scheme `{other}` is not http or https (a missing scheme makes `host:port` read as one)"
        )),
    }
}

/// A count of processes: a non-negative integer.
pub fn count(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    if raw.starts_with('-') {
        return Err("must not be negative".into());
    }
    raw.parse()
        .map_err(|_| "expected a non-negative whole number".into())
}

/// A count of at least 1.
pub fn positive_count(raw: &str) -> Result<usize, String> {
    match count(raw)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A percentage threshold: a finite number, zero or more.
pub fn percent(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a number (a percentage)".to_string())?;
    if !value.is_finite() {
        return Err("must be a finite number".into());
    }
    if value < 0.0 {
        return Err("must not be negative".into());
    }
    Ok(value)
}

/// Seconds from a nanosecond to a day, fractions allowed. Less than a nanosecond would be
/// a zero `Duration`, which no interval may be.
pub fn seconds(raw: &str) -> Result<std::time::Duration, String> {
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    let duration = (value.is_finite() && value > 0.0 && value <= 86_400.0)
        .then(|| std::time::Duration::from_secs_f64(value))
        .filter(|d| !d.is_zero());
    duration.ok_or_else(|| "must be from 1e-9 (a nanosecond) to 86400 seconds".into())
}

/// Seconds from 0 (the filter off), or from a nanosecond to a day.
pub fn seconds_or_zero(raw: &str) -> Result<std::time::Duration, String> {
    match raw.trim().parse::<f64>() {
        Ok(0.0) => Ok(std::time::Duration::ZERO),
        _ => seconds(raw).map_err(|_| "must be 0 or from 1e-9 to 86400 seconds".to_string()),
    }
}

/// A list given either as a JSON array of strings or as comma-separated items.
/// Empty items are ignored, so a trailing comma is harmless.
pub fn list(raw: &str) -> Result<Vec<String>, String> {
    let trimmed = raw.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(trimmed)
            .map_err(|e| format!("looks like a JSON array but is not one of strings: {e}"));
    }
    Ok(trimmed
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect())
}

pub fn regexes(raw: &str) -> Result<Vec<Regex>, String> {
    list(raw)?
        .iter()
        .map(|pattern| {
            Regex::new(pattern)
                .map_err(|e| format!("pattern `{pattern}` is not a valid regex: {e}"))
        })
        .collect()
}

pub fn socket_addr(raw: &str) -> Result<std::net::SocketAddr, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected <ip>:<port>, e.g. 0.0.0.0:7182".into())
}

pub fn absolute_path(raw: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(raw.trim());
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("must be an absolute path".into())
    }
}

pub fn log_level(raw: &str) -> Result<String, String> {
    let level = raw.trim().to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn".to_string(),
        "critical" => "error".to_string(),
        _ => level,
    };
    // tracing-subscriber's parser can panic inside a multi-byte character; no level,
    // target or field name needs one.
    if !level.is_ascii() {
        return Err("not a log level or filter: only ASCII is taken".into());
    }
    tracing_subscriber::EnvFilter::try_new(&level)
        .map(|_| level)
        .map_err(|e| format!("not a log level or filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_with_a_multibyte_character_is_refused_not_a_panic() {
        let e = log_level("\tq\t\u{fffd}\t=").unwrap_err();
        assert!(e.contains("ASCII"), "{e}");
        assert_eq!(log_level("Warning").as_deref(), Ok("warn"));
    }

    #[test]
    fn booleans_in_any_case() {
        for yes in ["true", "TRUE", "1", "Yes", " yes "] {
            assert_eq!(boolean(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "NO"] {
            assert_eq!(boolean(no), Ok(false), "{no}");
        }
        assert!(boolean("on").is_err());
        assert!(boolean("").is_err());
    }

    #[test]
    fn urls_need_a_scheme() {
        assert!(http_url("https://sts.example.com/stsAgent").is_ok());
        assert!(http_url("http://10.0.0.1:7077/stsAgent").is_ok());
        let bare = http_url("sts.example.com/stsAgent").unwrap_err();
        assert!(bare.contains("no scheme"), "{bare}");
        let host_port = http_url("localhost:7077/stsAgent").unwrap_err();
        assert!(host_port.contains("not http or https"), "{host_port}");
        assert!(http_url("ftp://x/y").is_err());
    }

    #[test]
    fn counts_and_thresholds_refuse_negatives() {
        assert_eq!(count("3"), Ok(3));
        assert!(count("-1").unwrap_err().contains("negative"));
        assert!(count("2.5").is_err());
        assert_eq!(percent("12.5"), Ok(12.5));
        assert!(percent("-0.1").unwrap_err().contains("negative"));
        assert!(percent("NaN").is_err());
        assert!(percent("ten").is_err());
    }

    #[test]
    fn lists_as_json_or_commas() {
        assert_eq!(list("a, b,,c,").unwrap(), ["a", "b", "c"]);
        assert_eq!(list(r#"["^a,b", "c"]"#).unwrap(), ["^a,b", "c"]);
        assert!(list("[1, 2]").is_err());
        assert!(list("").unwrap().is_empty());
    }

    #[test]
    fn regexes_report_the_bad_pattern() {
        let err = regexes("^ok,^bad(").unwrap_err();
        assert!(err.contains("`^bad(`"), "{err}");
    }

    #[test]
    fn intervals_and_levels() {
        assert_eq!(seconds("2.5"), Ok(std::time::Duration::from_millis(2500)));
        assert!(seconds("0").is_err());
        assert!(seconds("-3").is_err());
        // Less than a nanosecond is a zero Duration, on which the daemon's timers panic.
        assert_eq!(seconds("1e-9"), Ok(std::time::Duration::from_nanos(1)));
        assert!(seconds("1e-10").unwrap_err().contains("nanosecond"));
        assert!(seconds_or_zero("4e-10").is_err());
        assert_eq!(seconds_or_zero("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(log_level("INFO").unwrap(), "info");
        assert_eq!(log_level("Warning").unwrap(), "warn");
        assert!(log_level("loud[").is_err());
    }
}
