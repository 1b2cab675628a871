//! The daemon's own task from the task metadata endpoint v4
//! (`GET ${ECS_CONTAINER_METADATA_URI_V4}/task`), kept for `cache_ttl`, a failure as well.

use std::time::Instant;

use tracing::debug;
use url::Url;

use super::cache::{fresh, Cached};
use super::endpoint::{self, TASK};
use super::http::HttpClient;
use super::model::TaskMetadata;
use super::EcsOptions;

#[derive(Debug, Default)]
pub(super) struct OwnTask {
    task: Option<Cached<Result<TaskMetadata, String>>>,
}

impl OwnTask {
    /// None when no endpoint is configured (the variable is unset off ECS).
    pub(crate) async fn refresh(
        &mut self,
        client: &HttpClient,
        options: &EcsOptions,
        now: Instant,
    ) -> Option<Result<TaskMetadata, String>> {
        let base = options.task_metadata_url.as_ref()?;
        if let Some(known) = fresh(&self.task, now) {
            return Some(known.clone());
        }
        let result = fetch(client, base).await.map_err(|e| {
            debug!(error = %e, "task metadata endpoint unavailable");
            e.to_string()
        });
        self.task = Some(Cached::new(result.clone(), now, options.cache_ttl));
        Some(result)
    }
}

async fn fetch(client: &HttpClient, base: &Url) -> Result<TaskMetadata, super::EcsError> {
    client.get_json(&endpoint::join(base, TASK)?, &[]).await
}
