//! `GET <STS_PROCESS_AGENT_URL>/features`: what the receiver takes beyond full messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::forward::client::{authorize, endpoint, Auth, Credentials, ReceiverClient};
use crate::shutdown::Shutdown;

pub(crate) const FEATURES_PATH: &str = "/features";
/// How often the receiver is asked again.
pub(crate) const REFRESH: Duration = Duration::from_secs(300);
const MAX_ANSWER: usize = 64 << 10;

/// The features the daemon uses, shared with the pipeline.
#[derive(Debug, Default, Clone)]
pub struct Features {
    incremental_topology: Arc<AtomicBool>,
}

impl Features {
    pub(crate) fn incremental_topology(&self) -> bool {
        self.incremental_topology.load(Ordering::Relaxed)
    }

    pub(super) fn set(&self, answer: &[u8]) -> bool {
        let on = parse_incremental(answer);
        self.incremental_topology.store(on, Ordering::Relaxed);
        on
    }

    /// Asks at start and every [`REFRESH`] until `shutdown`. An error or a 404 means
    /// none.
    pub(crate) async fn follow(
        self,
        client: ReceiverClient,
        base: Url,
        credentials: Credentials,
        mut shutdown: Shutdown,
    ) {
        let mut url = endpoint(&base, FEATURES_PATH);
        let mut headers = Vec::new();
        authorize(&mut url, &mut headers, &credentials, Auth::StsHeader);
        let mut last: Option<bool> = None;
        loop {
            let on = match client.get(&url, &headers, MAX_ANSWER).await {
                Ok(body) => self.set(&body),
                Err(e) => {
                    if last.is_none() {
                        tracing::info!("process agent features: none ({e})");
                    }
                    self.set(b"")
                }
            };
            if last != Some(on) {
                tracing::info!(incremental_topology = on, "process agent features");
                last = Some(on);
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// `{"incremental-topology": true, ...}`; anything else is no feature.
fn parse_incremental(answer: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("incremental-topology")?.as_bool())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_incremental_topology_turns_it_on() {
        assert!(parse_incremental(
            br#"{"incremental-topology":true,"health-states":true}"#
        ));
        assert!(!parse_incremental(br#"{"incremental-topology":false}"#));
        assert!(!parse_incremental(br#"{"incremental-topology":"yes"}"#));
        assert!(!parse_incremental(b"<html>404</html>"));
        assert!(!parse_incremental(b""));
    }
}
