//! What the benchmarks and load tests share, kept out of the shipped binaries: the
//! calling thread's CPU time, and the synthetic spans of a Python web app.

pub mod thread_cpu;
pub mod web_spans;

pub use thread_cpu::thread_cpu;
