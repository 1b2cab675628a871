//! `kill -9` in the middle of writes: the test re-runs its own binary, filtered to this
//! test, with `CHILD_DIR` set; that child pushes (and acknowledges) numbered records in
//! a loop, reporting each on stdout, until the parent kills it at varying moments of a
//! large push (so that some kills land inside a write).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::tests::{pending, seq_of};
use super::*;

const CHILD_DIR: &str = "STS_QUEUE_TEST_CHILD_DIR";
const CHILD_START: &str = "STS_QUEUE_TEST_CHILD_START";
const ROUNDS: usize = 24;
/// The child keeps about this many records queued, acknowledging the older ones.
const KEEP: u64 = 48;

fn crash_opts() -> QueueOptions {
    QueueOptions {
        max_bytes: 256 << 20,
        segment_bytes: 1 << 20,
        // Rare syncs: the kills land in writes rather than in fdatasync.
        sync: SyncPolicy::Interval(Duration::from_secs(10)),
    }
}

/// Fixed noise the payloads are cut from (cheap to build per record, so that the child
/// spends its time writing).
fn noise() -> Vec<u8> {
    super::tests::payload(0x5eed, 1 << 20)
}

/// Record `seq`: its number, then `len(seq)` bytes of noise from an offset set by `seq`.
/// From a few bytes to 400 KiB, so that a kill can land inside a record's copy.
fn crash_payload(noise: &[u8], seq: u64) -> Vec<u8> {
    let len = match seq % 4 {
        0 => (seq * 7919 % 400_000) as usize,
        1 => (seq * 131 % 2000) as usize,
        _ => (seq * 104_729 % 120_000) as usize,
    };
    let from = (seq * 15_485_863 % (noise.len() as u64 - 400_000)) as usize;
    let mut p = seq.to_le_bytes().to_vec();
    p.extend_from_slice(&noise[from..from + len]);
    p
}

fn run_child(dir: &Path, start: u64) -> ! {
    let noise = noise();
    let mut q = DiskQueue::open_with(dir, crash_opts()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut expect: Option<u64> = None;
    let mut seq = start;
    loop {
        let p = crash_payload(&noise, seq);
        writeln!(out, "pushing {}", p.len()).unwrap();
        out.flush().unwrap();
        q.push(&p).unwrap();
        writeln!(out, "pushed {seq}").unwrap();
        out.flush().unwrap();
        seq += 1;
        while q.len() > KEEP {
            let r = q.peek().unwrap().expect("records queued");
            let got = seq_of(&r.payload);
            assert_eq!(r.payload, crash_payload(&noise, got), "content of {got}");
            if let Some(e) = expect {
                assert_eq!(got, e, "order");
            }
            assert!(q.ack(r.id).unwrap());
            writeln!(out, "acked {got}").unwrap();
            out.flush().unwrap();
            expect = Some(got + 1);
        }
    }
}

enum Event {
    /// About to push a record of this many bytes.
    Pushing(usize),
    Pushed(u64),
    Acked(u64),
}

/// What one child reported before dying.
#[derive(Debug, Default)]
struct Round {
    pushed: Option<u64>,
    acked: Option<u64>,
    pushes: u64,
}

/// Runs a child from `start` and kills it during the push of a large record that comes
/// after `min_pushes` pushes, `at` of the way through the push's expected duration
/// (measured on the previous large pushes: most of it is the checksum, the write is at
/// the end).
fn kill_child_during_push(dir: &Path, start: u64, min_pushes: u64, at: f64) -> Round {
    let test = format!(
        "{}::kill_9_mid_write_loses_no_complete_record",
        module_path!().split_once("::").expect("crate::path").1
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let event = match line.split_once(' ') {
                Some(("pushing", n)) => Event::Pushing(n.parse().unwrap()),
                Some(("pushed", n)) => Event::Pushed(n.parse().unwrap()),
                Some(("acked", n)) => Event::Acked(n.parse().unwrap()),
                _ => continue,
            };
            if tx.send((Instant::now(), event)).is_err() {
                break;
            }
        }
    });
    let mut round = Round::default();
    let note = |round: &mut Round, e: &Event| match *e {
        Event::Pushing(_) => {}
        Event::Pushed(n) => {
            round.pushed = Some(n);
            round.pushes += 1;
        }
        Event::Acked(n) => round.acked = Some(n),
    };
    // Seconds per byte of a large push, and the large push under way.
    let mut per_byte = None::<f64>;
    let mut large = None::<(Instant, usize)>;
    let delay = loop {
        let (when, e) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(got) => got,
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped reporting ({e}): {:?}", child.wait());
            }
        };
        note(&mut round, &e);
        match e {
            Event::Pushing(len) if len >= 100_000 => {
                if let (Some(pb), true) = (per_byte, round.pushes >= min_pushes) {
                    let due = Duration::from_secs_f64(pb * len as f64 * at);
                    break due.saturating_sub(when.elapsed());
                }
                large = Some((when, len));
            }
            Event::Pushed(_) => {
                if round.pushes == 1 {
                    // The child holds the queue: another process cannot open it.
                    let err = DiskQueue::open_with(dir, crash_opts()).unwrap_err();
                    assert!(matches!(err, QueueError::Locked { .. }), "{err}");
                }
                if let Some((t, len)) = large.take() {
                    let pb = (when - t).as_secs_f64() / len as f64;
                    per_byte = Some(per_byte.map_or(pb, |p| 0.7 * p + 0.3 * pb));
                }
            }
            _ => {}
        }
    };
    std::thread::sleep(delay);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child ended by itself (a failed assertion: see its output above)"
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    reader.join().unwrap();
    for (_, e) in rx.try_iter() {
        note(&mut round, &e);
    }
    round
}

