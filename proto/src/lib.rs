//! gRPC contracts shared by node-daemon and trace-sidecar.

// Shipped code handles its errors; tests may unwrap (clippy.toml).
#![deny(clippy::unwrap_used)]
// Every hand-written public item says what it is; the generated code is exempt.
#![deny(missing_docs)]

/// `sts.daemon.v1`: the daemon's Status service and the sidecar relay.
pub mod daemon {
    #[allow(missing_docs)]
    pub mod v1 {
        tonic::include_proto!("sts.daemon.v1");
    }
}

/// What the StackState receiver takes: the trace payload of `<STS_APM_URL>/api/v0.2/traces`.
pub mod receiver {
    #[allow(missing_docs)]
    pub mod v1 {
        tonic::include_proto!("sts.receiver.v1");
    }
}

/// What the StackState receiver takes from the process agent: the messages of
/// `<STS_PROCESS_AGENT_URL>/api/v1/collector` and `/api/v1/connections`.
pub mod process_agent {
    #[allow(missing_docs)]
    pub mod v1 {
        tonic::include_proto!("sts.processagent.v1");
    }
}

/// The host's default gateway, where a sidecar finds the daemon and the daemon the ECS agent.
pub mod route;

/// Pieces of the hand-written gRPC services.
pub mod grpc;

/// The log set-up both binaries share.
pub mod logging;

/// Secrets kept in files, read the same way by both binaries.
pub mod secret_file;

/// Protobuf varints, for the hand-written readers of both binaries.
pub mod varint;

/// Encoded `FileDescriptorSet` of every service here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sts_descriptor.bin"));

/// The longest head of `text` of at most `max` bytes that ends on a character boundary.
pub fn utf8_head(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An error and its sources joined by `: ` (tonic's and hyper's own messages are often
/// only "transport error" or "client error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn utf8_head_never_cuts_a_character() {
        assert_eq!(super::utf8_head("héllo", 2), "h");
        assert_eq!(super::utf8_head("héllo", 3), "hé");
        assert_eq!(super::utf8_head("abc", 10), "abc");
    }
}
