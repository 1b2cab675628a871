//! The bounded connection table: counters of the last cycle for rates, and connections
//! that ended, reported once as `closed`: with the final counters when the backend saw the
//! close, else with the last counters once they disappeared.

use std::collections::{HashMap, HashSet};
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

/// Cycles a TCP connection missing from a close-reporting backend's sockets waits for its
/// close event before it is reported closed with its last counters: its owner let go of
/// it, but the kernel may still be finishing it (FIN_WAIT2 lasts 60 s).
pub(crate) const CLOSE_GRACE_CYCLES: u64 = 6;

pub(crate) struct Table {
    cap: usize,
    entries: HashMap<Key, Entry>,
    /// Connections reported closed after the grace, by cycle: a late close event for
    /// them is not a second report.
    expired: HashMap<Key, u64>,
    cycle: u64,
    last_update: Option<Instant>,
}

/// One cycle's result: open connections with rates, then the ones closed since.
#[derive(Debug, Default)]
pub struct Update {
    pub(crate) connections: Vec<Connection>,
    pub(crate) open: u64,
    pub(crate) closed: u64,
    /// Connections not tracked (nor reported) because the table was full.
    pub(crate) overflow: u64,
}

impl Table {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: HashMap::new(),
            expired: HashMap::new(),
            cycle: 0,
            last_update: None,
        }
    }

    /// Connections tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// `fresh`: the open connections of this cycle; `closed`: connections the backend saw
    /// close since the last cycle, with final counters; `reports_closes`: whether every
    /// TCP close arrives in `closed`.
    pub(crate) fn update(
        &mut self,
        fresh: Vec<Connection>,
        closed: Vec<Connection>,
        reports_closes: bool,
        now: Instant,
    ) -> Update {
        self.cycle += 1;
        let elapsed = self
            .last_update
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.last_update = Some(now);
        let mut out = Update::default();
        out.connections.reserve(fresh.len());
        let closed_keys: HashSet<Key> = closed.iter().map(Key::of).collect();
        for mut c in fresh {
            let key = Key::of(&c);
            // Open when the backend looked, closed by the time it read its close events.
            if closed_keys.contains(&key) {
                continue;
            }
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
        for c in closed {
            let key = Key::of(&c);
            let tracked = self.entries.remove(&key).is_some();
            if !tracked && self.expired.remove(&key).is_some() {
                continue;
            }
            out.connections.push(closed_record(c));
            out.closed += 1;
        }
        let cycle = self.cycle;
        let expired = &mut self.expired;
        self.entries.retain(|key, entry| {
            let closing = reports_closes && entry.last.protocol == "tcp";
            if entry.cycle == cycle || (closing && cycle - entry.cycle < CLOSE_GRACE_CYCLES) {
                return true;
            }
            if closing {
                expired.insert(key.clone(), cycle);
            }
            out.connections.push(closed_record(entry.last.clone()));
            out.closed += 1;
            false
        });
        expired.retain(|_, at| cycle - *at < CLOSE_GRACE_CYCLES);
        out
    }
}

fn closed_record(mut c: Connection) -> Connection {
    c.state = "closed";
    c.closed = true;
    c.bytes_sent_per_sec = None;
    c.bytes_received_per_sec = None;
    c.tx_queue = 0;
    c.rx_queue = 0;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn conn(local: &str, inode: u64, sent: Option<u64>) -> Connection {
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

    /// A backend without close events.
    fn poll(t: &mut Table, fresh: Vec<Connection>, now: Instant) -> Update {
        t.update(fresh, vec![], false, now)
    }

    #[test]
    fn rates_then_closed_once() {
        let mut t = Table::new(10);
        let t0 = Instant::now();
        let u = poll(
            &mut t,
            vec![
                conn("10.0.0.1:1", 1, Some(100)),
                conn("10.0.0.1:2", 2, None),
            ],
            t0,
        );
        assert_eq!((u.open, u.closed, u.overflow), (2, 0, 0));
        assert_eq!(u.connections[0].bytes_sent_per_sec, None, "first sample");

        let u = poll(
            &mut t,
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

        let u = poll(&mut t, vec![], t0 + Duration::from_secs(4));
        assert_eq!(u.closed, 1);
        assert_eq!(u.connections[0].bytes_sent, Some(1100), "final counters");
        let u = poll(&mut t, vec![], t0 + Duration::from_secs(6));
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
        let u = poll(&mut t, fresh.clone(), now);
        assert_eq!((u.open, u.overflow), (2, 3));
        assert_eq!(t.tracked(), 2);
        // Known connections keep their place.
        let u = poll(&mut t, fresh, now + Duration::from_secs(1));
        assert_eq!(u.connections[0].local.port(), 1);
        assert_eq!((u.open, u.overflow), (2, 3));
    }

    #[test]
    fn close_events_carry_final_counters_and_are_awaited() {
        let mut t = Table::new(10);
        let now = Instant::now();
        let a = conn("10.0.0.1:1", 1, Some(100));
        let b = conn("10.0.0.1:2", 2, Some(100));
        let u = t.update(vec![a.clone(), b.clone()], vec![], true, now);
        assert_eq!(u.open, 2);
        // `a` closed (final counters 150); `b` left its owner but has no close event yet.
        let u = t.update(vec![], vec![conn("10.0.0.1:1", 1, Some(150))], true, now);
        assert_eq!((u.open, u.closed), (0, 1));
        assert_eq!(
            (u.connections[0].bytes_sent, u.connections[0].closed),
            (Some(150), true)
        );
        // A connection shorter than a cycle is reported from its close event alone, and a
        // connection in both lists (closed after the backend looked) only as closed.
        let short = conn("10.0.0.1:3", 3, Some(7));
        let u = t.update(vec![short.clone()], vec![short], true, now);
        assert_eq!((u.open, u.closed), (0, 1));
        // `b` is reported with its last counters once the grace is over, and its close
        // event after that is not a second report.
        let mut reported = 0;
        for _ in 0..CLOSE_GRACE_CYCLES {
            reported += t.update(vec![], vec![], true, now).closed;
        }
        assert_eq!(reported, 1);
        let u = t.update(vec![], vec![b], true, now);
        assert_eq!(u.closed, 0, "reported once");
        assert_eq!(t.tracked(), 0);
    }
}
