//! Queue behaviour: order, reopen, cap, damage and torn writes (the `kill -9` test is in
//! `tests_crash.rs`).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::{decode_header, HEADER_LEN, MAX_RECORD_BYTES};
use super::segment::file_name;
use super::*;

/// Small segments; syncs out of the way (the default policy is exercised by
/// `default_options_sync_every_push_and_cap_records_at_64_mib`).
pub(super) fn opts(max_bytes: u64, segment_bytes: u64) -> QueueOptions {
    QueueOptions {
        max_bytes,
        segment_bytes,
        sync: SyncPolicy::Interval(Duration::from_secs(3600)),
    }
}

/// Deterministic content: the sequence number, then bytes derived from it.
pub(super) fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while p.len() < len.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p.truncate(len.max(8));
    p
}

pub(super) fn seq_of(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().unwrap())
}

/// Peeks and acknowledges everything; the sequence numbers read.
fn drain(q: &mut DiskQueue) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some(r) = q.peek().unwrap() {
        let seq = seq_of(&r.payload);
        assert_eq!(r.payload, payload(seq, r.payload.len()), "content of {seq}");
        assert_eq!(r.id.len(), r.payload.len());
        assert!(q.ack(r.id).unwrap());
        seqs.push(seq);
    }
    assert_eq!((q.len(), q.bytes()), (0, 0));
    seqs
}

/// The unacknowledged payloads, read straight from the files (checksums asserted),
/// without moving the cursor.
pub(super) fn pending(q: &DiskQueue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for seg in &q.segments {
        let file = File::open(q.segment_path(seg.id)).unwrap();
        let mut at = if seg.id == q.cursor.segment {
            q.cursor.offset
        } else {
            0
        };
        while at < seg.end {
            let mut h = [0u8; HEADER_LEN];
            file.read_exact_at(&mut h, at).unwrap();
            let header = decode_header(&h).unwrap_or_else(|| panic!("header at {at}"));
            let mut p = vec![0u8; header.len as usize];
            file.read_exact_at(&mut p, at + HEADER_LEN as u64).unwrap();
            assert_eq!(crc32fast::hash(&p), header.crc, "checksum at {at}");
            out.push(p);
            at += header.record_len();
        }
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn disk_usage(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn scan_pending_sees_the_unacknowledged_records_in_order_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..40 {
        q.push(&payload(i, 8 + (i as usize * 53) % 600)).unwrap();
    }
    for _ in 0..15 {
        let r = q.peek().unwrap().unwrap();
        assert!(q.ack(r.id).unwrap());
    }
    let scan = |q: &DiskQueue, prefix: usize| {
        let mut seen = Vec::new();
        q.scan_pending(prefix, |p| seen.push(p.to_vec())).unwrap();
        seen
    };
    let whole = scan(&q, usize::MAX);
    assert_eq!(whole, pending(&q));
    assert_eq!(
        whole.iter().map(|p| seq_of(p)).collect::<Vec<_>>(),
        (15..40).collect::<Vec<_>>()
    );
    assert!(scan(&q, 8).iter().all(|p| p.len() == 8));
    assert_eq!(q.len(), 25);
    assert_eq!(seq_of(&q.peek().unwrap().unwrap().payload), 15);
}

#[test]
fn push_peek_ack_keep_order_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    let lens: Vec<usize> = (0..300).map(|i| 8 + (i * 37) % 700).collect();
    for (i, &len) in lens.iter().enumerate() {
        q.push(&payload(i as u64, len)).unwrap();
    }
    let record_bytes: u64 = lens.iter().map(|&l| (HEADER_LEN + l) as u64).sum();
    assert_eq!(q.len(), 300);
    assert_eq!(q.bytes(), record_bytes);
    assert_eq!(q.stats().disk_bytes, record_bytes);
    assert_eq!(disk_usage(dir.path()), record_bytes);
    let files = segment_files(dir.path());
    assert!(files.len() > 20, "{} segments", files.len());
    for f in &files {
        assert!(fs::metadata(f).unwrap().len() <= 4096, "{}", f.display());
    }

    let first = q.peek().unwrap().unwrap();
    assert_eq!(q.peek().unwrap().unwrap(), first, "peek leaves the record");
    for (i, &len) in lens.iter().enumerate() {
        let r = q.peek().unwrap().unwrap();
        assert_eq!(r.payload, payload(i as u64, len));
        assert!(q.ack(r.id).unwrap());
        assert_eq!(q.len(), 300 - i as u64 - 1);
    }
    assert_eq!(q.peek().unwrap(), None);
    assert_eq!((q.len(), q.bytes(), q.dropped_records()), (0, 0, 0));
    // Consumed segments are deleted: only the one being written is left.
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(q.stats().disk_bytes, disk_usage(dir.path()));
}

#[test]
fn reopen_keeps_unacknowledged_records_and_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..100 {
        q.push(&payload(i, 300)).unwrap();
    }
    for _ in 0..30 {
        let r = q.peek().unwrap().unwrap();
        q.ack(r.id).unwrap();
    }
    drop(q);

    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    assert_eq!(q.len(), 70);
    assert_eq!(q.bytes(), 70 * (HEADER_LEN as u64 + 300));
    assert_eq!(seq_of(&q.peek().unwrap().unwrap().payload), 30);
    for i in 100..110 {
        q.push(&payload(i, 300)).unwrap();
    }
    drop(q);

    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    assert_eq!(drain(&mut q), (30..110).collect::<Vec<_>>());
    assert_eq!(q.dropped_records(), 0);
    drop(q);
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    assert_eq!(q.peek().unwrap(), None, "acknowledged records stay gone");
}

