//! Container id of a process from the text of `/proc/<pid>/cgroup`.
//!
//! Formats seen on ECS and Docker hosts (samples in shared/reference/cgroups):
//! - cgroup v1 on ECS EC2: `N:ctrl:/ecs/<task-uuid>/<64-hex>`
//! - cgroup v1 plain Docker: `N:ctrl:/docker/<64-hex>`
//! - cgroup v2 with systemd: `0::/system.slice/docker-<64-hex>.scope`
//! - ECS Fargate: `N:ctrl:/ecs/<task>/<32-hex>-<digits>`
//! - inside a cgroup namespace, relative paths such as `0::/../../docker-<id>.scope`
//!
//! A final path segment is an id when it is 64 hex digits, or 32 hex digits, a dash and
//! digits (the Fargate form). Anything else, including a bare 32-hex name, is not.

const PREFIXES: &[&str] = &["docker-", "cri-containerd-", "crio-", "libpod-"];

pub(crate) fn container_id(cgroup_text: &str) -> Option<&str> {
    cgroup_text.lines().find_map(line_container_id)
}

fn line_container_id(line: &str) -> Option<&str> {
    let path = line.splitn(3, ':').nth(2)?;
    let last = path.trim_end().rsplit('/').next()?;
    let last = last.strip_suffix(".scope").unwrap_or(last);
    let id = PREFIXES
        .iter()
        .find_map(|p| last.strip_prefix(p))
        .unwrap_or(last);
    (is_docker_id(id) || is_fargate_id(id)).then_some(id)
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_docker_id(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

fn is_fargate_id(s: &str) -> bool {
    match s.split_once('-') {
        Some((hex, digits)) => {
            hex.len() == 32
                && is_hex(hex)
                && !digits.is_empty()
                && digits.len() <= 10
                && digits.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies of shared/reference/cgroups.
    const SAMPLES: &str = "testdata/cgroups";

    fn sample(name: &str) -> String {
        let path = format!("{}/{SAMPLES}/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn ecs_ec2_cgroup_v1() {
        let text = sample("ecs_ec2_cgroupv1_proc_pid_cgroup_uuid_taskid.txt");
        assert_eq!(
            container_id(&text),
            Some("432624d2150b349fe35ba397284dea788c2bf66b885d14dfc1569b01890ca7da")
        );
        for line in text.lines() {
            assert!(line_container_id(line).is_some(), "{line}");
        }
    }

    #[test]
    fn ecs_fargate_task_suffix() {
        let text = sample("ecs_fargate_pv14_cgroupv1_proc_pid_cgroup_taskid_suffix.txt");
        assert_eq!(
            container_id(&text),
            Some("8474ac4cec7a4f488834b00591271ec3-3054012820")
        );
    }

    #[test]
    fn cgroup_v2_systemd_scope() {
        let text = sample("cgroupv2_docker_systemd_scope_ddtracecpp.txt");
        assert_eq!(
            container_id(&text),
            Some("cde7c2bab394630a42d73dc610b9c57415dced996106665d427f6d0566594411")
        );
    }

    #[test]
    fn plain_docker_lines_one_by_one() {
        let text = sample("docker_plain_cgroup_lines_ddtracego_cases.txt");
        let got: Vec<Option<&str>> = text.lines().map(line_container_id).collect();
        assert_eq!(
            got,
            [
                Some("34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376"),
                Some("34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376"),
                Some("34dc0b5e626f2c5c4c5170e34b10e765-1234567890"),
                Some("432624d2150b349fe35ba397284dea788c2bf66b885d14dfc1569b01890ca7da"),
                // 32 hex digits alone are not a Docker id.
                None,
            ]
        );
    }

    #[test]
    fn relative_paths_and_host_processes() {
        let id = "cde7c2bab394630a42d73dc610b9c57415dced996106665d427f6d0566594411";
        assert_eq!(
            container_id(&format!("0::/../../docker-{id}.scope\n")),
            Some(id)
        );
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/user@0.service/init.scope\n"),
            None
        );
        assert_eq!(container_id("0::/\n"), None);
        assert_eq!(container_id(""), None);
        assert_eq!(container_id("garbage without colons"), None);
    }
}
