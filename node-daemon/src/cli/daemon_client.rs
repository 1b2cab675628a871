//! Calls to a running daemon's Status service, for `status` and `snapshot --from-daemon`.

use std::future::Future;
use std::time::Duration;

use sts_proto::daemon::v1::status_client::StatusClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use node_daemon::config::{keys, secret, RawValues};

pub(crate) type Client = StatusClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <STS_GRPC_TOKEN>` to each call when a token is set.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The read API's token from STS_GRPC_TOKEN or STS_GRPC_TOKEN_FILE, as the daemon reads it.
fn bearer() -> Result<Bearer, String> {
    let raw = RawValues::load(None, |key| std::env::var(key).ok()).map_err(|e| e.to_string())?;
    let token = secret::from_value_or_file(&raw, "STS_GRPC_TOKEN", "STS_GRPC_TOKEN_FILE")
        .map_err(|e| e.to_string())?;
    let Some(token) = token else {
        return Ok(Bearer(None));
    };
    MetadataValue::try_from(format!("Bearer {}", token.expose()))
        .map(|v| Bearer(Some(v)))
        .map_err(|_| "STS_GRPC_TOKEN: not usable in a header (printable ASCII only)".to_string())
}

/// Connects to `addr` and runs one call; every failure becomes a message naming the address.
pub(crate) fn call<T, F, Fut>(addr: &str, timeout: Duration, call: F) -> Result<T, String>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let bearer = bearer()?;
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
        call(StatusClient::with_interceptor(channel, bearer))
            .await
            .map_err(|e| format!("call to node-daemon at {addr} failed: {}", e.message()))
    })
}

/// The address to query: `--addr`, else STS_GRPC_ADDR with a wildcard host made local.
pub(crate) fn default_addr() -> String {
    let configured = std::env::var("STS_GRPC_ADDR")
        .unwrap_or_else(|_| keys::find("STS_GRPC_ADDR").default_value().into());
    match configured.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        _ => configured,
    }
}