#[test]
fn cap_drops_the_oldest_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 << 10;
    let mut q = DiskQueue::open_with(dir.path(), opts(cap, 16 << 10)).unwrap();
    let rec = (HEADER_LEN + 1000) as u64;
    for i in 0..200u64 {
        q.push(&payload(i, 1000)).unwrap();
        let s = q.stats();
        assert!(
            s.disk_bytes <= cap,
            "{} bytes on disk after {i}",
            s.disk_bytes
        );
        assert_eq!(s.records + s.dropped_records, i + 1);
        assert_eq!(s.dropped_bytes, s.dropped_records * rec);
        assert_eq!(s.bytes, s.records * rec);
    }
    let s = q.stats();
    assert!(s.dropped_records > 100, "{s:?}");
    assert!(
        s.records * rec > cap / 2,
        "keeps more than half the cap: {s:?}"
    );
    assert_eq!(disk_usage(dir.path()), s.disk_bytes);
    // The newest survive, in order, without a gap.
    assert_eq!(drain(&mut q), (s.dropped_records..200).collect::<Vec<_>>());
}

#[test]
fn ack_of_a_record_dropped_since_peek_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(64 << 10, 16 << 10)).unwrap();
    for i in 0..10 {
        q.push(&payload(i, 1000)).unwrap();
    }
    let old = q.peek().unwrap().unwrap();
    for i in 10..200 {
        q.push(&payload(i, 1000)).unwrap();
    }
    assert!(q.dropped_records() > 0);
    let len = q.len();
    assert!(!q.ack(old.id).unwrap());
    assert_eq!(q.len(), len);
    let head = q.peek().unwrap().unwrap();
    assert_eq!(seq_of(&head.payload), q.dropped_records());
    assert!(q.ack(head.id).unwrap());
    assert!(!q.ack(head.id).unwrap(), "a second ack is a no-op");
    assert_eq!(q.len(), len - 1);
}

#[test]
fn ack_of_a_record_that_is_not_the_oldest_is_refused() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = DiskQueue::open_with(a_dir.path(), opts(1 << 20, 4096)).unwrap();
    let mut b = DiskQueue::open_with(b_dir.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..3 {
        a.push(&payload(i, 100)).unwrap();
        b.push(&payload(i, 100)).unwrap();
    }
    let first = a.peek().unwrap().unwrap();
    a.ack(first.id).unwrap();
    let second = a.peek().unwrap().unwrap();
    let err = b.ack(second.id).unwrap_err();
    assert!(matches!(err, QueueError::OutOfOrder { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot acknowledge the record at {}: it is not the oldest one",
            second.id
        )
    );
    assert_eq!(b.len(), 3);
    assert_eq!(drain(&mut b), vec![0, 1, 2]);
}

/// Builds a one-segment queue file of `n` records, and one more record; returns the
/// file bytes with the `n` records and with all `n + 1`.
fn segment_bytes(n: u64, last_len: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    for i in 0..n {
        q.push(&payload(i, 50 + i as usize * 13)).unwrap();
    }
    let path = dir.path().join(file_name(1));
    let base = fs::read(&path).unwrap();
    q.push(&payload(n, last_len)).unwrap();
    (base, fs::read(&path).unwrap())
}

/// A fresh queue directory holding `bytes` as its only segment (no cursor file).
fn queue_with_segment(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(file_name(1)), bytes).unwrap();
    dir
}

