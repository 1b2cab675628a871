//! Pieces of the hand-written gRPC services of both binaries (the ones that decode their
//! requests themselves instead of through tonic's generated servers).

use tonic::body::BoxBody;
use tonic::codegen::{empty_body, http};
use tonic::Status;

/// The answer to a call of a method the service does not have: gRPC status
/// UNIMPLEMENTED, as tonic's generated servers give it.
pub fn unimplemented() -> http::Response<BoxBody> {
    let mut response = http::Response::new(empty_body());
    let headers = response.headers_mut();
    headers.insert(
        Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn unimplemented_says_so_in_grpc_terms() {
        let response = super::unimplemented();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["grpc-status"], "12");
        assert_eq!(response.headers()["content-type"], "application/grpc");
    }
}
