use std::process::ExitCode;
use std::time::Duration;

use node_daemon::status::print;
use sts_proto::daemon::v1::GetStatusRequest;

use super::daemon_client;

/// Exit codes: 0 healthy, 1 unhealthy, 2 unreachable.
pub(crate) fn status(addr: &str, json: bool, timeout: Duration) -> ExitCode {
    let response = daemon_client::call(addr, timeout, |mut client| async move {
        client
            .get_status(GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
    });
    match response {
        Ok(status) => {
            if json {
                println!("{}", print::to_json(&status));
            } else {
                print!("{}", print::to_text(&status));
            }
            if status.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
