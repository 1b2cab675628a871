//! What one collection cycle produces: the JSON shape of `snapshot --json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub host: Host,
    pub processes: Vec<Process>,
    pub containers: Vec<Container>,
    /// TCP and UDP connections of every process (network tracer).
    pub connections: Vec<Connection>,
    pub relations: Vec<Relation>,
    /// The destination NAT conntrack gave for client ends of this cycle.
    #[serde(skip)]
    pub translations: Vec<crate::collect::network::Translation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub hostname: String,
    pub urn: String,
    pub os: String,
    pub kernel: String,
    pub cpu_count: u32,
    pub memory_total_bytes: u64,
    pub boot_time_ms: u64,
    pub uptime_seconds: f64,
    pub telemetry: HostTelemetry,
    /// What ECS discovery found (agent introspection, task metadata, EC2 identity);
    /// null when container collection is off.
    pub ecs: Option<crate::collect::ecs::EcsInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostTelemetry {
    /// Percent of all CPUs over the last interval (since boot on the first sample).
    pub cpu: CpuPercent,
    pub load: LoadAverage,
    pub memory: Memory,
    pub network: Vec<InterfaceCounters>,
    pub disks: Vec<DiskCounters>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuPercent {
    pub user_pct: f64,
    pub system_pct: f64,
    pub iowait_pct: f64,
    pub idle_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadAverage {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    /// Total less available (what applications hold).
    pub used_bytes: u64,
    pub available_bytes: u64,
    /// `MemFree`: neither used nor cache.
    pub free_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
}

/// Cumulative counters, and rates over the last interval (null on the first sample).
#[derive(Debug, Clone, Default, Serialize)]
pub struct InterfaceCounters {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes_per_sec: Option<f64>,
    pub tx_bytes_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskCounters {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_bytes_per_sec: Option<f64>,
    pub write_bytes_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub create_time_ms: u64,
    pub urn: String,
    pub name: String,
    /// Null when the link cannot be read (zombies, permissions).
    pub exe: Option<String>,
    /// Arguments with secrets masked.
    pub cmdline: Vec<String>,
    pub user: String,
    /// Real user id; null when it cannot be read.
    pub uid: Option<u32>,
    /// Working directory; null when the link cannot be read.
    pub cwd: Option<String>,
    /// The state letter of /proc/<pid>/stat (`R`, `S`, `D`, `Z` ...).
    pub state: char,
    /// Percent of one CPU over the last interval (null on the first sample).
    pub cpu_pct: Option<f64>,
    /// The same in user and in kernel mode.
    pub cpu_user_pct: Option<f64>,
    pub cpu_system_pct: Option<f64>,
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    pub rss_bytes: u64,
    pub vms_bytes: u64,
    /// Null when /proc/<pid>/io cannot be read.
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    /// Over the last interval; null on the first sample.
    pub read_bytes_per_sec: Option<f64>,
    pub write_bytes_per_sec: Option<f64>,
    /// Read and write system calls per second over the last interval (`syscr`, `syscw`).
    pub read_ops_per_sec: Option<f64>,
    pub write_ops_per_sec: Option<f64>,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub container_id: Option<String>,
    /// The ECS task of the process's container, when ECS started it.
    pub ecs_task_arn: Option<String>,
    /// True when blacklisted but reported through an inclusion rule.
    pub readmitted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Relation {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: String,
    pub target: String,
    /// The traffic of a `connects-to` relation; absent on the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

/// The connections behind one `connects-to` relation, seen from its source (the client).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Traffic {
    pub connections: u64,
    /// Null when no connection of the pair had byte counters.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub bytes_sent_per_sec: Option<f64>,
    pub bytes_received_per_sec: Option<f64>,
}

/// One end of a TCP connection or one UDP socket, as its owning process sees it.
/// Identity: (`netns`, `protocol`, `local`, `remote`) and the owning `pid`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connection {
    pub pid: u32,
    pub process_create_time_ms: u64,
    /// The owning process's container.
    pub container_id: Option<String>,
    /// Inode number of the network namespace.
    pub netns: u64,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// 4 or 6; IPv4 through a dual-stack IPv6 socket counts as 4 (with IPv4 addresses).
    pub ip_version: u8,
    /// `ip:port` (`[ip]:port` for IPv6).
    pub local: SocketAddr,
    /// `0.0.0.0:0` / `[::]:0` for a UDP socket without a peer.
    pub remote: SocketAddr,
    /// `outgoing`, `incoming`, `local` (the remote address is on this host) or `none`
    /// (UDP without a peer).
    pub direction: &'static str,
    /// TCP: `client` (opened it) or `server` (its local port listens); null for UDP.
    pub side: Option<&'static str>,
    /// Kernel TCP state in lower case (`established`, `close_wait` ...); UDP `connected` or
    /// `unconnected`; `closed` for a connection gone since the last cycle (reported once).
    pub state: &'static str,
    /// Null when unknown: UDP, or TCP without sock_diag.
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    /// Over the last interval; null on a connection's first sample.
    pub bytes_sent_per_sec: Option<f64>,
    pub bytes_received_per_sec: Option<f64>,
    pub retransmits: Option<u64>,
    pub rtt_us: Option<u64>,
    /// Bytes queued in the socket right now.
    pub tx_queue: u32,
    pub rx_queue: u32,
    pub inode: u64,
    /// Null with the polling backend (it cannot see when a connection started).
    pub start_time_ms: Option<u64>,
    pub closed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Container {
    /// What Docker says about it.
    #[serde(flatten)]
    pub info: ContainerInfo,
    pub urn: String,
    /// Null when not running or when the cgroup cannot be read.
    pub telemetry: Option<ContainerTelemetry>,
}

/// What Docker says about a container (kept between cycles; telemetry is added per cycle).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerInfo {
    /// The full 64-hex Docker id.
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// Docker's state: created, running, paused, restarting, exited, dead.
    pub state: String,
    pub created: String,
    pub started_at: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Host pid of the main process; null when not running.
    pub pid: Option<u32>,
    pub network_mode: String,
    pub ip_addresses: Vec<String>,
    pub ports: Vec<PublishedPort>,
    pub restart_count: u64,
    /// From the labels the ECS agent sets; null for containers ECS did not start.
    pub ecs: Option<EcsContainer>,
    /// `ecs-pause` for the ECS pause containers, `ecs-agent` for the agent itself.
    pub role: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EcsContainer {
    pub task_arn: String,
    pub family: Option<String>,
    pub revision: Option<String>,
    pub container_name: Option<String>,
    pub cluster: Option<String>,
    /// From the ECS agent's /v1/tasks, when it answers.
    pub task_desired_status: Option<String>,
    pub task_known_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublishedPort {
    /// e.g. `8080/tcp`.
    pub container_port: String,
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ContainerTelemetry {
    /// Percent of one CPU over the last interval, in all, in user and in kernel mode;
    /// null on the first sample.
    pub cpu_pct: Option<f64>,
    pub cpu_user_pct: Option<f64>,
    pub cpu_system_pct: Option<f64>,
    pub cpu_usage_seconds: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    /// Null when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Null for containers on the host network (their counters are the host's).
    pub network_rx_bytes: Option<u64>,
    pub network_tx_bytes: Option<u64>,
    pub block_read_bytes: Option<u64>,
    pub block_write_bytes: Option<u64>,
    /// Anonymous memory and page cache.
    pub memory_rss_bytes: Option<u64>,
    pub memory_cache_bytes: Option<u64>,
    /// Rates over the last interval; null on the first sample.
    pub block_read_bytes_per_sec: Option<f64>,
    pub block_write_bytes_per_sec: Option<f64>,
    pub network_rx_bytes_per_sec: Option<f64>,
    pub network_tx_bytes_per_sec: Option<f64>,
    pub network_rx_packets_per_sec: Option<f64>,
    pub network_tx_packets_per_sec: Option<f64>,
}

/// `registry/name:tag` (or `name@sha256:...`) as name and tag.
pub(crate) fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, None),
    }
}

pub fn container_urn(hostname: &str, id: &str) -> String {
    format!("urn:container:/{hostname}:{id}")
}

pub fn host_urn(hostname: &str) -> String {
    format!("urn:host:/{hostname}")
}

pub fn process_urn(hostname: &str, pid: u32, create_time_ms: u64) -> String {
    format!("urn:process:/{hostname}:{pid}:{create_time_ms}")
}

/// Model values for unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A process created at 1 ms past the epoch, in `container` if given.
    pub fn process(pid: u32, container: Option<&str>) -> Process {
        Process {
            pid,
            ppid: 1,
            create_time_ms: 1,
            urn: process_urn("h", pid, 1),
            name: format!("p{pid}"),
            exe: None,
            cmdline: vec![],
            user: "root".into(),
            uid: Some(0),
            cwd: None,
            state: 'S',
            cpu_pct: None,
            cpu_user_pct: None,
            cpu_system_pct: None,
            cpu_user_seconds: 0.0,
            cpu_system_seconds: 0.0,
            rss_bytes: 0,
            vms_bytes: 0,
            read_bytes: None,
            write_bytes: None,
            read_bytes_per_sec: None,
            write_bytes_per_sec: None,
            read_ops_per_sec: None,
            write_ops_per_sec: None,
            threads: 1,
            open_fds: None,
            container_id: container.map(String::from),
            ecs_task_arn: None,
            readmitted: false,
        }
    }

    pub fn host(hostname: &str) -> Host {
        Host {
            hostname: hostname.into(),
            urn: format!("urn:host:/{hostname}"),
            os: "Debian".into(),
            kernel: "6.1".into(),
            cpu_count: 2,
            memory_total_bytes: 1 << 30,
            boot_time_ms: 0,
            uptime_seconds: 1.0,
            telemetry: HostTelemetry::default(),
            ecs: None,
        }
    }

    pub fn snapshot(processes: Vec<Process>) -> Snapshot {
        Snapshot {
            host: host("h"),
            processes,
            containers: Vec::new(),
            connections: Vec::new(),
            relations: Vec::new(),
            translations: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_and_tags() {
        assert_eq!(split_image("nginx:1.27"), ("nginx", Some("1.27")));
        assert_eq!(
            split_image("localhost:5000/team/app"),
            ("localhost:5000/team/app", None)
        );
        assert_eq!(
            split_image("registry.example:5000/x/app:v2@sha256:abc"),
            ("registry.example:5000/x/app", Some("v2"))
        );
    }
}
