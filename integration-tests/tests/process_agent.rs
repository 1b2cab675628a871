//! The process agent protocol end to end: the daemon's `CollectorProc`,
//! `CollectorCommands` and `CollectorConnections` messages, decoded by the capture
//! receiver (envelope, zstd, protobuf), against psutil, real sockets and the real Docker
//! engine; the short-lived filters with the agent's defaults; feature negotiation.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::docker::{self, Container};
use integration_tests::forwarding::{
    collector_procs, reported_connections, reported_processes, topologies, ForwardSetup, API_KEY,
};
use integration_tests::net_peer::Peer;
use integration_tests::receiver::{CaptureReceiver, Endpoint, ProcessAgentMessage};
use integration_tests::status::collector;
use integration_tests::traces::DaemonPorts;
use integration_tests::{free_port, python, wait_for, Guard};
use serde_json::{json, Value};
use sts_proto::process_agent::v1 as pb;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What psutil says of `pid`: create time (s), RSS and the command line.
fn psutil(pid: u32) -> Value {
    let script = format!(
        "import json,psutil\n\
         p=psutil.Process({pid})\n\
         print(json.dumps({{'create_time':p.create_time(),'rss':p.memory_info().rss,\
         'cmdline':p.cmdline(),'ppid':p.ppid(),'username':p.username()}}))\n"
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psutil: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn process_of(receiver: &CaptureReceiver, pid: u32) -> Option<pb::Process> {
    reported_processes(receiver)
        .into_iter()
        .rev()
        .find(|p| p.pid == pid as i32)
}

#[test]
fn processes_match_psutil_and_every_message_is_framed_as_the_agent_frames_it() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let _daemon = setup.start_daemon(DaemonPorts::free());
    let sleeper = Guard::spawn(Command::new("/bin/sleep").args(["3621"]));
    let pid = sleeper.pid();
    let secret = Guard::spawn(Command::new(python()).args([
        "-c",
        "import time; time.sleep(3622)",
        "--password=hunter2",
    ]));

    wait_for(Duration::from_secs(20), || process_of(&receiver, pid))
        .expect("the sleeper is reported");
    // Measured again once its pages are in (RSS grows while a program starts).
    let since = receiver.all_requests().len();
    std::thread::sleep(Duration::from_secs(2));
    let theirs = psutil(pid);
    wait_for(Duration::from_secs(10), || {
        (receiver.all_requests().len() > since + 2).then_some(())
    });
    let reported = process_of(&receiver, pid).unwrap();
    let psutil_ms = (theirs["create_time"].as_f64().unwrap() * 1000.0).round() as i64;
    assert!(
        (reported.create_time - psutil_ms).abs() <= 10,
        "create time {} ms, psutil {psutil_ms} ms",
        reported.create_time
    );
    let rss = reported.memory.as_ref().unwrap().rss as f64;
    let psutil_rss = theirs["rss"].as_f64().unwrap();
    assert!(
        (rss - psutil_rss).abs() <= psutil_rss * 0.1,
        "RSS {rss}, psutil {psutil_rss}"
    );
    let command = reported.command.as_ref().unwrap();
    let cmdline: Vec<String> = serde_json::from_value(theirs["cmdline"].clone()).unwrap();
    assert_eq!(command.args, cmdline);
    assert_eq!(command.ppid, theirs["ppid"].as_i64().unwrap() as i32);
    assert!(command.exe.ends_with("sleep"), "{}", command.exe);
    assert!(!command.cwd.is_empty());
    let user = reported.user.as_ref().unwrap();
    assert_eq!(user.name, theirs["username"].as_str().unwrap());
    assert_eq!(reported.state, pb::ProcessState::S as i32);
    assert!(reported.cpu.as_ref().unwrap().num_threads >= 1);
    assert!(reported.open_fd_count >= 3);
    assert!(reported.key != 0);

    // Command lines are scrubbed before they leave the host.
    let python = wait_for(Duration::from_secs(20), || {
        process_of(&receiver, secret.pid())
    })
    .expect("the python process is reported");
    let args = python.command.unwrap().args.join(" ");
    assert!(
        !args.contains("hunter2") && args.contains("--password="),
        "{args}"
    );

    // Every request: the agent's headers, the v3 big-endian envelope with zstd protobuf.
    let requests: Vec<_> = receiver
        .all_requests()
        .into_iter()
        .filter(|r| matches!(r.endpoint, Endpoint::Collector | Endpoint::Connections))
        .collect();
    assert!(requests.iter().any(|r| r.endpoint == Endpoint::Connections));
    let hostname = collector_procs(&receiver)[0].host_name.clone();
    for r in &requests {
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("content-encoding"), Some("x-zip"));
        assert_eq!(r.header("sts-api-key"), Some(API_KEY));
        assert_eq!(r.header("sts-hostname"), Some(hostname.as_str()));
        assert!(r
            .header("sts-processagentversion")
            .is_some_and(|v| !v.is_empty()));
        assert!(
            r.query.as_deref().unwrap_or("").is_empty(),
            "key in the URL"
        );
        let c = r.collector().expect("decoded envelope");
        let e = &c.envelope;
        assert_eq!((e.version, e.encoding, e.org_id_be), (3, 2, Some(0)));
        let ts = e.timestamp_be.unwrap();
        assert!((ts - now_ms()).abs() < 120_000, "timestamp {ts}");
        let m = ProcessAgentMessage::decode(c).expect("protobuf");
        let expected = if r.endpoint == Endpoint::Connections {
            22
        } else {
            12
        };
        assert_eq!(e.msg_type, expected, "{m:?}");
    }
    // Groups: at most 100 processes a message, every message of a group present.
    let procs = collector_procs(&receiver);
    let mut groups: BTreeMap<i32, (i32, usize)> = BTreeMap::new();
    for p in &procs {
        assert!(p.processes.len() <= 100 && p.containers.len() <= 100);
        assert!(p.host.as_ref().is_some_and(|h| h.name == hostname));
        let g = groups.entry(p.group_id).or_insert((p.group_size, 0));
        assert_eq!(g.0, p.group_size);
        g.1 += 1;
    }
    let (_, last) = groups.pop_last().unwrap();
    assert!(groups.values().all(|(size, n)| *size as usize == *n));
    assert!(last.1 <= last.0 as usize);

    // Processes, containers and connections left the intake.
    assert!(topologies(&receiver, "ecs-processes").is_empty());
    for m in receiver.intake_messages() {
        let text = m.to_string();
        assert!(
            !text.contains("urn:process:"),
            "a process in the intake: {text}"
        );
    }
}

