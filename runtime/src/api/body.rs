//! Request bodies, read only once the caller is known and within a size cap and a deadline.
//!
//! axum's `Bytes` extractor waits for a body as long as the client takes to send it. Here a
//! body must arrive whole within `--body-timeout` (else 408) and be at most `--max-body` bytes
//! (else 413, before reading when Content-Length says so). Handlers that check credentials
//! take their credentials extractor before [`Body`], or read the request with [`read`] after
//! their own check, so that an unauthenticated body is never read.

use super::{ApiError, AppState};
use crate::config::RequestLimits;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;

/// A request body read within the server's limits.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        read(request.into_body(), &app.requests).await.map(Body)
    }
}

/// Reads `body` whole within `limits`.
pub async fn read(body: axum::body::Body, limits: &RequestLimits) -> Result<Bytes, ApiError> {
    let max = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
    // A declared length over the cap is refused before anything is read.
    if http_body::Body::size_hint(&body).lower() > limits.max_body {
        return Err(too_large(limits));
    }
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "the request body did not arrive within {} s",
            limits.body_timeout.as_secs_f64()
        ))),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large(limits)),
        Ok(Err(e)) => Err(ApiError::BadRequest(format!(
            "the request body could not be read: {e}"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn too_large(limits: &RequestLimits) -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is larger than this server's limit of {} bytes (--max-body)",
        limits.max_body
    ))
}

/// Whether reading failed on the size cap (the error is wrapped by axum, so walk its sources).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
