//! /system/modules: upload, list, download and delete content-addressed modules.

use super::{ApiError, AppState};
use crate::app::Services;
use crate::modules::Digest;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/modules", get(list).post(upload))
        .route("/system/modules/{digest}", get(download).delete(delete))
}

fn parse_digest(text: &str) -> Result<Digest, ApiError> {
    Digest::parse(text).map_err(ApiError::NotFound)
}

async fn upload(
    State(services): State<Services>,
    super::body::Body(body): super::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    let stored = services.deployer.put_module(body).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if stored.created {
        tracing::info!(module = %stored.digest, size = stored.size, "module stored");
    }
    Ok((
        status,
        Json(json!({"digest": stored.digest.to_string(), "size": stored.size})),
    ))
}

async fn list(
    State(services): State<Services>,
    caller: crate::access::Caller,
) -> Result<Json<Vec<Value>>, ApiError> {
    super::auth::admin_only(&caller, "list the modules")?;
    let modules = services.modules.list().await?;
    Ok(Json(
        modules
            .into_iter()
            .map(|m| {
                let services = Digest::parse(&m.digest)
                    .map(|d| services.registry.users_of(&d))
                    .unwrap_or_default();
                let mut module = json!({"digest": m.digest, "size": m.size, "services": services});
                if let Some(compiled) = m.compiled {
                    module["compiled"] = json!(compiled);
                }
                module
            })
            .collect(),
    ))
}

async fn download(
    State(services): State<Services>,
    caller: crate::access::Caller,
    Path(digest): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    super::auth::admin_only(&caller, "download modules")?;
    let digest = parse_digest(&digest)?;
    let bytes = services.modules.read(&digest).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes))
}

async fn delete(
    State(services): State<Services>,
    caller: crate::access::Caller,
    Path(digest): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::auth::admin_only(&caller, "delete modules")?;
    let digest = parse_digest(&digest)?;
    services.deployer.delete_module(digest).await?;
    tracing::info!(module = %digest, "module deleted");
    Ok(StatusCode::NO_CONTENT)
}
