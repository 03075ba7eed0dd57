//! The routes a pod's supervisor calls for its invocation, each with the invocation's one-time
//! token as `Authorization: Bearer`: the input file, the script, and the result.

use super::{ApiError, AppState};
use crate::app::Invocations;
use crate::kube::PodResult;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/kube/invocations/{id}/input", get(input))
        .route("/kube/invocations/{id}/script", get(script))
        .route("/kube/invocations/{id}/result", post(result))
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string()
}

fn unknown() -> ApiError {
    // The same answer for an unknown invocation and a wrong token: nothing to probe.
    ApiError::NotFound("no such invocation, or a wrong token".into())
}

async fn input(
    State(invocations): State<Invocations>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kube = invocations.kube.as_ref().ok_or_else(unknown)?;
    let input = kube.input(&id, &bearer(&headers)).ok_or_else(unknown)?;
    let mut response = (StatusCode::OK, input.bytes).into_response();
    if let Ok(value) = HeaderValue::from_str(&input.name) {
        response
            .headers_mut()
            .insert(crate::protocol::headers::INPUT_NAME, value);
    }
    Ok(response)
}

async fn script(
    State(invocations): State<Invocations>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<String, ApiError> {
    let kube = invocations.kube.as_ref().ok_or_else(unknown)?;
    kube.script(&id, &bearer(&headers)).ok_or_else(unknown)
}

async fn result(
    State(invocations): State<Invocations>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let kube = invocations.kube.as_ref().ok_or_else(unknown)?;
    let token = bearer(request.headers());
    // The token first: nobody else's body is read.
    if !kube.expects_result(&id, &token) {
        return Err(unknown());
    }
    let body = super::body::read(request.into_body(), &invocations.requests).await?;
    let result: PodResult = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid result: {e}")))?;
    if kube.deliver(&id, &token, result) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown())
    }
}
