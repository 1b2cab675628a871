#![no_main]
//! An OTLP/HTTP body after a byte choosing protobuf or JSON, decoded plain and gzip'd, and
//! transcoded (see `sts_fuzz::otlp`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sts_fuzz::otlp::decode_and_transcode(data));