/// After recovery the queue takes new records after the complete ones.
fn assert_recovered(dir: &Path, complete: u64, cut: u64) {
    let mut q = DiskQueue::open_with(dir, opts(1 << 20, 1 << 18)).unwrap();
    assert_eq!(q.len(), complete);
    assert_eq!((q.dropped_records(), q.dropped_bytes()), (1, cut));
    q.push(&payload(complete, 77)).unwrap();
    drop(q);
    let mut q = DiskQueue::open_with(dir, opts(1 << 20, 1 << 18)).unwrap();
    assert_eq!(q.dropped_records(), 0, "the cut was made once");
    assert_eq!(drain(&mut q), (0..=complete).collect::<Vec<_>>());
}

#[test]
fn torn_last_record_is_cut_off_at_any_offset() {
    let (base, full) = segment_bytes(20, 3000);
    let record = full.len() - base.len();
    // Every cut in the header, and a spread of cuts in the payload.
    let cuts = (1..=HEADER_LEN + 1)
        .chain((0..40).map(|k| HEADER_LEN + 1 + k * 7919 % (record - HEADER_LEN - 1)));
    for cut in cuts {
        let dir = queue_with_segment(&full[..base.len() + cut]);
        assert_recovered(dir.path(), 20, cut as u64);
        let file = dir.path().join(file_name(1));
        assert!(fs::metadata(file).unwrap().len() > base.len() as u64);
    }
    // A whole record torn off is no damage at all.
    let dir = queue_with_segment(&base);
    let q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    assert_eq!((q.len(), q.dropped_records()), (20, 0));
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let (_, full) = segment_bytes(20, 500);
    let mut lying_header = super::record::encode_header(&[&[9u8; 4000]]).to_vec();
    lying_header.extend_from_slice(&[9u8; 100]);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0x5a],
        vec![0; 4096],
        payload(99, 15),
        payload(99, 16),
        payload(99, 5000),
        b"SQR1".iter().copied().chain(payload(7, 60)).collect(),
        lying_header,
    ];
    for g in garbage {
        let mut bytes = full.clone();
        bytes.extend_from_slice(&g);
        let dir = queue_with_segment(&bytes);
        assert_recovered(dir.path(), 21, g.len() as u64);
    }
}

#[test]
fn damaged_payload_is_caught_by_its_checksum_and_only_that_record_is_lost() {
    // Newest segment (verified at open) and a sealed one (verified when read).
    for segment in [1u64 << 18, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, segment)).unwrap();
        for i in 0..8 {
            q.push(&payload(i, 1000)).unwrap();
        }
        drop(q);
        let rec = (HEADER_LEN + 1000) as u64;
        flip(
            &dir.path().join(file_name(1)),
            2 * rec + HEADER_LEN as u64 + 500,
        );
        let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, segment)).unwrap();
        assert_eq!(q.len(), 8, "found when read");
        assert_eq!(drain(&mut q), vec![0, 1, 3, 4, 5, 6, 7]);
        assert_eq!((q.dropped_records(), q.dropped_bytes()), (1, rec));
    }
}

#[test]
fn damaged_header_loses_the_rest_of_its_segment_only() {
    let rec = (HEADER_LEN + 1000) as u64;
    // Segments of 4 records: 0..=3 and 4..=7.
    let setup = || {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
        for i in 0..8 {
            q.push(&payload(i, 1000)).unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 2);
        (dir, q)
    };

    // Damaged on disk before open: the scan cannot count what follows.
    let (dir, q) = setup();
    drop(q);
    flip(&dir.path().join(file_name(1)), rec + 5);
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    assert_eq!((q.dropped_records(), q.dropped_bytes()), (1, 3 * rec));
    assert_eq!(q.len(), 5);
    assert_eq!(drain(&mut q), vec![0, 4, 5, 6, 7]);

    // Damaged while open: the records counted at open are counted as dropped.
    let (dir, mut q) = setup();
    flip(&dir.path().join(file_name(1)), rec + 2);
    assert_eq!(drain(&mut q), vec![0, 4, 5, 6, 7]);
    assert_eq!((q.dropped_records(), q.dropped_bytes()), (3, 3 * rec));
}

#[test]
fn record_over_the_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    let limit = (1 << 18) - HEADER_LEN;
    assert_eq!(q.max_record_bytes(), limit);
    let err = q.push(&vec![1u8; limit + 1]).unwrap_err();
    assert!(
        matches!(err, QueueError::TooLarge { len, limit: l } if len == limit + 1 && l == limit)
    );
    assert_eq!(
        err.to_string(),
        format!(
            "record of {} bytes refused: the limit is {limit} bytes",
            limit + 1
        )
    );
    assert_eq!((q.len(), q.stats().disk_bytes), (0, 0));
    let big = payload(5, limit);
    q.push(&big).unwrap();
    assert_eq!(q.peek().unwrap().unwrap().payload, big);
}

