#![no_main]
//! The daemon's environment, one `KEY=VALUE` a line (see `sts_fuzz::config`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sts_fuzz::config::from_env(data));
