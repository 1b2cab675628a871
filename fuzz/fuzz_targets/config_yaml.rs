#![no_main]
//! A YAML configuration file of the daemon (see `sts_fuzz::config`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sts_fuzz::config::from_yaml(data));
