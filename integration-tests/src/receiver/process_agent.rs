//! The process agent's messages, decoded with the daemon's public schema
//! (`sts_proto::process_agent::v1`) from what the envelope left.

use sts_proto::process_agent::v1 as pb;

use super::captured::{Captured, CollectorMessage};
use super::envelope::{TYPE_COLLECTOR_COMMANDS, TYPE_COLLECTOR_CONNECTIONS, TYPE_COLLECTOR_PROC};

#[derive(Debug, Clone, PartialEq)]
pub enum ProcessAgentMessage {
    Proc(pb::CollectorProc),
    Commands(pb::CollectorCommands),
    Connections(pb::CollectorConnections),
}

impl ProcessAgentMessage {
    /// The message of `c` by its envelope's type.
    pub fn decode(c: &CollectorMessage) -> Result<Self, String> {
        use prost::Message;
        let Some(bytes) = c.message.as_deref() else {
            return Err(c.message_error.clone().unwrap_or_default());
        };
        let e = |e: prost::DecodeError| e.to_string();
        Ok(match c.envelope.msg_type {
            TYPE_COLLECTOR_PROC => Self::Proc(pb::CollectorProc::decode(bytes).map_err(e)?),
            TYPE_COLLECTOR_COMMANDS => {
                Self::Commands(pb::CollectorCommands::decode(bytes).map_err(e)?)
            }
            TYPE_COLLECTOR_CONNECTIONS => {
                Self::Connections(pb::CollectorConnections::decode(bytes).map_err(e)?)
            }
            other => return Err(format!("message type {other} is not one the daemon sends")),
        })
    }

    pub fn proc(&self) -> Option<&pb::CollectorProc> {
        match self {
            Self::Proc(m) => Some(m),
            _ => None,
        }
    }

    pub fn commands(&self) -> Option<&pb::CollectorCommands> {
        match self {
            Self::Commands(m) => Some(m),
            _ => None,
        }
    }

    pub fn connections(&self) -> Option<&pb::CollectorConnections> {
        match self {
            Self::Connections(m) => Some(m),
            _ => None,
        }
    }
}

/// The accepted requests' process agent messages that decode (the others are left out:
/// a test that wants them reads `Captured::collector`).
pub fn accepted(requests: &[Captured]) -> Vec<(Captured, ProcessAgentMessage)> {
    requests
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| {
            let m = ProcessAgentMessage::decode(r.collector()?).ok()?;
            Some((r.clone(), m))
        })
        .collect()
}
