//! What can go wrong talking to the ECS agent, the task metadata endpoint or IMDS.
//! Every message starts with the URL that was asked.

use std::time::Duration;

use url::Url;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EcsError {
    #[error("{url}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("{url}: cannot connect: {source}")]
    Connect {
        url: Url,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no complete answer within {} ms", .after.as_millis())]
    Timeout { url: Url, after: Duration },
    #[error("{url}: {source}")]
    Http {
        url: Url,
        #[source]
        source: hyper::Error,
    },
    #[error("{url}: cannot build the request: {source}")]
    Request {
        url: Url,
        #[source]
        source: hyper::http::Error,
    },
    #[error("{url}: answered HTTP {status}")]
    Status { url: Url, status: u16 },
    #[error("{url}: body larger than {limit} bytes, refused")]
    TooLarge { url: Url, limit: usize },
    #[error("{url}: cannot read the body: {source}")]
    Body {
        url: Url,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url}: not the expected JSON: {source}")]
    Parse {
        url: Url,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: the token is empty or not printable text")]
    Token { url: Url },
}

impl EcsError {
    /// The HTTP status of a non-200 answer.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            EcsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Nobody answered at all (refused, timed out, connection closed): as opposed to an
    /// answer that was not the one expected.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            EcsError::Connect { .. } | EcsError::Timeout { .. } | EcsError::Http { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_url() {
        let url = Url::parse("http://127.0.0.1:51678/v1/metadata").unwrap();
        let timeout = EcsError::Timeout {
            url: url.clone(),
            after: Duration::from_secs(1),
        };
        assert_eq!(
            timeout.to_string(),
            "http://127.0.0.1:51678/v1/metadata: no complete answer within 1000 ms"
        );
        assert!(timeout.is_unreachable());
        let status = EcsError::Status { url, status: 404 };
        assert_eq!(
            status.to_string(),
            "http://127.0.0.1:51678/v1/metadata: answered HTTP 404"
        );
        assert_eq!(status.status(), Some(404));
        assert!(!status.is_unreachable());
    }
}
