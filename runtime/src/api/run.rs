//! POST /run/{name}: a synchronous invocation under FaaS Supervisor's rules.
//!
//! Status codes: 200 with FaaS Supervisor's body when the module succeeds; 500 when it exits
//! non-zero or traps, 504 when it runs past its timeout (body: the error line, then the module's
//! output; header `x-oscar-wasm-outcome`); 400 for a body the rules refuse; 404 for an unknown
//! service; 503 when the server is saturated.

use super::auth::Invocation;
use super::body::Body;
use super::request_span::RequestId;
use super::{ApiError, AppState};
use crate::executor::invocation::{Completed, Exit, Input, InvokeError, Request};
use crate::faas::{self, LogLevel};
use crate::protocol::headers;
use axum::Extension;
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
    Invocation(deployed, user): Invocation,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    // A wasm image's tag is checked in the background at most every --image-refresh; this call
    // runs the version deployed now.
    if deployed.follows_tag {
        let (deployer, name) = (app.services.deployer.clone(), name.clone());
        tokio::spawn(async move {
            if let Err(e) = deployer.refresh_image(&name, false).await {
                tracing::warn!(service = %name, error = %e, "the service's image could not be checked");
            }
        });
    }
    // The bucket a storage event came from: a private bucket sends the outputs back to it.
    let mut from_bucket = None;
    let input = match super::trigger::classify(&app, &deployed, &body)? {
        super::trigger::Body::Ignored(message) => {
            return Ok((StatusCode::OK, message).into_response());
        }
        super::trigger::Body::Event(found) => {
            let (event, provider) = *found;
            from_bucket = Some(event.bucket.clone());
            let (input, _) = app
                .buckets
                .storage
                .stage(&provider, &event)
                .await
                .map_err(|e| ApiError::Storage(e.to_string()))?;
            input
        }
        super::trigger::Body::Plain(input) => Input::Body(input),
    };
    // The invocation takes `deployed`; a second handle keeps its definition for what follows.
    let service = deployed.clone();
    let spec = &service.service.spec;
    let started = crate::clock::now_ms();
    let request = Request::sync(request_id, user);
    let storage_spec = match &from_bucket {
        Some(bucket) => spec.storage.for_bucket(bucket),
        None => std::borrow::Cow::Borrowed(&spec.storage),
    };
    let settled = crate::pipeline::invoke(
        &*app.invocations.executor,
        &app.buckets.storage,
        deployed,
        input,
        request,
        &storage_spec,
    )
    .await?;
    // Outputs went to the service's output buckets before the answer, as in OSCAR.
    if let Some(failure) = settled.delivered.failure {
        return Err(ApiError::Storage(failure));
    }
    let completed = settled.completed;
    if completed.exit == Exit::Success {
        success(completed, spec.log_level)
    } else {
        keep_failure(&app, name, &completed, started);
        Ok(failure(&completed, spec.log_level))
    }
}

/// 200 with FaaS Supervisor's body; the headers say what it holds, for clients that turn it
/// back into files (OSCAR's own clients ignore them): `file` (with its name), `zip` or `logs`.
fn success(completed: Completed, level: LogLevel) -> Result<Response, ApiError> {
    let only = match completed.files.as_slice() {
        [only] => Some(only.path.clone()),
        _ => None,
    };
    let body = faas::sync_response(completed.files, &completed.log, level, &completed.output)
        .map_err(|e| ApiError::Invoke(InvokeError::Host(format!("packing outputs: {e}"))))?;
    let kind = match &body {
        faas::SyncResponse::File(_) => "file",
        faas::SyncResponse::Zip(_) => "zip",
        faas::SyncResponse::Logs(_) => "logs",
    };
    let mut response = text(StatusCode::OK, &completed.exit, body.into_body());
    let headers = response.headers_mut();
    headers.insert(headers::OUTPUT_KIND, HeaderValue::from_static(kind));
    // Names that are not valid header text (non-ASCII) are left out; the kind still says "file".
    if let Some(Ok(value)) = only.as_deref().map(HeaderValue::from_str) {
        headers.insert(headers::OUTPUT_NAME, value);
    }
    Ok(response)
}

/// 500 (504 for a timeout) with the log: a failure always says why, whatever the service's
/// log level.
fn failure(completed: &Completed, level: LogLevel) -> Response {
    let status = if completed.exit == Exit::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = faas::render_logs(
        &completed.log,
        level.min(LogLevel::Error),
        &completed.output,
    );
    text(status, &completed.exit, body)
}

/// A plain-text answer with the outcome header.
fn text(status: StatusCode, exit: &Exit, body: Vec<u8>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&exit.header_value()) {
        response.headers_mut().insert(headers::OUTCOME, value);
    }
    response
}

/// Keeps a failed call's log for GET /system/logs, so that it can be debugged later; the
/// answer does not wait for it.
fn keep_failure(app: &AppState, service: String, completed: &Completed, started: u64) {
    let jobs = app.jobs.clone();
    let (log, output) = (completed.log.clone(), completed.output.clone());
    let outcome = completed.exit.outcome();
    tokio::spawn(async move {
        jobs.keep_failed_run(&service, log, output, outcome, started)
            .await
    });
}
