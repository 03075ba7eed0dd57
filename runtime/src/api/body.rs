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
        read(request.into_body(), &app.invocations.requests)
            .await
            .map(Body)
    }
}

/// A JSON request body (a definition, a bucket, a setting) read within `--max-json-body`:
/// parsed as a tree it costs many times its size, so the smaller cap holds before a byte is
/// read when Content-Length says so, and while reading otherwise (413 either way).
pub struct JsonBody(pub Bytes);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Self::Rejection> {
        let limits = RequestLimits {
            max_body: app
                .invocations
                .requests
                .max_json_body
                .min(app.invocations.requests.max_body),
            ..app.invocations.requests.clone()
        };
        read_within(request.into_body(), &limits, |max| {
            ApiError::TooLarge(format!(
                "a JSON request body is limited to {max} bytes on this server (--max-json-body)"
            ))
        })
        .await
        .map(JsonBody)
    }
}

/// Reads `body` whole within `limits`.
pub async fn read(body: axum::body::Body, limits: &RequestLimits) -> Result<Bytes, ApiError> {
    read_within(body, limits, |_| too_large(limits)).await
}

/// Reads `body` whole within `limits`; `over(max)` says why one is too large.
async fn read_within(
    body: axum::body::Body,
    limits: &RequestLimits,
    over: impl Fn(u64) -> ApiError,
) -> Result<Bytes, ApiError> {
    let max = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
    // A declared length over the cap is refused before anything is read.
    if http_body::Body::size_hint(&body).lower() > limits.max_body {
        return Err(over(limits.max_body));
    }
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "the request body did not arrive within {} s",
            limits.body_timeout.as_secs_f64()
        ))),
        Ok(Err(e)) if is_length_limit(&e) => Err(over(limits.max_body)),
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
