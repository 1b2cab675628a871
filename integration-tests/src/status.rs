//! Reading a daemon's `status --json` answer: its collector entries (the forwarding sinks
//! are entries too, named `forward.<pipeline>`).

use serde_json::Value;

/// Every entry of `collectors`; none when the answer has no such list.
pub fn collectors(status: &Value) -> &[Value] {
    status["collectors"].as_array().map_or(&[], Vec::as_slice)
}

/// The entry named `name`.
pub fn collector<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    collectors(status).iter().find(|c| c["name"] == name)
}
