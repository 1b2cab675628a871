//! The kernel programs on this kernel: what one process does on its own sockets is
//! observed exactly. Root and a BPF-capable kernel are needed; without them the tests say
//! what they skip (CI sets STS_TEST_STRICT=1, where skipping fails instead).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use super::*;
use crate::collect::network::socket::Protocol;

fn backend(test: &str) -> Option<EbpfBackend> {
    match EbpfBackend::start() {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("STS_TEST_STRICT").is_some() => {
            panic!("{test}: the eBPF backend must load here: {e}")
        }
        Err(e) => {
            println!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

/// This process's create time as the process collector computes it.
fn own_create_time_ms() -> u64 {
    let stat = std::fs::read("/proc/self/stat").unwrap();
    let starttime = crate::collect::process::parse_stat(&stat)
        .unwrap()
        .starttime;
    Kernel::read().unwrap().create_time_ms(starttime)
}

/// The close records `wanted` picks, from the cycles of up to 1 s; asserts there is one.
fn closed_records(backend: &mut EbpfBackend, wanted: impl Fn(&Socket) -> bool) -> Vec<Socket> {
    let mut closed = Vec::new();
    for _ in 0..50 {
        let obs = backend.observe().unwrap();
        closed.extend(obs.closed.into_iter().filter(|s| wanted(s)));
        if !closed.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(closed.len(), 1, "{closed:?}");
    closed
}

fn own<'a>(obs: &'a Observation, tcp_or_udp: &[std::net::SocketAddr]) -> Option<&'a Socket> {
    let (local, remote) = (tcp_or_udp[0], tcp_or_udp.get(1));
    obs.sockets
        .iter()
        .find(|s| s.local == local && remote.map_or(true, |r| s.remote == *r))
}

#[test]
fn open_connections_with_owner_counters_and_start_time() {
    let Some(mut backend) = backend("open_connections_with_owner_counters_and_start_time") else {
        return;
    };
    let before_ms = now_ms();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[7u8; 4321]).unwrap();
    let mut buf = vec![0u8; 4321];
    server.read_exact(&mut buf).unwrap();
    server.write_all(&[1u8; 55]).unwrap();
    client.read_exact(&mut buf[..55]).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(peer.local_addr().unwrap()).unwrap();
    udp.send(&[0u8; 300]).unwrap();
    udp.send(&[0u8; 200]).unwrap();
    peer.recv(&mut buf).unwrap();

    let obs = backend.observe().unwrap();
    let c = own(
        &obs,
        &[client.local_addr().unwrap(), client.peer_addr().unwrap()],
    )
    .expect("client end");
    let owner = c.owner.as_ref().expect("owner");
    assert_eq!(owner.pid, std::process::id());
    assert_eq!(
        owner.create_time_ms,
        own_create_time_ms(),
        "as the process collector says"
    );
    let counters = c.counters.unwrap();
    assert_eq!((counters.bytes_sent, counters.bytes_received), (4321, 55));
    let started = c.start_time_ms.expect("opened while traced");
    assert!(started + 1000 >= before_ms && started <= now_ms() + 1000);
    let s = own(
        &obs,
        &[server.local_addr().unwrap(), server.peer_addr().unwrap()],
    )
    .expect("server end");
    assert_eq!(s.counters.unwrap().bytes_received, 4321);
    assert!(s.start_time_ms.is_some(), "accepted while traced");
    let u = own(&obs, &[udp.local_addr().unwrap()]).expect("UDP socket");
    assert_eq!(u.protocol, Protocol::Udp);
    assert_eq!(u.remote, peer.local_addr().unwrap());
    assert_eq!(u.counters.unwrap().bytes_sent, 500);
    let p = own(&obs, &[peer.local_addr().unwrap()]).expect("UDP peer");
    assert_eq!(p.counters.unwrap().bytes_received, 300, "one datagram read");
    assert_eq!((obs.closed_lost, obs.untracked, obs.malformed), (0, 0, 0));
}

#[test]
fn a_closed_connection_arrives_once_with_final_counters() {
    let Some(mut backend) = backend("a_closed_connection_arrives_once_with_final_counters") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let local = client.local_addr().unwrap();
    client.write_all(&[7u8; 999]).unwrap();
    let mut buf = vec![0u8; 999];
    server.read_exact(&mut buf).unwrap();
    drop(client);
    assert_eq!(server.read(&mut buf).unwrap(), 0, "end of stream");
    drop(server);
    // Both ends reach TCP_CLOSE once the FINs are acknowledged: wait for the client's.
    let closed = closed_records(&mut backend, |s| s.local == local);
    let c = &closed[0];
    assert_eq!(c.state, 7, "TCP_CLOSE");
    assert_eq!(c.owner.as_ref().map(|o| o.pid), Some(std::process::id()));
    let counters = c.counters.unwrap();
    assert_eq!(
        (counters.bytes_sent, counters.bytes_received),
        (999, 0),
        "FIN not counted"
    );
    assert!(backend
        .observe()
        .unwrap()
        .closed
        .iter()
        .all(|s| s.local != local));
}

#[test]
fn a_connection_older_than_the_tracer_closes_with_its_owner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[3u8; 77]).unwrap();
    let mut buf = vec![0u8; 77];
    server.read_exact(&mut buf).unwrap();
    let Some(mut backend) = backend("a_connection_older_than_the_tracer_closes_with_its_owner")
    else {
        return;
    };
    let local = server.local_addr().unwrap();
    let peer = server.peer_addr().unwrap();
    let seen = backend.observe().unwrap();
    assert!(
        own(&seen, &[local, peer]).is_some(),
        "the iterator finds it"
    );
    drop(server);
    drop(client);
    let closed = closed_records(&mut backend, |s| s.remote == peer);
    let c = &closed[0];
    assert_eq!(c.owner.as_ref().map(|o| o.pid), Some(std::process::id()));
    assert_eq!(
        c.local, local,
        "the port the kernel cleared, from the iterator"
    );
    assert!(c.inode != 0);
    assert_eq!(c.counters.unwrap().bytes_received, 77);
}

#[test]
fn a_refusal_is_one_line_that_names_a_missing_helper() {
    let log = "the BPF_PROG_LOAD syscall returned Invalid argument (os error 22). Verifier \
               output: 0: R1=ctx() R10=fp0\n9: (85) call unknown#162\nunknown func \
               bpf_sock_from_file#162\nprocessed 10 insns";
    let e = EbpfError::Program {
        name: "sockets",
        reason: log.to_string(),
    };
    let short = e.short_reason();
    assert_eq!(
        short,
        "eBPF program `sockets`: the BPF_PROG_LOAD syscall returned Invalid argument (os \
         error 22); this kernel lacks the helper bpf_sock_from_file"
    );
    assert!(!short.contains('\n'));
}
