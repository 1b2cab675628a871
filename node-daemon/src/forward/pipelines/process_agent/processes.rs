//! Processes, containers and the host as the process agent's `CollectorProc` carries them.

use sts_proto::process_agent::v1 as pb;

use crate::clock::epoch_seconds;
use crate::model::{split_image, Container, Process, Snapshot};

/// The host as every message names it.
pub(crate) fn host(snapshot: &Snapshot) -> pb::Host {
    let h = &snapshot.host;
    pb::Host {
        name: h.hostname.clone(),
        num_cpus: h.cpu_count as i32,
        total_memory: h.memory_total_bytes as i64,
        ..pb::Host::default()
    }
}

/// The host's system information (`uuid` is the EC2 instance id when known).
pub(crate) fn system_info(snapshot: &Snapshot) -> pb::SystemInfo {
    let h = &snapshot.host;
    let instance = h.ecs.as_ref().and_then(|e| e.instance.as_ref());
    pb::SystemInfo {
        uuid: instance.map(|i| i.instance_id.clone()).unwrap_or_default(),
        os: Some(pb::OsInfo {
            name: "linux".into(),
            platform: h.os.clone(),
            family: "linux".into(),
            kernel_version: h.kernel.clone(),
            ..pb::OsInfo::default()
        }),
        total_memory: h.memory_total_bytes as i64,
        ..pb::SystemInfo::default()
    }
}

/// A small stable key of a process (pid and create time) or a container (its id).
pub(crate) fn key(parts: &[&[u8]]) -> u32 {
    // FNV-1a.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub(crate) fn process_key(pid: u32, create_time_ms: u64) -> u32 {
    key(&[&pid.to_le_bytes(), &create_time_ms.to_le_bytes()])
}

pub(crate) fn process(p: &Process) -> pb::Process {
    let container_id = p.container_id.clone().unwrap_or_default();
    pb::Process {
        key: process_key(p.pid, p.create_time_ms),
        pid: p.pid as i32,
        command: Some(pb::Command {
            args: p.cmdline.clone(),
            cwd: p.cwd.clone().unwrap_or_default(),
            ppid: p.ppid as i32,
            exe: p.exe.clone().unwrap_or_default(),
            on_disk: p.exe.is_some(),
            ..pb::Command::default()
        }),
        user: Some(pb::ProcessUser {
            name: p.user.clone(),
            uid: p.uid.map_or(0, |u| u as i32),
            euid: p.uid.map_or(0, |u| u as i32),
            ..pb::ProcessUser::default()
        }),
        memory: Some(pb::MemoryStat {
            rss: p.rss_bytes,
            vms: p.vms_bytes,
            ..pb::MemoryStat::default()
        }),
        cpu: Some(pb::CpuStat {
            total_pct: p.cpu_pct.unwrap_or(0.0) as f32,
            user_pct: p.cpu_user_pct.unwrap_or(0.0) as f32,
            system_pct: p.cpu_system_pct.unwrap_or(0.0) as f32,
            num_threads: p.threads as i32,
            user_time: p.cpu_user_seconds as i64,
            system_time: p.cpu_system_seconds as i64,
            ..pb::CpuStat::default()
        }),
        create_time: p.create_time_ms as i64,
        open_fd_count: p.open_fds.map_or(0, |n| n as i32),
        state: state(p.state) as i32,
        io_stat: Some(pb::IoStat {
            read_rate: p.read_ops_per_sec.unwrap_or(0.0) as f32,
            write_rate: p.write_ops_per_sec.unwrap_or(0.0) as f32,
            read_bytes_rate: p.read_bytes_per_sec.unwrap_or(0.0) as f32,
            write_bytes_rate: p.write_bytes_per_sec.unwrap_or(0.0) as f32,
        }),
        container_key: if container_id.is_empty() {
            0
        } else {
            key(&[container_id.as_bytes()])
        },
        container_id,
        ..pb::Process::default()
    }
}

/// What a `deleteProcess` command names: the process's identity only.
pub(crate) fn process_identity(pid: u32, create_time_ms: u64) -> pb::Process {
    pb::Process {
        key: process_key(pid, create_time_ms),
        pid: pid as i32,
        create_time: create_time_ms as i64,
        ..pb::Process::default()
    }
}

