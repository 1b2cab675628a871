//! The pipelines, each building its messages.

pub mod process_agent;
