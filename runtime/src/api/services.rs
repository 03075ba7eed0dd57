//! /system/services: OSCAR's service CRUD, PUT /system/services/{name}/module, and GET
//! /system/services/{name}/auth (whether the caller may use the service).

use super::names::ServicePath;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/services", get(list).post(create).put(update))
        .route("/system/services/{name}", get(get_one).delete(delete))
        .route("/system/services/{name}/module", put(attach_module))
}

/// GET /system/services/{name}/auth, which OSCAR checks with a service's token as well as
/// the administrator's credentials, so it is outside the administrator-only routes.
pub fn auth_routes() -> Router<AppState> {
    Router::new().route("/system/services/{name}/auth", get(may_use))
}

/// 200 when the caller may invoke the service (the administrator, or its token); 401/403
/// otherwise, 404 for an unknown service, before any handler runs.
async fn may_use(_: super::auth::Invocation) -> StatusCode {
    StatusCode::OK
}

/// Parses a JSON body ourselves, so that malformed JSON gets our plain-text 400.
fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    include: Option<String>,
}

/// Every definition; with `?include=deployment` (a comma-separated list, as OSCAR reads it)
/// each carries its deployment summary.
async fn list(
    State(app): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Json<Vec<Value>> {
    let with_deployment = query.include.as_deref().is_some_and(|include| {
        include
            .split(',')
            .any(|item| item.trim().eq_ignore_ascii_case("deployment"))
    });
    Json(
        app.registry
            .list()
            .iter()
            .map(|d| {
                let mut shown = d.service.to_public_json();
                if with_deployment {
                    shown["deployment"] = super::cluster::deployment_summary(&app, d);
                }
                shown
            })
            .collect(),
    )
}

async fn get_one(
    State(app): State<AppState>,
    ServicePath(name): ServicePath,
) -> Result<Json<Value>, ApiError> {
    let deployed = app.registry.require(&name)?;
    Ok(Json(deployed.service.to_public_json()))
}

async fn create(
    State(app): State<AppState>,
    super::body::Body(body): super::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let deployed = app.deployer.create_service(parse_json(&body)?).await?;
    tracing::info!(service = %deployed.service.spec.name, backend = %deployed.service.spec.backend, "service created");
    Ok((StatusCode::CREATED, Json(deployed.service.to_public_json())))
}

async fn update(
    State(app): State<AppState>,
    super::body::Body(body): super::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let deployed = app.deployer.update_service(parse_json(&body)?).await?;
    tracing::info!(service = %deployed.service.spec.name, backend = %deployed.service.spec.backend, "service updated");
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(
    State(app): State<AppState>,
    ServicePath(name): ServicePath,
) -> Result<StatusCode, ApiError> {
    app.deployer.delete_service(&name).await?;
    tracing::info!(service = %name, "service deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn attach_module(
    State(app): State<AppState>,
    ServicePath(name): ServicePath,
    super::body::Body(body): super::body::Body,
) -> Result<Json<Value>, ApiError> {
    let stored = app.deployer.attach_module(&name, body).await?;
    tracing::info!(service = %name, module = %stored.digest, "module attached");
    Ok(Json(
        json!({"digest": stored.digest.to_string(), "size": stored.size, "service": name}),
    ))
}
