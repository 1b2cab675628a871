//! Calls to a running daemon's Status service, for `status` and `snapshot --from-daemon`.

use std::future::Future;
use std::time::Duration;

use sts_proto::daemon::v1::status_client::StatusClient;
use tonic::transport::Channel;

/// Connects to `addr` and runs one call; every failure becomes a message naming the address.
pub fn call<T, F, Fut>(addr: &str, timeout: Duration, call: F) -> Result<T, String>
where
    F: FnOnce(StatusClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "node-daemon is not reachable at {addr}: {}",
                sts_proto::error_chain(&e)
            )
        })?;
        call(StatusClient::new(channel))
            .await
            .map_err(|e| format!("call to node-daemon at {addr} failed: {}", e.message()))
    })
}

/// The address to query: `--addr`, else STS_GRPC_ADDR with a wildcard host made local.
pub fn default_addr() -> String {
    let configured = std::env::var("STS_GRPC_ADDR").unwrap_or_else(|_| "127.0.0.1:7182".into());
    match configured.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        _ => configured,
    }
}
