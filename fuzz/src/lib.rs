//! What the fuzz targets (`fuzz_targets/`) run: one function per target, each feeding one
//! input to a decoder or parser of the project and asserting what must hold of its answer.
//! A failed assertion, like a panic in the code under test, is a crash to libFuzzer.
//!
//! Every target runs with the counting allocator of the trace decoders' tests installed, so
//! that the sidecar targets can measure the peak heap of each decode.

#[path = "../../trace-sidecar/tests/decode_common/alloc.rs"]
pub mod alloc;
#[path = "../../trace-sidecar/tests/decode_common/checks.rs"]
pub mod checks;

pub mod config;
pub mod otlp;
pub mod receiver;
pub mod relay;
pub mod sidecar;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
