#![no_main]
//! An encoded relay `SpanBatch`, read by the daemon and by prost (see `sts_fuzz::relay`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sts_fuzz::relay::reader_agrees_with_prost(data));
