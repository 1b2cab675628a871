use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReceiverError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot make the test certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot start the receiver's runtime: {0}")]
    Runtime(std::io::Error),
}
