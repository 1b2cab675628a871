//! The capture receiver's decoding of the process agent's messages (`/api/v1/collector`
//! bodies: envelope, zstd, protobuf; `integration_tests::receiver`).
//!
//! A body decodes to a message of its envelope's type or to a reason, never a panic; what
//! the receiver keeps of it (the whole body, the decompressed message or why there is none)
//! survives the JSON that out-of-process tests read it as.

use integration_tests::receiver::envelope::{
    ENCODING_PROTOBUF, TYPE_COLLECTOR_COMMANDS, TYPE_COLLECTOR_CONNECTIONS, TYPE_COLLECTOR_PROC,
};
use integration_tests::receiver::{
    decode, CollectorMessage, DecodeError, Decoded, Endpoint, ProcessAgentMessage,
};

pub fn collector_body(body: &[u8]) {
    let message = match decode(Endpoint::Collector, None, body) {
        Ok(Decoded::Collector(message)) => message,
        Ok(other) => panic!("a collector body decoded as {other:?}"),
        Err(e) => {
            assert!(matches!(e, DecodeError::Envelope(_)), "{e}");
            return;
        }
    };
    assert_eq!(message.raw, body, "the whole body is kept");
    let header_len = message.envelope.header_len;
    assert!(header_len <= body.len());
    assert_eq!(message.message.is_some(), message.message_error.is_none());
    if message.envelope.encoding == ENCODING_PROTOBUF {
        assert_eq!(message.message.as_deref(), Some(&body[header_len..]));
    }
    let json = serde_json::to_string(&message).expect("JSON of a captured message");
    let read: CollectorMessage = serde_json::from_str(&json).expect("read back");
    assert_eq!(read, message, "JSON round trip");
    match ProcessAgentMessage::decode(&message) {
        Ok(decoded) => {
            let msg_type = match decoded {
                ProcessAgentMessage::Proc(_) => TYPE_COLLECTOR_PROC,
                ProcessAgentMessage::Commands(_) => TYPE_COLLECTOR_COMMANDS,
                ProcessAgentMessage::Connections(_) => TYPE_COLLECTOR_CONNECTIONS,
            };
            assert_eq!(msg_type, message.envelope.msg_type);
        }
        Err(reason) => assert!(!reason.is_empty(), "an error says why"),
    }
}
