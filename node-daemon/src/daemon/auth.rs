//! The read API's bearer token: with `STS_GRPC_TOKEN` set, every call to the status
//! service and reflection must carry `authorization: Bearer <token>`.

use tonic::{Request, Status};

use crate::config::ApiKey;

/// Checks each call's `authorization` metadata; lets every call through without a token.
#[derive(Clone)]
pub(crate) struct BearerAuth {
    token: Option<ApiKey>,
}

impl BearerAuth {
    pub(crate) fn new(token: Option<ApiKey>) -> Self {
        Self { token }
    }

    fn allows(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        header
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .is_some_and(|presented| token.matches(presented))
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.allows(header) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token: send `authorization: Bearer <STS_GRPC_TOKEN>`",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let auth = BearerAuth::new(Some(ApiKey::new("s3cret")));
        assert!(auth.allows(Some(b"Bearer s3cret")));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret ",
            b"bearer s3cret",
            b"s3cret",
        ] {
            assert!(!auth.allows(Some(wrong)), "{wrong:?}");
        }
        assert!(!auth.allows(None));
        assert!(BearerAuth::new(None).allows(None));
    }
}
