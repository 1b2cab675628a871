//! Many open loopback TCP connections, for the network tracer's benchmarks.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Lets this process hold `files` descriptors.
pub fn raise_nofile(files: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= files {
        return Ok(());
    }
    limit.rlim_cur = files;
    limit.rlim_max = limit.rlim_max.max(files);
    // SAFETY: setrlimit reads the struct given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pairs` established loopback TCP connections, both ends (client, server, client, ...),
/// each having carried a short request and answer so that both ends have counters.
pub fn loopback_pairs(pairs: usize) -> io::Result<Vec<TcpStream>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut held = Vec::with_capacity(pairs * 2);
    let mut buf = [0u8; 16];
    for i in 0..pairs {
        let connected = TcpStream::connect(addr).and_then(|mut client| {
            let (mut server, _) = listener.accept()?;
            client.write_all(b"request")?;
            server.read_exact(&mut buf[..7])?;
            server.write_all(b"answer")?;
            client.read_exact(&mut buf[..6])?;
            Ok((client, server))
        });
        let (client, server) =
            connected.map_err(|e| io::Error::new(e.kind(), format!("connection {i}: {e}")))?;
        held.extend([client, server]);
    }
    Ok(held)
}
