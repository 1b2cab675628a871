use std::process::ExitCode;
use std::time::Duration;

use node_daemon::status::print;
use sts_proto::daemon::v1::status_client::StatusClient;
use sts_proto::daemon::v1::GetStatusRequest;

/// Exit codes: 0 healthy, 1 unhealthy, 2 unreachable.
pub fn status(addr: &str, json: bool, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let response = runtime.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("node-daemon is not reachable at {addr}: {e}"))?;
        StatusClient::new(channel)
            .get_status(GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|e| format!("status call to {addr} failed: {}", e.message()))
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

/// The address to query: `--addr`, else STS_GRPC_ADDR with a wildcard host made local.
pub fn default_addr() -> String {
    let configured = std::env::var("STS_GRPC_ADDR").unwrap_or_else(|_| "127.0.0.1:7182".into());
    match configured.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        _ => configured,
    }
}