fn state(letter: char) -> pb::ProcessState {
    use pb::ProcessState as S;
    match letter {
        'R' => S::R,
        'S' => S::S,
        'D' => S::D,
        'T' | 't' => S::T,
        'W' => S::W,
        'X' | 'x' => S::X,
        'Z' => S::Z,
        _ => S::U,
    }
}

pub(crate) fn container(c: &Container, host: &pb::Host) -> pb::Container {
    let i = &c.info;
    let t = c.telemetry.clone().unwrap_or_default();
    let rate = |v: Option<f64>| v.unwrap_or(0.0) as f32;
    pb::Container {
        r#type: "docker".into(),
        id: i.id.clone(),
        key: key(&[i.id.as_bytes()]),
        memory_limit: t.memory_limit_bytes.unwrap_or(0),
        state: container_state(&i.state) as i32,
        health: pb::ContainerHealth::UnknownHealth as i32,
        created: epoch_seconds(&i.created).unwrap_or(0),
        started: i.started_at.as_deref().and_then(epoch_seconds).unwrap_or(0),
        rbps: rate(t.block_read_bytes_per_sec),
        wbps: rate(t.block_write_bytes_per_sec),
        net_rcvd_ps: rate(t.network_rx_packets_per_sec),
        net_sent_ps: rate(t.network_tx_packets_per_sec),
        net_rcvd_bps: rate(t.network_rx_bytes_per_sec),
        net_sent_bps: rate(t.network_tx_bytes_per_sec),
        user_pct: rate(t.cpu_user_pct),
        system_pct: rate(t.cpu_system_pct),
        total_pct: rate(t.cpu_pct),
        mem_rss: t.memory_rss_bytes.unwrap_or(0),
        mem_cache: t.memory_cache_bytes.unwrap_or(0),
        host: Some(host.clone()),
        tags: container_tags(c),
        ..pb::Container::default()
    }
}

/// What a `deleteContainer` command names.
pub(crate) fn container_identity(id: &str) -> pb::Container {
    pb::Container {
        r#type: "docker".into(),
        id: id.to_string(),
        key: key(&[id.as_bytes()]),
        ..pb::Container::default()
    }
}

fn container_state(state: &str) -> pb::ContainerState {
    use pb::ContainerState as S;
    match state {
        "created" => S::Created,
        "restarting" => S::Restarting,
        "running" => S::Running,
        "paused" => S::Paused,
        "exited" => S::Exited,
        "dead" => S::Dead,
        _ => S::Unknown,
    }
}

/// The container's tags with the names of the agent's Docker and ECS taggers.
pub(crate) fn container_tags(c: &Container) -> Vec<String> {
    let i = &c.info;
    let mut tags = vec![
        format!("container_id:{}", i.id),
        format!("container_name:{}", i.name),
        format!("docker_image:{}", i.image),
    ];
    let (name, tag) = split_image(&i.image);
    tags.push(format!("image_name:{name}"));
    tags.push(format!(
        "short_image:{}",
        name.rsplit('/').next().unwrap_or(name)
    ));
    if let Some(tag) = tag {
        tags.push(format!("image_tag:{tag}"));
    }
    if let Some(ecs) = &i.ecs {
        tags.push(format!("task_arn:{}", ecs.task_arn));
        let optional = [
            ("task_family", &ecs.family),
            ("task_version", &ecs.revision),
            ("ecs_container_name", &ecs.container_name),
            ("ecs_cluster_name", &ecs.cluster),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                let value = match name {
                    // The tagger names the cluster, not its ARN.
                    "ecs_cluster_name" => value.rsplit('/').next().unwrap_or(value),
                    _ => value,
                };
                tags.push(format!("{name}:{value}"));
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_states_by_letter() {
        assert_eq!(state('R'), pb::ProcessState::R);
        assert_eq!(state('Z'), pb::ProcessState::Z);
        assert_eq!(state('I'), pb::ProcessState::U);
    }
}
