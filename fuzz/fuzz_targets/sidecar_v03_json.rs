#![no_main]
//! A `/v0.3/traces` JSON body, decoded and transcoded (see `sts_fuzz::sidecar`).

use libfuzzer_sys::fuzz_target;
use trace_sidecar::decode::Format;

fuzz_target!(|data: &[u8]| sts_fuzz::sidecar::decode_and_transcode(Format::V03Json, data));
