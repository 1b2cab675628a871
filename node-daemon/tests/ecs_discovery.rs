//! ECS discovery against a local HTTP/1.1 server that replays the recorded answers of
//! testdata/ecs-api and testdata/ec2-imds byte for byte, and can be told per path to
//! answer 404, garbage, an oversized body, to hang or to close the connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use node_daemon::collect::ecs::{EcsDiscovery, EcsInfo, EcsOptions, EcsTask, EcsTaskContainer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use url::Url;

const METADATA: &str = "/v1/metadata";
const TASKS: &str = "/v1/tasks";
const TOKEN: &str = "/latest/api/token";
const IDENTITY: &str = "/latest/dynamic/instance-identity/document";
const OWN_TASK: &str = "/v4/0a1b2c3d-daemon/task";
const IMDS_TOKEN: &str = "AQAEANBfcXVlc3Rpb24tdG9rZW4=";

fn recorded(path: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Debug, Clone)]
enum Reply {
    /// 200 with these bytes.
    Body(Vec<u8>),
    Status(u16),
    /// Accept, read the request, never answer.
    Hang,
    /// Read the request and close without a word.
    Close,
    /// 200 with 5 MiB, announced in Content-Length or streamed chunked.
    Oversized {
        announced: bool,
    },
    /// IMDSv2 token: PUT with the TTL header only.
    Token,
    /// IMDSv2-only document: 401 without the token header.
    NeedsToken(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// The server stops (and every connection it holds is closed) when dropped.
struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    async fn start() -> Self {
        Self::bind((Ipv4Addr::LOCALHOST, 0).into()).await.unwrap()
    }

    async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(serve(stream, state.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    fn route(&self, path: &str, reply: Reply) -> &Self {
        self.shared
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
        self
    }

    fn file(&self, path: &str, file: &str) -> &Self {
        self.route(path, Reply::Body(recorded(file)))
    }

    /// An ECS agent answering the recorded awsdocs introspection files.
    fn agent(&self) -> &Self {
        self.file(METADATA, "ecs-api/introspection/awsdocs_v1_metadata.json")
            .file(TASKS, "ecs-api/introspection/awsdocs_v1_tasks.json")
    }

    /// An IMDSv2-only metadata service with the recorded identity document.
    fn imds(&self) -> &Self {
        self.route(TOKEN, Reply::Token).route(
            IDENTITY,
            Reply::NeedsToken(recorded("ec2-imds/datadog_instance_identity_document.json")),
        )
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let seen = Seen {
        method,
        path,
        headers,
    };
    shared.seen.lock().unwrap().push(seen.clone());
    let reply = shared.routes.lock().unwrap().get(&seen.path).cloned();

    let (status, body) = match reply {
        None => (404, b"404 page not found\n".to_vec()),
        Some(Reply::Body(body)) => (200, body),
        Some(Reply::Status(code)) => (code, Vec::new()),
        Some(Reply::Hang) => {
            std::future::pending::<()>().await;
            return;
        }
        Some(Reply::Close) => return,
        Some(Reply::Oversized { announced }) => {
            oversized(stream, announced).await;
            return;
        }
        Some(Reply::Token) => {
            if seen.method != "PUT" {
                (405, Vec::new())
            } else if seen
                .header("X-aws-ec2-metadata-token-ttl-seconds")
                .is_none()
            {
                (400, Vec::new())
            } else {
                (200, IMDS_TOKEN.as_bytes().to_vec())
            }
        }
        Some(Reply::NeedsToken(body)) => {
            if seen.header("X-aws-ec2-metadata-token") == Some(IMDS_TOKEN) {
                (200, body)
            } else {
                (401, Vec::new())
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

async fn oversized(mut stream: TcpStream, announced: bool) {
    const SIZE: usize = 5 << 20;
    let piece = vec![b' '; 64 * 1024];
    let head = if announced {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n")
    } else {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..SIZE / piece.len() {
        let sent = if announced {
            stream.write_all(&piece).await
        } else {
            let size = format!("{:x}\r\n", piece.len());
            let mut out = size.into_bytes();
            out.extend_from_slice(&piece);
            out.extend_from_slice(b"\r\n");
            stream.write_all(&out).await
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn closed_url() -> Url {
    Url::parse(&format!("http://127.0.0.1:{}/", closed_port())).unwrap()
}

/// Options that only reach the given servers: the localhost candidate is a closed port and
/// there is no routing table, so no default gateway.
fn options(agent_url: Option<Url>, imds_url: Url) -> EcsOptions {
    EcsOptions {
        agent_url,
        agent_port: closed_port(),
        imds_url,
        task_metadata_url: None,
        timeout: Duration::from_millis(500),
        cache_ttl: Duration::from_secs(30),
        static_ttl: Duration::from_secs(600),
        route_table: PathBuf::from("/nonexistent/net/route"),
        ..EcsOptions::default()
    }
}

fn recorded_tasks() -> Vec<EcsTask> {
    vec![EcsTask {
        arn: "arn:aws:ecs:us-west-2:012345678910:task/default/example5-58ff-46c9-ae05-543f8example"
            .into(),
        family: "hello_world".into(),
        version: "8".into(),
        desired_status: "RUNNING".into(),
        known_status: "RUNNING".into(),
        containers: vec![
            EcsTaskContainer {
                docker_id: "9581a69a761a557fbfce1d0f6745e4af5b9dbfb86b6b2c5c4df156f1a5932ff1"
                    .into(),
                docker_name: "ecs-hello_world-8-mysql-fcae8ac8f9f1d89d8301".into(),
                name: "mysql".into(),
            },
            EcsTaskContainer {
                docker_id: "bf25c5c5b2d4dba68846c7236e75b6915e1e778d31611e3c6a06831e39814a15"
                    .into(),
                docker_name: "ecs-hello_world-8-wordpress-e8bfddf9b488dff36c00".into(),
                name: "wordpress".into(),
            },
        ],
    }]
}

fn assert_recorded_agent(info: &EcsInfo) {
    assert!(info.detected, "{info:?}");
    assert_eq!(info.cluster.as_deref(), Some("cluster_name"));
    assert_eq!(
        info.container_instance_arn.as_deref(),
        Some("arn:aws:ecs:region:aws_account_id:container-instance/cluster_name/container_instance_id")
    );
    assert_eq!(
        info.agent_version.as_deref(),
        Some("Amazon ECS Agent - v1.30.0 (02ff320c)")
    );
    assert_eq!(info.tasks, recorded_tasks());
}

#[tokio::test]
async fn configured_agent_url_gives_the_recorded_answers() {
    let server = FakeServer::start().await;
    server.agent().imds().file(
        OWN_TASK,
        "ecs-api/task-metadata-v4/datadog_v4_task_ec2_bridge_daemon_agent_with_ports_volumes.json",
    );
    let mut opts = options(Some(server.url()), server.url());
    opts.task_metadata_url = Some(server.url().join("v4/0a1b2c3d-daemon").unwrap());
    let mut ecs = EcsDiscovery::new(opts);

    let info = ecs.refresh(None).await;

    assert_recorded_agent(&info);
    assert_eq!(info.reason, None);
    assert_eq!(info.agent_url, Some(server.url().to_string()));
    let instance = info.instance.as_ref().expect("instance identity");
    assert_eq!(instance.instance_id, "i-aaaaaaaaaaaaaaaaa");
    assert_eq!(instance.region, "us-east-1");
    assert_eq!(instance.availability_zone.as_deref(), Some("us-east-1a"));
    assert_eq!(instance.instance_type.as_deref(), Some("m4.2xlarge"));
    let own = info.own_task.as_ref().expect("own task");
    assert_eq!(
        own.task_arn,
        "arn:aws:ecs:us-east-1:123457279990:task/ecs-cluster/7d2dae60ad844c608fb2d44215a46f6f"
    );
    assert_eq!(
        (own.family.as_str(), own.revision.as_str()),
        ("datadog-agent", "15")
    );
    assert_eq!(own.containers[0].networks[0].ipv4_addresses, ["172.17.0.2"]);
    let task = info
        .task_of_container("bf25c5c5b2d4dba68846c7236e75b6915e1e778d31611e3c6a06831e39814a15")
        .expect("task of the wordpress container");
    assert_eq!(
        (task.family.as_str(), task.version.as_str()),
        ("hello_world", "8")
    );
    assert!(info
        .status_line()
        .starts_with("ecs: cluster cluster_name, 1 tasks, agent http://127.0.0.1:"));
    // Serializes for status and snapshot output.
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["tasks"][0]["containers"][1]["name"], "wordpress");
}

#[tokio::test]
async fn agent_found_through_the_ecs_agent_container_address() {
    // 127.0.0.2 stands for the ecs-agent container's address; the port is configurable
    // so that no fixed port is needed.
    let agent = FakeServer::bind((Ipv4Addr::new(127, 0, 0, 2), 0).into())
        .await
        .unwrap();
    agent.agent();
    let mut opts = options(None, closed_url());
    opts.agent_port = agent.addr.port();
    let mut ecs = EcsDiscovery::new(opts);

    let without = ecs.refresh(None).await;
    assert!(!without.detected);
    assert_eq!(agent.count(METADATA), 0);

    let info = ecs.refresh(Some(IpAddr::from([127, 0, 0, 2]))).await;
    assert_recorded_agent(&info);
    assert_eq!(
        info.agent_url,
        Some(format!("http://127.0.0.2:{}/", agent.addr.port()))
    );
}

#[tokio::test]
async fn agent_found_on_the_default_port_51678() {
    let addr: SocketAddr = (Ipv4Addr::new(127, 0, 0, 2), 51678).into();
    let agent = match FakeServer::bind(addr).await {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("skipped: cannot bind {addr}: {e}");
            return;
        }
    };
    agent.agent();
    let mut opts = options(None, closed_url());
    opts.agent_port = node_daemon::collect::ecs::ECS_AGENT_PORT;
    let mut ecs = EcsDiscovery::new(opts);
    let info = ecs.refresh(Some(IpAddr::from([127, 0, 0, 2]))).await;
    assert_recorded_agent(&info);
    assert_eq!(info.agent_url.as_deref(), Some("http://127.0.0.2:51678/"));
}

#[tokio::test]
async fn agent_found_through_the_default_gateway() {
    let agent = FakeServer::bind((Ipv4Addr::new(127, 0, 0, 3), 0).into())
        .await
        .unwrap();
    agent.agent();
    let dir = tempfile::tempdir().unwrap();
    let route = dir.path().join("route");
    std::fs::write(
        &route,
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         eth0\t00000000\t0300007F\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
    )
    .unwrap();
    let mut opts = options(None, closed_url());
    opts.agent_port = agent.addr.port();
    opts.route_table = route;
    let mut ecs = EcsDiscovery::new(opts);

    let info = ecs.refresh(None).await;
    assert_recorded_agent(&info);
    assert_eq!(
        info.agent_url,
        Some(format!("http://127.0.0.3:{}/", agent.addr.port()))
    );
}

#[tokio::test]
async fn a_failing_configured_url_falls_through_to_the_next_candidate() {
    let broken = FakeServer::start().await;
    broken.route(METADATA, Reply::Status(404));
    let agent = FakeServer::bind((Ipv4Addr::new(127, 0, 0, 2), 0).into())
        .await
        .unwrap();
    agent.agent();
    let mut opts = options(Some(broken.url()), closed_url());
    opts.agent_port = agent.addr.port();
    let mut ecs = EcsDiscovery::new(opts);

    let info = ecs.refresh(Some(IpAddr::from([127, 0, 0, 2]))).await;
    assert_recorded_agent(&info);
    assert_eq!(broken.count(METADATA), 1);
    assert_eq!(info.agent_url, Some(agent.url().to_string()));
    // Only the IMDS failure remains; the 404 of a candidate that lost is not a problem.
    let reason = info.reason.unwrap();
    assert!(reason.starts_with("instance identity: "), "{reason}");
}

#[tokio::test]
async fn hanging_endpoints_cost_one_timeout_each() {
    let hanging = FakeServer::start().await;
    hanging
        .route(METADATA, Reply::Hang)
        .route(TOKEN, Reply::Hang)
        .route(OWN_TASK, Reply::Hang);
    let timeout = Duration::from_millis(300);
    let mut opts = options(Some(hanging.url()), hanging.url());
    opts.task_metadata_url = Some(hanging.url().join("v4/0a1b2c3d-daemon").unwrap());
    opts.timeout = timeout;
    // The same hanging agent as the ecs-agent address too: a second candidate.
    opts.agent_port = hanging.addr.port();
    let mut ecs = EcsDiscovery::new(opts);

    let started = Instant::now();
    let info = ecs.refresh(Some(IpAddr::from([127, 0, 0, 1]))).await;
    let elapsed = started.elapsed();

    // Candidates: configured (= the ecs-agent address, deduplicated) and localhost on the
    // same port, both hanging; IMDS and the task endpoint hang concurrently.
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(
        elapsed < timeout * 2 + Duration::from_millis(700),
        "{elapsed:?}"
    );
    assert!(!info.detected);
    let reason = info.reason.unwrap();
    let metadata_url = format!("http://127.0.0.1:{}/v1/metadata", hanging.addr.port());
    assert!(
        reason.contains(&format!("{metadata_url}: no complete answer within 300 ms")),
        "{reason}"
    );
    assert!(reason.contains("task metadata: "), "{reason}");
    assert!(reason.contains("instance identity: "), "{reason}");
    assert_eq!(hanging.count(METADATA), 2);
    // The token PUT timed out: no IMDSv1 try after it.
    assert_eq!(hanging.count(IDENTITY), 0);
    assert_eq!(info.instance, None);
}

/// Discovery with `reply` on `/v1/metadata`: not detected, and the reason.
async fn metadata_failure(reply: Reply) -> (String, FakeServer) {
    let server = FakeServer::start().await;
    server.agent().imds().route(METADATA, reply);
    let mut ecs = EcsDiscovery::new(options(Some(server.url()), server.url()));
    let info = ecs.refresh(None).await;
    assert!(!info.detected, "{info:?}");
    assert_eq!(info.tasks, []);
    // IMDS is independent of the agent.
    assert_eq!(info.instance.unwrap().instance_id, "i-aaaaaaaaaaaaaaaaa");
    let reason = info.reason.unwrap();
    let url = format!("{}v1/metadata", server.url());
    assert!(reason.starts_with("no ECS agent answered ("), "{reason}");
    assert!(reason.contains(&url), "{reason} should name {url}");
    (reason, server)
}

#[tokio::test]
async fn not_found_is_reported_with_the_url() {
    let (reason, _server) = metadata_failure(Reply::Status(404)).await;
    assert!(
        reason.contains("v1/metadata: answered HTTP 404"),
        "{reason}"
    );
    // The localhost candidate was tried as well.
    assert!(reason.contains("http://localhost:"), "{reason}");
}

#[tokio::test]
async fn garbage_bodies_are_reported_with_the_url() {
    let (reason, _server) = metadata_failure(Reply::Body(b"<html>hello</html>".to_vec())).await;
    assert!(
        reason.contains("v1/metadata: not the expected JSON"),
        "{reason}"
    );
    let (reason, _server) = metadata_failure(Reply::Body(br#"{"Tasks": []}"#.to_vec())).await;
    assert!(reason.contains("missing field `Cluster`"), "{reason}");
}

#[tokio::test]
async fn closed_connections_are_reported_with_the_url() {
    let (reason, _server) = metadata_failure(Reply::Close).await;
    assert!(
        reason.contains("v1/metadata: connection closed"),
        "{reason}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    for announced in [true, false] {
        let (reason, _server) = metadata_failure(Reply::Oversized { announced }).await;
        assert!(
            reason.contains("v1/metadata: body larger than 4194304 bytes, refused"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn garbage_tasks_keep_the_agent_detected() {
    let server = FakeServer::start().await;
    server
        .agent()
        .route(TASKS, Reply::Body(b"]]garbage".to_vec()));
    let mut ecs = EcsDiscovery::new(options(Some(server.url()), closed_url()));
    let info = ecs.refresh(None).await;
    assert!(info.detected);
    assert_eq!(info.cluster.as_deref(), Some("cluster_name"));
    assert_eq!(info.tasks, []);
    let reason = info.reason.unwrap();
    assert!(
        reason.starts_with(&format!(
            "tasks: {}v1/tasks: not the expected JSON",
            server.url()
        )),
        "{reason}"
    );
    // The failure is kept like an answer: no new request within the TTL.
    let again = ecs.refresh(None).await;
    assert_eq!(again.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(server.count(TASKS), 1);
}

#[tokio::test]
async fn imds_token_put_comes_before_the_get_with_the_token() {
    let server = FakeServer::start().await;
    server.imds();
    let mut opts = options(None, server.url());
    opts.static_ttl = Duration::ZERO;
    let mut ecs = EcsDiscovery::new(opts);

    let info = ecs.refresh(None).await;
    let instance = info.instance.expect("instance identity");
    assert_eq!(instance.instance_id, "i-aaaaaaaaaaaaaaaaa");
    assert_eq!(instance.private_ip.as_deref(), Some("1.2.3.4"));
    let seen = server.seen();
    let steps: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(steps, [("PUT", TOKEN), ("GET", IDENTITY)]);
    assert_eq!(
        seen[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(seen[1].header("X-aws-ec2-metadata-token"), Some(IMDS_TOKEN));

    // The document is asked again (TTL zero) but the token is reused.
    let again = ecs.refresh(None).await;
    assert!(again.instance.is_some());
    assert_eq!((server.count(TOKEN), server.count(IDENTITY)), (1, 2));
}

#[tokio::test]
async fn imds_v1_only_when_the_token_endpoint_is_unknown() {
    let server = FakeServer::start().await;
    server
        .route(TOKEN, Reply::Status(404))
        .file(IDENTITY, "ec2-imds/datadog_instance_identity_document.json");
    let mut ecs = EcsDiscovery::new(options(None, server.url()));
    let info = ecs.refresh(None).await;
    assert_eq!(info.instance.unwrap().region, "us-east-1");
    let identity = server
        .seen()
        .into_iter()
        .find(|s| s.path == IDENTITY)
        .unwrap();
    assert_eq!(identity.header("X-aws-ec2-metadata-token"), None);

    // 403: IMDS disabled; no v1 try.
    let disabled = FakeServer::start().await;
    disabled
        .route(TOKEN, Reply::Status(403))
        .file(IDENTITY, "ec2-imds/datadog_instance_identity_document.json");
    let mut ecs = EcsDiscovery::new(options(None, disabled.url()));
    let info = ecs.refresh(None).await;
    assert_eq!(info.instance, None);
    assert_eq!(disabled.count(IDENTITY), 0);
    let reason = info.reason.unwrap();
    assert!(
        reason.contains(&format!(
            "instance identity: {}latest/api/token: answered HTTP 403",
            disabled.url()
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn imds_absent_leaves_everything_else_working() {
    let server = FakeServer::start().await;
    server.agent();
    let imds = closed_url();
    let mut ecs = EcsDiscovery::new(options(Some(server.url()), imds.clone()));
    let info = ecs.refresh(None).await;
    assert_recorded_agent(&info);
    assert_eq!(info.instance, None);
    let reason = info.reason.unwrap();
    assert!(
        reason.starts_with(&format!(
            "instance identity: {imds}latest/api/token: cannot connect"
        )),
        "{reason}"
    );
}

#[tokio::test]
async fn task_metadata_endpoint_alone_detects_ecs() {
    let server = FakeServer::start().await;
    server.file(
        OWN_TASK,
        "ecs-api/task-metadata-v4/awsdocs_v4_task_metadata_ec2_awsvpc_with_pause.json",
    );
    let mut opts = options(None, closed_url());
    opts.task_metadata_url = Some(server.url().join("v4/0a1b2c3d-daemon").unwrap());
    let mut ecs = EcsDiscovery::new(opts);
    let info = ecs.refresh(None).await;
    assert!(info.detected);
    assert_eq!(info.agent_url, None);
    assert_eq!(info.cluster.as_deref(), Some("default"));
    let own = info.own_task.unwrap();
    assert_eq!(own.launch_type.as_deref(), Some("EC2"));
    assert_eq!(own.containers.len(), 2);
    assert!(info.reason.unwrap().starts_with("no ECS agent answered"));
}

#[tokio::test]
async fn answers_are_reused_within_their_ttl() {
    let server = FakeServer::start().await;
    server.agent().imds().file(
        OWN_TASK,
        "ecs-api/task-metadata-v4/otelcontrib_v4_task_metadata_ec2_bridge_3containers.json",
    );
    let mut opts = options(Some(server.url()), server.url());
    opts.task_metadata_url = Some(server.url().join("v4/0a1b2c3d-daemon").unwrap());
    opts.cache_ttl = Duration::from_secs(1);
    let mut ecs = EcsDiscovery::new(opts);

    let first = ecs.refresh(None).await;
    assert_recorded_agent(&first);
    let requests = server.seen().len();
    assert_eq!(requests, 5, "metadata, tasks, token, identity, own task");

    let second = ecs.refresh(None).await;
    assert_eq!(server.seen().len(), requests, "no request within the TTL");
    assert_eq!(second, first);

    // After cache_ttl: tasks and the own task again; metadata and identity still fresh.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let third = ecs.refresh(None).await;
    assert_eq!(third, first);
    assert_eq!(server.count(TASKS), 2);
    assert_eq!(server.count(OWN_TASK), 2);
    assert_eq!(server.count(METADATA), 1);
    assert_eq!(server.count(IDENTITY), 1);
}

#[tokio::test]
async fn failed_discovery_waits_for_the_ttl_or_a_new_agent_address() {
    let port = closed_port();
    let mut opts = options(Some(closed_url()), closed_url());
    opts.agent_port = port;
    let mut ecs = EcsDiscovery::new(opts);
    let first = ecs.refresh(None).await;
    assert!(!first.detected);

    // The agent appears at an address not tried yet: asked at once.
    let agent = FakeServer::bind((Ipv4Addr::new(127, 0, 0, 2), port).into()).await;
    let Ok(agent) = agent else {
        eprintln!("skipped: cannot bind 127.0.0.2:{port}");
        return;
    };
    agent.agent();
    let same = ecs.refresh(None).await;
    assert_eq!(
        same, first,
        "within the TTL without a new address: the same failure"
    );
    assert_eq!(agent.seen().len(), 0);
    let found = ecs.refresh(Some(IpAddr::from([127, 0, 0, 2]))).await;
    assert_recorded_agent(&found);
}

#[tokio::test]
async fn a_remembered_agent_that_fails_is_rediscovered() {
    let first = FakeServer::start().await;
    first.agent();
    let second = FakeServer::bind((Ipv4Addr::new(127, 0, 0, 2), 0).into())
        .await
        .unwrap();
    second.agent();
    let mut opts = options(Some(first.url()), closed_url());
    opts.agent_port = second.addr.port();
    opts.cache_ttl = Duration::from_millis(200);
    let mut ecs = EcsDiscovery::new(opts);
    let ip = Some(IpAddr::from([127, 0, 0, 2]));

    let info = ecs.refresh(ip).await;
    assert_eq!(info.agent_url, Some(first.url().to_string()));

    // The first agent now closes every connection; after the tasks TTL it is asked,
    // fails, and the next candidate takes over in the same refresh.
    first
        .route(TASKS, Reply::Close)
        .route(METADATA, Reply::Close);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let info = ecs.refresh(ip).await;
    assert_recorded_agent(&info);
    assert_eq!(info.agent_url, Some(second.url().to_string()));
    // Unreachable: not asked again in that round.
    assert_eq!((first.count(TASKS), first.count(METADATA)), (2, 1));
}

#[tokio::test]
async fn defaults_on_this_machine_are_bounded() {
    // Off ECS (or on it): a refresh with the real defaults returns within the worst case of
    // one timeout per candidate, never an error or a hang. Run in a spawned task, as the
    // container collector does (this also proves the future is Send).
    let mut ecs = EcsDiscovery::new(EcsOptions::default());
    let started = Instant::now();
    let info = tokio::spawn(async move { ecs.refresh(None).await })
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    if !info.detected {
        assert!(info.reason.is_some());
        assert!(info.status_line().starts_with("ecs: not detected ("));
    }
}
