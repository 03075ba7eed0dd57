//! OSCAR's execution log over HTTP: every invocation request (POST /run, POST /job) recorded
//! once answered ([`crate::executions`] keeps them), served by GET /system/logs as
//! `{"logs": [...]}` in OSCAR's shape (the dashboard charts it).

use crate::app::Invocations;
use crate::executions::Recorded;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Middleware of the invocation routes: records each request once it is answered.
pub async fn record(
    State(invocations): State<Invocations>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let user = match super::auth::presented(request.headers()) {
        crate::auth::Presented::Basic { user, .. } => String::from_utf8_lossy(&user).into_owned(),
        _ => String::new(),
    };
    let response = next.run(request).await;
    invocations.executions.record(Recorded {
        at_ms: crate::clock::now_ms(),
        status: response.status().as_u16(),
        latency: started.elapsed(),
        method,
        path,
        user,
    });
    response
}

/// GET /system/logs.
pub async fn list(
    State(invocations): State<Invocations>,
    caller: crate::access::Caller,
) -> Result<axum::Json<serde_json::Value>, super::ApiError> {
    super::auth::admin_only(&caller, "read the execution log")?;
    Ok(axum::Json(
        serde_json::json!({"logs": invocations.executions.all()}),
    ))
}
