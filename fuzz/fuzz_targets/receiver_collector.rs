#![no_main]
//! A process agent body as the capture receiver takes it (see `sts_fuzz::receiver`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sts_fuzz::receiver::collector_body(data));
