//! POST /job/{name} (asynchronous invocation), OSCAR's /system/logs routes, and the job output
//! routes /system/outputs/{service}/{job}.

use super::names::{JobPath, ServicePath};
use super::{ApiError, AppState};
use crate::clock::rfc3339;
use crate::faas;
use crate::jobs::JobInput;
use crate::jobs::record::Origin;
use crate::protocol::{JobCreated, headers};
use crate::protocol::{JobName, ServiceName};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// POST /job/{name}: open to the service's token (checked in the handler).
pub fn invoke_routes() -> Router<AppState> {
    Router::new().route("/job/{name}", post(submit))
}

/// The administrator's routes.
pub fn system_routes() -> Router<AppState> {
    Router::new()
        .route("/system/logs/{service}", get(list).delete(delete_all))
        .route("/system/logs/{service}/{job}", get(log).delete(delete_one))
        .route("/system/outputs/{service}/{job}", get(outputs))
        .route("/system/outputs/{service}/{job}/{*path}", get(output_file))
}

async fn submit(
    State(app): State<AppState>,
    Path(name): Path<String>,
    super::auth::Invocation(deployed, user): super::auth::Invocation,
    super::body::Body(body): super::body::Body,
) -> Result<Response, ApiError> {
    // An HTTP service has no file-processing side: say so now, not when the job runs.
    if let Err(e @ crate::executor::invocation::InvokeError::WrongKind(_)) =
        app.invocations.executor.check(&deployed)
    {
        return Err(e.into());
    }
    let input = match super::trigger::classify(&app, &deployed, &body)? {
        super::trigger::Body::Ignored(message) => {
            tracing::info!(service = %name, "{message}");
            return Ok((StatusCode::OK, message).into_response());
        }
        // The worker looks the provider up again when the job runs: the definition may change.
        super::trigger::Body::Event(found) => JobInput::Event(found.0),
        super::trigger::Body::Plain(input) => JobInput::Body(input),
    };
    let user = (!user.is_empty()).then_some(user);
    let record = app
        .services
        .deployer
        .submit_job_for(&name, input, user)
        .await?;
    tracing::info!(service = %name, job = %record.name, "job accepted");
    Ok(job_created(&record.name, &name))
}

/// 201 with the job's name in the body and in [`headers::JOB`].
fn job_created(job: &str, service: &str) -> Response {
    let mut response = (
        StatusCode::CREATED,
        axum::Json(JobCreated {
            job_name: job.to_string(),
            service: service.to_string(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(job) {
        response.headers_mut().insert(headers::JOB, value);
    }
    response
}

#[derive(Deserialize)]
struct Page {
    page: Option<String>,
    limit: Option<usize>,
}

/// OSCAR's JobsResponse: `{"jobs": {NAME: {status, creation_time, start_time, finish_time}},
/// "next_page", "remaining_jobs"}`, oldest first, paged by `?page=` and `?limit=`.
async fn list(
    State(app): State<AppState>,
    ServicePath(service): ServicePath,
    Query(page): Query<Page>,
) -> Result<axum::Json<Value>, ApiError> {
    app.services.registry.require(&service)?;
    let records = app.jobs.store.list(&service);
    let offset: usize = match page.page.as_deref() {
        None | Some("") => 0,
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid page token {token:?}")))?,
    };
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let mut jobs = Map::new();
    for record in records.iter().skip(offset).take(limit) {
        let time = |ms: Option<u64>| ms.map(rfc3339).map_or(Value::Null, Value::String);
        let mut entry = json!({
            "status": record.status,
            "creation_time": rfc3339(record.created_ms),
            "start_time": time(record.started_ms),
            "finish_time": time(record.finished_ms),
        });
        if record.origin == Origin::Run {
            entry["kind"] = json!("run");
        }
        if let Some(outcome) = &record.outcome {
            entry["outcome"] = json!(outcome);
        }
        jobs.insert(record.name.clone(), entry);
    }
    let mut body = json!({"jobs": jobs});
    let shown = (offset + limit).min(records.len());
    if shown < records.len() {
        body["next_page"] = json!(shown.to_string());
        body["remaining_jobs"] = json!(records.len() - shown);
    }
    Ok(axum::Json(body))
}

#[derive(Deserialize)]
struct LogQuery {
    timestamps: Option<String>,
}

/// A query flag read as Go's strconv.ParseBool reads it, as OSCAR does (`1`, `t`, `true`...).
fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "?{name}={other} is not a boolean (true, false, 1, 0, t, f)"
        ))),
    }
}

async fn log(
    State(app): State<AppState>,
    JobPath { service, job }: JobPath,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let text = app
        .jobs
        .log_text(
            &service,
            &job,
            flag("timestamps", query.timestamps.as_deref())?,
        )
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| job_not_found(&service, &job))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

fn job_not_found(service: &ServiceName, job: &JobName) -> ApiError {
    ApiError::NotFound(format!("job {job:?} of service {service:?} not found"))
}

async fn delete_one(
    State(app): State<AppState>,
    JobPath { service, job }: JobPath,
) -> Result<StatusCode, ApiError> {
    if app.jobs.remove(&service, &job).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(job_not_found(&service, &job))
    }
}

#[derive(Deserialize)]
struct AllQuery {
    all: Option<String>,
}

async fn delete_all(
    State(app): State<AppState>,
    ServicePath(service): ServicePath,
    Query(query): Query<AllQuery>,
) -> Result<StatusCode, ApiError> {
    app.services.registry.require(&service)?;
    let removed = app
        .jobs
        .remove_all(&service, flag("all", query.all.as_deref())?)
        .await;
    tracing::info!(removed, "jobs deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct OutputsQuery {
    format: Option<String>,
}

/// The job's output files: a JSON list `[{"path", "size"}]`, or with `?format=zip` one zip.
async fn outputs(
    State(app): State<AppState>,
    JobPath { service, job }: JobPath,
    Query(query): Query<OutputsQuery>,
) -> Result<Response, ApiError> {
    if app.jobs.store.get(&service, &job).is_none() {
        return Err(job_not_found(&service, &job));
    }
    let files = app
        .jobs
        .output_files(&service, &job)
        .await
        .map_err(ApiError::store)?;
    if query.format.as_deref() == Some("zip") {
        let bytes = faas::zip_stored(&files).map_err(|e| ApiError::Internal(e.to_string()))?;
        let disposition = format!("attachment; filename=\"{job}.zip\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            bytes,
        )
            .into_response());
    }
    let list: Vec<Value> = files
        .iter()
        .map(|f| json!({"path": f.path, "size": f.bytes.len()}))
        .collect();
    Ok(axum::Json(Value::Array(list)).into_response())
}

/// One output file, read through cap-std so that no path leaves the job's output folder.
async fn output_file(
    State(app): State<AppState>,
    JobPath { service, job }: JobPath,
    Path((_, _, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound(format!("no output file {path:?} in job {job:?}"));
    if app.jobs.store.get(&service, &job).is_none() {
        return Err(not_found());
    }
    let relative = std::path::Path::new(&path);
    if !relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(not_found());
    }
    let bytes = app
        .jobs
        .output_file(&service, &job, relative.to_path_buf())
        .await
        .map_err(ApiError::store)?
        .ok_or_else(not_found)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
