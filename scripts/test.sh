#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests, then fuzzing.
# Installs what it needs first (scripts/setup.sh). Run as root: the tests read every
# process's /proc entries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the built binaries.
cargo build --workspace --locked
cargo test --workspace --locked
# Coverage-guided fuzzing of the decoders and parsers, a minute a target (docs/FUZZING.md).
scripts/fuzz.sh 60
