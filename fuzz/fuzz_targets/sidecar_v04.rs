#![no_main]
//! A `/v0.4/traces` msgpack body, decoded and transcoded (see `sts_fuzz::sidecar`).

use libfuzzer_sys::fuzz_target;
use trace_sidecar::decode::Format;

fuzz_target!(|data: &[u8]| sts_fuzz::sidecar::decode_and_transcode(Format::V04, data));