#[test]
fn a_tcp_connection_gives_one_outgoing_and_one_incoming_connection_that_pair() {
    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let daemon = setup.start_daemon(DaemonPorts::free());
    // The daemon runs before the traffic, so the tracer sees the connection open.
    let backend = wait_for(Duration::from_secs(20), || {
        let status = daemon.status()?;
        Some(
            collector(&status, "network")?["detail"]
                .as_str()?
                .to_string(),
        )
    })
    .expect("status shows the network collector");
    let port = free_port();
    let (n, m) = (23_456u64, 7_891u64);
    let args = |role| {
        [
            role,
            "127.0.0.1",
            &port.to_string(),
            &n.to_string(),
            &m.to_string(),
            "keep",
        ]
        .map(String::from)
    };
    let server_args = args("server");
    let server = Peer::start(&[], &server_args.each_ref().map(String::as_str));
    let client_args = args("client");
    let client = Peer::start(&[], &client_args.each_ref().map(String::as_str));
    assert_eq!(server.next_line(), "done");
    let client_port = client.number();

    let find = |pid: u32, local: u16| {
        reported_connections(&receiver)
            .into_iter()
            .filter(|c| {
                c.pid == pid as i32 && c.laddr.as_ref().is_some_and(|a| a.port == i32::from(local))
            })
            .collect::<Vec<_>>()
    };
    let (outgoing, incoming) = wait_for(Duration::from_secs(30), || {
        let o = find(client.pid(), client_port);
        let i = find(server.pid(), port);
        (!o.is_empty() && !i.is_empty()).then_some((o, i))
    })
    .expect("both ends reported");
    let (o, i) = (&outgoing[0], &incoming[0]);
    assert_eq!(o.direction, pb::ConnectionDirection::Outgoing as i32);
    assert_eq!(i.direction, pb::ConnectionDirection::Incoming as i32);
    assert_eq!(o.r#type, pb::ConnectionType::Tcp as i32);
    assert_eq!(o.family, pb::ConnectionFamily::V4 as i32);
    // The addresses pair: each end's remote is the other's local.
    assert_eq!(o.raddr, i.laddr);
    assert_eq!(o.laddr, i.raddr);
    assert_eq!(o.raddr.as_ref().unwrap().port, i32::from(port));
    // The create times are those of the reported processes.
    let created = |pid: u32| process_of(&receiver, pid).map(|p| p.create_time);
    assert_eq!(Some(o.pid_create_time), created(client.pid()));
    assert_eq!(Some(i.pid_create_time), created(server.pid()));
    // Loopback ends are named by host and namespace, so they never pair across hosts.
    let hostname = collector_procs(&receiver)[0].host_name.clone();
    assert!(o.namespace.contains(&hostname), "{}", o.namespace);
    assert_eq!(o.namespace, i.namespace);
    assert_ne!(o.net_ns, 0);
    assert_eq!(
        o.connection_identifier,
        format!("out:{}:127.0.0.1:127.0.0.1:{port}", o.namespace)
    );
    assert_eq!(
        i.connection_identifier,
        format!("in:{}:127.0.0.1:{port}:127.0.0.1", i.namespace)
    );
    // The bytes, as deltas between messages: in all, what was sent (the tracer saw the
    // connection open); polling starts counting when it first sees one.
    let delta = |cs: &[pb::Connection], name: &str| -> f64 {
        cs.iter()
            .flat_map(|c| c.metrics.iter())
            .filter(|m| m.name == name)
            .filter_map(|m| match m.value.as_ref()?.value.as_ref()? {
                pb::connection_metric_value::Value::Number(v) => Some(*v),
                _ => None,
            })
            .sum()
    };
    let sent = wait_for(Duration::from_secs(10), || {
        let sent = delta(&find(client.pid(), client_port), "bytes_sent_delta");
        (sent > 0.0 || !backend.starts_with("ebpf:")).then_some(sent)
    });
    println!("network backend {backend}: client bytes_sent_delta {sent:?}");
    if backend.starts_with("ebpf:") {
        assert_eq!(sent, Some(n as f64));
        let received = delta(&find(client.pid(), client_port), "bytes_received_delta");
        assert_eq!(received, m as f64);
    }
    assert!(outgoing.iter().all(|c| c.bytes_sent_per_second >= 0.0));
}

const TASK: &str =
    "arn:aws:ecs:us-west-2:012345678910:task/it-pa-cluster/00112233445566778899aabbccddeeff";

#[test]
fn an_ecs_container_carries_its_task_tags_and_its_task_goes_to_the_intake() {
    if !docker::available("an_ecs_container_carries_its_task_tags_and_its_task_goes_to_the_intake")
    {
        return;
    }
    docker::ensure_test_image();
    let labels = [
        ("com.amazonaws.ecs.task-arn", TASK),
        ("com.amazonaws.ecs.container-name", "web"),
        ("com.amazonaws.ecs.task-definition-family", "it-pa-family"),
        ("com.amazonaws.ecs.task-definition-version", "7"),
        ("com.amazonaws.ecs.cluster", "it-pa-cluster"),
    ];
    let mut args: Vec<String> = labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect();
    args.extend(["--memory".into(), "64m".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::run(&args, &["sleep", "3623"]);

    let receiver = CaptureReceiver::http();
    let setup = ForwardSetup::new(&receiver, &[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let _daemon = setup.start_daemon(DaemonPorts::free());
    let container = wait_for(Duration::from_secs(30), || {
        collector_procs(&receiver)
            .into_iter()
            .rev()
            .flat_map(|p| p.containers)
            .find(|x| x.id == c.id && x.tags.iter().any(|t| t.starts_with("task_arn:")))
    })
    .expect("the container is reported with its task");
    let tags: HashSet<&str> = container.tags.iter().map(String::as_str).collect();
    for tag in [
        format!("task_arn:{TASK}"),
        "task_family:it-pa-family".into(),
        "task_version:7".into(),
        "ecs_container_name:web".into(),
        "ecs_cluster_name:it-pa-cluster".into(),
        format!("container_id:{}", c.id),
        format!("docker_image:{}", docker::TEST_IMAGE),
    ] {
        assert!(tags.contains(tag.as_str()), "{tag} missing from {tags:?}");
    }
    assert_eq!(container.r#type, "docker");
    assert_eq!(container.state, pb::ContainerState::Running as i32);
    assert_eq!(container.memory_limit, 64 << 20);
    let age = now_ms() / 1000 - container.created;
    assert!((0..600).contains(&age), "created {}", container.created);
    assert!(container.started >= container.created);
    // Its process says which container it runs in.
    let in_container = wait_for(Duration::from_secs(20), || process_of(&receiver, c.pid()))
        .expect("the container's process is reported");
    assert_eq!(in_container.container_id, c.id);
    assert_eq!(in_container.container_key, container.key);

    // The intake: the task, under the cluster's instance, without snapshots; the
    // container's metrics named and tagged as the process agent sends them.
    let task = wait_for(Duration::from_secs(20), || {
        topologies(&receiver, "ecs")
            .into_iter()
            .find(|t| t["instance"]["url"] == "it-pa-cluster" && t.to_string().contains(TASK))
    })
    .expect("the task in the intake topology");
    assert_eq!(task["start_snapshot"], false);
    assert_eq!(task["stop_snapshot"], false);
    let kinds: Vec<&str> = task["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"]["name"].as_str())
        .collect();
    assert!(
        kinds.contains(&"ecs-task") && kinds.contains(&"ecs-cluster"),
        "{kinds:?}"
    );
    let tag = json!(format!("containerId:{}", c.id));
    let names = wait_for(Duration::from_secs(20), || {
        let names: HashSet<String> = receiver
            .intake_messages()
            .iter()
            .flat_map(|m| m["metrics"].as_array().cloned().unwrap_or_default())
            .filter(|g| g[3]["tags"].as_array().is_some_and(|t| t.contains(&tag)))
            .filter_map(|g| g[0].as_str().map(String::from))
            .collect();
        // The rates from the second sample on.
        names.contains("totalPct").then_some(names)
    })
    .expect("container metrics tagged containerId:<id>");
    for name in [
        "memRss",
        "userPct",
        "systemPct",
        "memCache",
        "rbps",
        "netRcvdBps",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

#[test]
fn a_process_that_lives_20_s_is_not_reported_one_that_lives_90_s_is() {
    let receiver = CaptureReceiver::http();
    // The agent's default qualifier (60 s); messages every 5 s.
    let setup = ForwardSetup::new(
        &receiver,
        &[
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^$never"),
            ("STS_PROCESS_AGENT_INTERVAL", "5"),
            ("STS_PROCESS_SHORT_LIVED_QUALIFIER_SECS", "60"),
        ],
    );
    let daemon = setup.start_daemon(DaemonPorts::free());
    let started = Instant::now();
    let mut short = Guard::spawn(Command::new("/bin/sleep").arg("20"));
    let long = Guard::spawn(Command::new("/bin/sleep").arg("90"));
    let (short_pid, long_pid) = (short.pid(), long.pid());
    // Reaped when it exits (a zombie would still be a process).
    let reaped = std::thread::spawn(move || {
        let _ = short.0.wait();
    });
    let seen = wait_for(Duration::from_secs(85), || process_of(&receiver, long_pid))
        .expect("the 90 s process is reported");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(58),
        "reported after {after:?}, before 60 s"
    );
    reaped.join().unwrap();
    assert!(
        reported_processes(&receiver)
            .iter()
            .all(|p| p.pid != short_pid as i32),
        "the 20 s process was reported"
    );
    assert!(seen.create_time > 0);
    let status = daemon.status().unwrap();
    let pa = collector(&status, "forward.process-agent").unwrap();
    assert!(
        pa["counts"]["short_lived_processes"].as_u64().unwrap_or(0) > 0,
        "{pa}"
    );
}

#[test]
fn with_incremental_topology_changes_go_between_full_messages_every_minute() {
    let receiver = CaptureReceiver::http();
    receiver.set_features(Some(
        json!({"incremental-topology": true, "health-states": false}),
    ));
    let setup = ForwardSetup::new(
        &receiver,
        &[
            ("STS_PROCESS_BLACKLIST_PATTERNS", "^$never"),
            ("STS_PROCESS_AGENT_INTERVAL", "2"),
        ],
    );
    let _daemon = setup.start_daemon(DaemonPorts::free());
    assert!(receiver.wait_for(
        |r| r.iter().any(|r| r.endpoint == Endpoint::Features),
        Duration::from_secs(20)
    ));
    let kinds = || -> Vec<(u64, u8)> {
        receiver
            .process_agent_messages()
            .iter()
            .filter(|(r, _)| r.endpoint == Endpoint::Collector)
            .map(|(r, m)| {
                let kind = match m {
                    ProcessAgentMessage::Proc(_) => 12,
                    ProcessAgentMessage::Commands(_) => 13,
                    ProcessAgentMessage::Connections(_) => 22,
                };
                (r.received_at_ms, kind)
            })
            .collect()
    };
    wait_for(Duration::from_secs(20), || {
        kinds().iter().any(|(_, k)| *k == 13).then_some(())
    })
    .expect("changes after the first full message");
    assert_eq!(kinds()[0].1, 12, "the first message is a full one");

    // A new process is an update; once gone, a delete.
    let mut p = Guard::spawn(Command::new("/bin/sleep").arg("3624"));
    let pid = p.pid() as i32;
    let commands = || -> Vec<pb::collector_command::Command> {
        receiver
            .process_agent_messages()
            .into_iter()
            .filter_map(|(_, m)| match m {
                ProcessAgentMessage::Commands(c) => Some(c.commands),
                _ => None,
            })
            .flatten()
            .filter_map(|c| c.command)
            .collect()
    };
    use pb::collector_command::Command as C;
    wait_for(Duration::from_secs(20), || {
        commands()
            .iter()
            .any(|c| matches!(c, C::UpdateProcess(x) if x.pid == pid))
            .then_some(())
    })
    .expect("the new process as an update");
    p.signal_and_wait(libc::SIGKILL, Duration::from_secs(2))
        .unwrap();
    wait_for(Duration::from_secs(20), || {
        commands()
            .iter()
            .any(|c| matches!(c, C::DeleteProcess(x) if x.pid == pid))
            .then_some(())
    })
    .expect("the gone process as a delete");

    // A full message at least every minute.
    let second_full = wait_for(Duration::from_secs(75), || {
        let k = kinds();
        let fulls: Vec<u64> = k
            .iter()
            .filter(|(_, k)| *k == 12)
            .map(|(t, _)| *t)
            .collect();
        // The first full group may be several messages at once.
        let first = fulls[0];
        fulls
            .into_iter()
            .find(|t| t - first > 10_000)
            .map(|t| t - first)
    })
    .expect("a second full message");
    assert!(
        second_full <= 62_000,
        "{second_full} ms between full messages"
    );
}