#[test]
fn a_record_of_parts_is_their_concatenation_and_the_limit_counts_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    let limit = q.max_record_bytes();
    let (head, body) = (payload(1, 40), payload(2, 3000));
    q.push_parts(&[&head, &[], &body]).unwrap();
    let err = q.push_parts(&[&body, &vec![0u8; limit]]).unwrap_err();
    assert!(matches!(err, QueueError::TooLarge { len, .. } if len == limit + body.len()));
    assert_eq!(q.len(), 1);
    drop(q);
    // Reopened: the record's checksum covers the parts as one payload.
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    assert_eq!(q.peek().unwrap().unwrap().payload, [head, body].concat());
    assert_eq!(q.stats().dropped_records, 0);
}

#[test]
fn default_options_sync_every_push_and_cap_records_at_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(q.opts.sync, SyncPolicy::EveryPush);
    assert_eq!(q.opts.segment_bytes, 8 << 20);
    assert_eq!(q.max_record_bytes(), MAX_RECORD_BYTES);
    assert_eq!(MAX_RECORD_BYTES, 64 << 20);
    let err = q.push(&vec![0u8; MAX_RECORD_BYTES + 1]).unwrap_err();
    assert!(matches!(err, QueueError::TooLarge { .. }), "{err}");
    for i in 0..3 {
        q.push(&payload(i, 4096)).unwrap();
    }
    drop(q);
    let mut q = DiskQueue::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    assert_eq!(drain(&mut q), vec![0, 1, 2]);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    let err = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap_err();
    assert!(matches!(err, QueueError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(q);
    DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
}

#[test]
fn cap_below_the_minimum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = DiskQueue::open(dir.path(), MIN_MAX_BYTES - 1).unwrap_err();
    assert!(matches!(err, QueueError::InvalidOptions { .. }), "{err:?}");
    assert!(
        err.to_string().contains("below the minimum of 65536"),
        "{err}"
    );
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn damaged_cursor_delivers_the_oldest_segment_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    for i in 0..10 {
        q.push(&payload(i, 200)).unwrap();
    }
    for _ in 0..4 {
        let r = q.peek().unwrap().unwrap();
        q.ack(r.id).unwrap();
    }
    drop(q);
    fs::write(dir.path().join("cursor"), [0xffu8; 64]).unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 1 << 18)).unwrap();
    assert_eq!(q.len(), 10);
    assert_eq!(drain(&mut q), (0..10).collect::<Vec<_>>());
}

#[test]
fn segments_before_the_cursor_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..12 {
        q.push(&payload(i, 1000)).unwrap();
    }
    let first = dir.path().join(file_name(1));
    let kept = fs::read(&first).unwrap();
    for _ in 0..5 {
        let r = q.peek().unwrap().unwrap();
        q.ack(r.id).unwrap();
    }
    assert!(!first.exists());
    drop(q);
    // As if a crash came between moving the cursor and deleting the segment.
    fs::write(&first, kept).unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    assert!(!first.exists());
    assert_eq!(q.len(), 7);
    assert_eq!(drain(&mut q), (5..12).collect::<Vec<_>>());
}

#[test]
fn lowering_the_cap_drops_the_oldest_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 16 << 10)).unwrap();
    for i in 0..200 {
        q.push(&payload(i, 1000)).unwrap();
    }
    drop(q);
    let mut q = DiskQueue::open_with(dir.path(), opts(64 << 10, 16 << 10)).unwrap();
    let s = q.stats();
    assert!(s.disk_bytes <= 64 << 10, "{s:?}");
    assert_eq!(s.records + s.dropped_records, 200);
    assert_eq!(drain(&mut q), (s.dropped_records..200).collect::<Vec<_>>());
}

#[test]
fn pending_reads_without_consuming() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = DiskQueue::open_with(dir.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..20 {
        q.push(&payload(i, 500)).unwrap();
    }
    let r = q.peek().unwrap().unwrap();
    q.ack(r.id).unwrap();
    let seqs: Vec<u64> = pending(&q).iter().map(|p| seq_of(p)).collect();
    assert_eq!(seqs, (1..20).collect::<Vec<_>>());
    assert_eq!(q.len(), 19);
}
