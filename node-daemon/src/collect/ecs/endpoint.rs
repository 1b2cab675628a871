//! The URLs asked, built from configured or discovered base URLs.

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::EcsError;

/// Port of the ECS agent introspection API.
pub const ECS_AGENT_PORT: u16 = 51678;

pub(super) const AGENT_METADATA: &[&str] = &["v1", "metadata"];
pub(super) const AGENT_TASKS: &[&str] = &["v1", "tasks"];
pub(super) const TASK: &[&str] = &["task"];
pub(super) const IMDS_TOKEN: &[&str] = &["latest", "api", "token"];
pub(super) const IMDS_IDENTITY: &[&str] = &["latest", "dynamic", "instance-identity", "document"];

/// `segments` appended to the path of `base`, whether or not it ends with `/`: unlike
/// `Url::join`, `http://169.254.170.2/v4/abc` + `task` is `.../v4/abc/task`, not
/// `.../v4/task`. Query and fragment of the base are dropped.
pub(super) fn join(base: &Url, segments: &[&str]) -> Result<Url, EcsError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| EcsError::InvalidUrl {
            url: base.to_string(),
            reason: "cannot be a base URL",
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `http://<ip>:<port>/`, with brackets for IPv6.
pub(super) fn base_url(ip: IpAddr, port: u16) -> Url {
    let text = format!("http://{}/", SocketAddr::new(ip, port));
    Url::parse(&text).unwrap_or_else(|e| unreachable!("{text} is a valid URL: {e}"))
}

pub(super) fn localhost_url(port: u16) -> Url {
    let text = format!("http://localhost:{port}/");
    Url::parse(&text).unwrap_or_else(|e| unreachable!("{text} is a valid URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn join_appends_whatever_the_trailing_slash() {
        let tmde = "http://169.254.170.2/v4/ea32a2b3-ae4a-4a1a-a0f2-2ef2a9f6a0a0";
        assert_eq!(
            join(&url(tmde), TASK).unwrap().as_str(),
            format!("{tmde}/task")
        );
        assert_eq!(
            join(&url(&format!("{tmde}/")), TASK).unwrap().as_str(),
            format!("{tmde}/task")
        );
        assert_eq!(
            join(&url("http://169.254.169.254"), IMDS_TOKEN)
                .unwrap()
                .as_str(),
            "http://169.254.169.254/latest/api/token"
        );
        assert_eq!(
            join(&url("http://10.0.0.1:51678/"), AGENT_METADATA)
                .unwrap()
                .as_str(),
            "http://10.0.0.1:51678/v1/metadata"
        );
        assert_eq!(
            join(&url("http://proxy:8080/ecs-agent?x=1#f"), AGENT_TASKS)
                .unwrap()
                .as_str(),
            "http://proxy:8080/ecs-agent/v1/tasks"
        );
        assert_eq!(
            join(&url("http://127.0.0.1:1/"), IMDS_IDENTITY)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/latest/dynamic/instance-identity/document"
        );
        assert!(join(&url("mailto:ops@example.com"), TASK).is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("172.17.0.2".parse().unwrap(), ECS_AGENT_PORT).as_str(),
            "http://172.17.0.2:51678/"
        );
        assert_eq!(
            base_url("fd00::2".parse().unwrap(), ECS_AGENT_PORT).as_str(),
            "http://[fd00::2]:51678/"
        );
        assert_eq!(localhost_url(51678).as_str(), "http://localhost:51678/");
    }
}
