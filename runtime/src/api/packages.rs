//! /system/packages: upload and list script services' packages (zips of pure-Python
//! packages, content-addressed; see [`crate::packages`]).

use super::{ApiError, AppState};
use crate::app::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new().route("/system/packages", get(list).post(upload))
}

async fn upload(
    State(services): State<Services>,
    super::body::Body(body): super::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let stored = services.packages.put(body).await?;
    if stored.created {
        tracing::info!(package = %stored.digest, files = stored.files, "package stored");
    }
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "digest": stored.digest.to_string(),
            "files": stored.files,
            "unpacked_size": stored.unpacked,
        })),
    ))
}

async fn list(
    State(services): State<Services>,
    caller: crate::access::Caller,
) -> Result<Json<Vec<crate::packages::PackageInfo>>, ApiError> {
    super::auth::admin_only(&caller, "list the packages")?;
    Ok(Json(services.packages.list().await?))
}
