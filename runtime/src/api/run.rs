//! POST /run/{name}: a synchronous invocation under FaaS Supervisor's rules.
//!
//! Status codes: 200 with the supervisor's body when the module succeeds; 500 when it exits
//! non-zero or traps, 504 when it runs past its timeout (body: the error line, then the module's
//! output; header `x-oscar-wasm-outcome`); 400 for a body the rules refuse; 404 for an unknown
//! service; 503 when the server is saturated.

use super::auth::Invocation;
use super::body::Body;
use super::{ApiError, AppState};
use crate::invoke::{Exit, Input, Request};
use crate::protocol::headers;
use crate::supervisor::{self, LogLevel};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub fn routes() -> Router<AppState> {
    Router::new().route("/run/{name}", post(run))
}

async fn run(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Invocation(deployed): Invocation,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let service = name;
    let input: Input = match super::trigger::classify(&app, &deployed, &body)? {
        super::trigger::Body::Ignored(message) => {
            return Ok((StatusCode::OK, message).into_response());
        }
        super::trigger::Body::Event(found) => {
            let (event, provider) = *found;
            let (input, _) = app
                .storage
                .stage(&provider, &event)
                .await
                .map_err(|e| ApiError::Storage(e.to_string()))?;
            input
        }
        super::trigger::Body::Plain(input) => Input::Body(input),
    };
    let level = deployed.service.spec.log_level;
    // The invocation takes `deployed`; a second handle keeps its storage spec for the uploads.
    let service_handle = deployed.clone();
    let storage = &service_handle.service.spec.storage;
    let started = crate::jobs::record::now_ms();
    let request = Request::sync();
    let request_id = request.id.clone();
    let completed = app.executor.run(deployed, input, request).await?;
    // Outputs go to the service's output buckets before the answer, as in OSCAR.
    let delivered = crate::delivery::to_buckets(&app.storage, storage, &completed).await;
    if let Some(failure) = delivered.failure {
        return Err(ApiError::Storage(failure));
    }

    let status = match &completed.exit {
        Exit::Success => StatusCode::OK,
        Exit::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let outcome = completed.exit.header_value();
    // What the body holds, for clients that turn it back into files (OSCAR's own clients
    // ignore these headers): `file` (with its name), `zip` or `logs`.
    let mut output_kind = None;
    let mut output_name = None;
    let body = if status.is_success() {
        if let [only] = completed.files.as_slice() {
            output_name = Some(only.path.clone());
        }
        let response =
            supervisor::sync_response(completed.files, &completed.log, level, &completed.output)
                .map_err(|e| {
                    ApiError::Invoke(crate::invoke::InvokeError::Host(format!(
                        "packing outputs: {e}"
                    )))
                })?;
        output_kind = Some(match &response {
            supervisor::SyncResponse::File(_) => "file",
            supervisor::SyncResponse::Zip(_) => "zip",
            supervisor::SyncResponse::Logs(_) => "logs",
        });
        response.into_body()
    } else {
        // Kept for GET /system/logs, so that a failed call can be debugged later.
        let (app2, name) = (app.clone(), service.clone());
        let (log, output) = (completed.log.clone(), completed.output.clone());
        let label = completed.exit.outcome();
        tokio::task::spawn_blocking(move || {
            app2.jobs
                .record_failed_run(&name, &log, &output, label, started)
        });
        // A failure always says why, whatever the service's log level.
        supervisor::render_logs(
            &completed.log,
            level.min(LogLevel::Error),
            &completed.output,
        )
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&outcome) {
        response.headers_mut().insert(headers::OUTCOME, value);
    }
    if let Some(kind) = output_kind {
        response
            .headers_mut()
            .insert(headers::OUTPUT_KIND, HeaderValue::from_static(kind));
    }
    // Names that are not valid header text (non-ASCII) are left out; the kind still says "file".
    if let Some(Ok(value)) = output_name.as_deref().map(HeaderValue::from_str) {
        response.headers_mut().insert(headers::OUTPUT_NAME, value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(headers::REQUEST_ID, value);
    }
    Ok(response)
}
