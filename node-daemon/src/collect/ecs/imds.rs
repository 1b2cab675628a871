//! EC2 instance identity from IMDSv2.
//!
//! `PUT {imds}/latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 21600`, then
//! `GET {imds}/latest/dynamic/instance-identity/document` with `X-aws-ec2-metadata-token`.
//! The token is reused until a minute before it expires, and dropped when IMDS answers 401.
//!
//! IMDSv1 fallback (a GET without token) only when the token PUT is answered 404 or 405:
//! an IMDS, emulator or proxy that does not know tokens. Not on 403 (IMDS is disabled for
//! the instance, and v1 is refused as well), and not when IMDS did not answer at all (off
//! EC2 that would only cost a second timeout).
//!
//! The document is kept for `static_ttl`; a failure for `cache_ttl`.

use std::time::{Duration, Instant};

use tracing::debug;
use url::Url;

use super::cache::{fresh, Cached};
use super::endpoint::{self, IMDS_IDENTITY, IMDS_TOKEN};
use super::http::HttpClient;
use super::model::InstanceIdentity;
use super::{EcsError, EcsOptions};

const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
const TOKEN_TTL_SECONDS: u64 = 21_600;
/// Asked for a new token this long before the old one expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct Imds {
    token: Option<Cached<String>>,
    identity: Option<Cached<Result<InstanceIdentity, String>>>,
}

impl Imds {
    pub(crate) async fn refresh(
        &mut self,
        client: &HttpClient,
        options: &EcsOptions,
        now: Instant,
    ) -> Result<InstanceIdentity, String> {
        if let Some(known) = fresh(&self.identity, now) {
            return known.clone();
        }
        let result = self
            .fetch(client, &options.imds_url, now)
            .await
            .map_err(|e| {
                debug!(error = %e, "no EC2 instance identity");
                e.to_string()
            });
        let ttl = match result {
            Ok(_) => options.static_ttl,
            Err(_) => options.cache_ttl,
        };
        self.identity = Some(Cached::new(result.clone(), now, ttl));
        result
    }

    async fn fetch(
        &mut self,
        client: &HttpClient,
        base: &Url,
        now: Instant,
    ) -> Result<InstanceIdentity, EcsError> {
        let url = endpoint::join(base, IMDS_IDENTITY)?;
        let reused = fresh(&self.token, now).is_some();
        let token = self.token(client, base, now).await?;
        match get_identity(client, &url, token.as_deref()).await {
            Err(e) if e.status() == Some(401) => {
                self.token = None;
                if !reused {
                    return Err(e);
                }
                // The cached token was refused (IMDS restarted, clock jump): one new try.
                let token = self.token(client, base, now).await?;
                get_identity(client, &url, token.as_deref()).await
            }
            result => result,
        }
    }

    /// A valid token, or None when IMDS does not know tokens (IMDSv1 only).
    async fn token(
        &mut self,
        client: &HttpClient,
        base: &Url,
        now: Instant,
    ) -> Result<Option<String>, EcsError> {
        if let Some(token) = fresh(&self.token, now) {
            return Ok(Some(token.clone()));
        }
        let url = endpoint::join(base, IMDS_TOKEN)?;
        let ttl = TOKEN_TTL_SECONDS.to_string();
        match client.put(&url, &[(TOKEN_TTL_HEADER, &ttl)]).await {
            Ok(body) => {
                let token = parse_token(&body).ok_or(EcsError::Token { url })?;
                let lifetime = Duration::from_secs(TOKEN_TTL_SECONDS) - TOKEN_MARGIN;
                self.token = Some(Cached::new(token.clone(), now, lifetime));
                Ok(Some(token))
            }
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                debug!(error = %e, "IMDS does not issue tokens; asking without one (IMDSv1)");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

async fn get_identity(
    client: &HttpClient,
    url: &Url,
    token: Option<&str>,
) -> Result<InstanceIdentity, EcsError> {
    match token {
        Some(token) => client.get_json(url, &[(TOKEN_HEADER, token)]).await,
        None => client.get_json(url, &[]).await,
    }
}

/// The token text: trimmed, non-empty, visible ASCII only (it goes into a header).
fn parse_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let usable = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
    usable.then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text() {
        assert_eq!(
            parse_token(b"AQAEAHl0aW1lb3V0X3Rva2Vu==\n").as_deref(),
            Some("AQAEAHl0aW1lb3V0X3Rva2Vu==")
        );
        assert_eq!(parse_token(b""), None);
        assert_eq!(parse_token(b"  \n"), None);
        assert_eq!(parse_token(b"two words"), None);
        assert_eq!(parse_token(b"\xff\xfe"), None);
    }
}