#[test]
fn kill_9_mid_write_loses_no_complete_record() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let start = std::env::var(CHILD_START).unwrap().parse().unwrap();
        run_child(Path::new(&dir), start);
    }
    let noise = noise();
    let dir = tempfile::tempdir().unwrap();
    let (mut first, mut last) = (0u64, None::<u64>);
    let mut torn = 0;
    for round in 0..ROUNDS {
        let start = last.map_or(0, |l| l + 1);
        let at = [0.99, 0.96, 0.93, 0.9, 0.85, 0.8, 1.0, 0.5][round % 8];
        let report = kill_child_during_push(dir.path(), start, 60, at);

        let q = DiskQueue::open_with(dir.path(), crash_opts()).unwrap();
        assert!(
            q.dropped_records() <= 1,
            "at most one torn record: {:?}",
            q.stats()
        );
        torn += q.dropped_records();
        let records = pending(&q);
        assert_eq!(q.len(), records.len() as u64);
        assert!(!records.is_empty(), "round {round}: {report:?}");
        let seqs: Vec<u64> = records.iter().map(|p| seq_of(p)).collect();
        for (p, &seq) in records.iter().zip(&seqs) {
            assert!(
                *p == crash_payload(&noise, seq),
                "round {round}: content of {seq}"
            );
        }
        let (lo, hi) = (seqs[0], *seqs.last().unwrap());
        assert_eq!(
            seqs,
            (lo..=hi).collect::<Vec<_>>(),
            "round {round}: contiguous"
        );
        // Every push that returned is there; at most the one in flight besides.
        let pushed = report.pushed.expect("pushes reported");
        assert!(
            hi == pushed || hi == pushed + 1,
            "round {round}: last {hi}, reported {pushed}"
        );
        // No acknowledged record is back; at most the one in flight is gone besides.
        let after = report.acked.map_or(first, |a| a + 1);
        assert!(
            lo == after || lo == after + 1,
            "round {round}: first {lo}, expected {after}"
        );
        first = lo;
        last = Some(hi);
    }
    eprintln!("kill -9: {ROUNDS} rounds, {torn} torn records cut off on reopen");

    let mut q = DiskQueue::open_with(dir.path(), crash_opts()).unwrap();
    let mut expect = first;
    while let Some(r) = q.peek().unwrap() {
        assert_eq!(seq_of(&r.payload), expect);
        q.ack(r.id).unwrap();
        expect += 1;
    }
    assert_eq!(Some(expect - 1), last);
}
