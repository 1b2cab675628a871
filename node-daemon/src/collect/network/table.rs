//! The bounded connection table: counters of the last cycle for rates, and connections
//! that disappeared, reported once as `closed` with their last counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::model::Connection;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    netns: u64,
    protocol: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
    inode: u64,
}

impl Key {
    fn of(c: &Connection) -> Self {
        Self {
            netns: c.netns,
            protocol: c.protocol,
            local: c.local,
            remote: c.remote,
            inode: c.inode,
        }
    }
}

struct Entry {
    last: Connection,
    cycle: u64,
}

pub struct Table {
    cap: usize,
    entries: HashMap<Key, Entry>,
    cycle: u64,
    last_update: Option<Instant>,
}

/// One cycle's result: open connections with rates, then the ones closed since.
#[derive(Debug, Default)]
pub struct Update {
    pub connections: Vec<Connection>,
    pub open: u64,
    pub closed: u64,
    /// Connections not tracked (nor reported) because the table was full.
    pub overflow: u64,
}

impl Table {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: HashMap::new(),
            cycle: 0,
            last_update: None,
        }
    }

    /// Connections tracked now.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    pub fn update(&mut self, fresh: Vec<Connection>, now: Instant) -> Update {
        self.cycle += 1;
        let elapsed = self
            .last_update
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.last_update = Some(now);
        let mut out = Update::default();
        out.connections.reserve(fresh.len());
        for mut c in fresh {
            let key = Key::of(&c);
            let room = self.entries.len() < self.cap;
            match self.entries.get_mut(&key) {
                Some(entry) => {
                    let rate = |now: Option<u64>, before: Option<u64>| {
                        Some(now?.saturating_sub(before?) as f64 / elapsed?)
                    };
                    c.bytes_sent_per_sec = rate(c.bytes_sent, entry.last.bytes_sent);
                    c.bytes_received_per_sec = rate(c.bytes_received, entry.last.bytes_received);
                    entry.last.clone_from(&c);
                    entry.cycle = self.cycle;
                }
                None if room => {
                    self.entries.insert(
                        key,
                        Entry {
                            last: c.clone(),
                            cycle: self.cycle,
                        },
                    );
                }
                None => {
                    out.overflow += 1;
                    continue;
                }
            }
            out.connections.push(c);
        }
        out.open = out.connections.len() as u64;
        let cycle = self.cycle;
        self.entries.retain(|_, entry| {
            if entry.cycle == cycle {
                return true;
            }
            let mut gone = entry.last.clone();
            gone.state = "closed";
            gone.closed = true;
            gone.bytes_sent_per_sec = None;
            gone.bytes_received_per_sec = None;
            gone.tx_queue = 0;
            gone.rx_queue = 0;
            out.connections.push(gone);
            out.closed += 1;
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub fn conn(local: &str, inode: u64, sent: Option<u64>) -> Connection {
        Connection {
            pid: 10,
            process_create_time_ms: 1,
            container_id: None,
            netns: 1,
            protocol: "tcp",
            ip_version: 4,
            local: local.parse().unwrap(),
            remote: "10.0.0.9:80".parse().unwrap(),
            direction: "outgoing",
            side: Some("client"),
            state: "established",
            bytes_sent: sent,
            bytes_received: sent.map(|s| s * 2),
            bytes_sent_per_sec: None,
            bytes_received_per_sec: None,
            retransmits: None,
            rtt_us: None,
            tx_queue: 0,
            rx_queue: 0,
            inode,
            start_time_ms: None,
            closed: false,
        }
    }

    #[test]
    fn rates_then_closed_once() {
        let mut t = Table::new(10);
        let t0 = Instant::now();
        let u = t.update(
            vec![
                conn("10.0.0.1:1", 1, Some(100)),
                conn("10.0.0.1:2", 2, None),
            ],
            t0,
        );
        assert_eq!((u.open, u.closed, u.overflow), (2, 0, 0));
        assert_eq!(u.connections[0].bytes_sent_per_sec, None, "first sample");

        let u = t.update(
            vec![conn("10.0.0.1:1", 1, Some(1100))],
            t0 + Duration::from_secs(2),
        );
        assert_eq!((u.open, u.closed), (1, 1));
        assert_eq!(u.connections[0].bytes_sent_per_sec, Some(500.0));
        assert_eq!(u.connections[0].bytes_received_per_sec, Some(1000.0));
        let gone = &u.connections[1];
        assert_eq!(
            (gone.local.port(), gone.state, gone.closed),
            (2, "closed", true)
        );

        let u = t.update(vec![], t0 + Duration::from_secs(4));
        assert_eq!(u.closed, 1);
        assert_eq!(u.connections[0].bytes_sent, Some(1100), "final counters");
        let u = t.update(vec![], t0 + Duration::from_secs(6));
        assert!(u.connections.is_empty(), "reported once");
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn a_full_table_drops_and_counts_new_connections() {
        let mut t = Table::new(2);
        let now = Instant::now();
        let fresh: Vec<_> = (1..=5)
            .map(|i| conn(&format!("10.0.0.1:{i}"), i, None))
            .collect();
        let u = t.update(fresh.clone(), now);
        assert_eq!((u.open, u.overflow), (2, 3));
        assert_eq!(t.tracked(), 2);
        // Known connections keep their place.
        let u = t.update(fresh, now + Duration::from_secs(1));
        assert_eq!(u.connections[0].local.port(), 1);
        assert_eq!((u.open, u.overflow), (2, 3));
    }
}
