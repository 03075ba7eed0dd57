//! GET /system/info (OSCAR's shape, plus the backends this server offers) and GET
//! /system/config (OSCAR's ConfigForUser: the cluster's configuration under `config`, its
//! default MinIO provider, the allowed image repositories), and PUT /system/config, which
//! changes the allowed image repositories as OSCAR does.

/// The OSCAR release whose API this server follows; its clients (the dashboard above all)
/// choose their code paths by it. oscar-wasm's own version is `serverless_backend.version`.
pub const OSCAR_API_VERSION: &str = "4.1.2";

use super::{ApiError, AppState};
use crate::app::Operations;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/info", get(info))
        .route("/system/config", get(config).put(update_config))
}

async fn info(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "version": OSCAR_API_VERSION,
        "git_commit": option_env!("OSCAR_WASM_GIT_COMMIT").unwrap_or(""),
        "architecture": std::env::consts::ARCH,
        "kubernetes_version": "",
        "serverless_backend": {"name": "oscar-wasm", "version": env!("CARGO_PKG_VERSION")},
        "backends": {
            "wasm": {"available": true, "engine": "wasmtime", "services": app.services.registry.list().len()},
            "kubernetes": match app.invocations.kube.as_ref() {
                Some(kube) => json!({"available": true, "namespace": kube.namespace()}),
                None => json!({"available": false, "reason": "no Kubernetes cluster is configured (--kube-callback-url and KUBECONFIG or a service account)"}),
            }
        }
    }))
}

/// OSCAR's Config: clients (oscar-cli, oscar-python, `oscar-wasm service put-file`) read
/// `minio_provider` from it to reach the cluster's own store. Administrator only, like all of
/// /system.
async fn config(State(app): State<AppState>, caller: crate::access::Caller) -> Json<Value> {
    let minio = &app.buckets.storage.default_provider;
    // A user gets their own keys (made at their first login) for the embedded store, or for
    // an external MinIO managed through its admin API; for any other external store, none (it
    // has no users of this server's making).
    let own_keys =
        app.buckets.storage.embedded_buckets.is_some() || app.users.minio_users.is_some();
    let (access_key, secret_key) = match caller.user() {
        None => (minio.access_key.clone(), minio.secret_key.clone()),
        Some(user) => match app.users.store_users.get(&user.sub).filter(|_| own_keys) {
            Some(keys) => (keys.access_key, keys.secret_key),
            None => (String::new(), String::new()),
        },
    };
    Json(json!({
        "config": {
            "name": "oscar-wasm",
            "namespace": "oscar",
            // Where image services' Jobs run (--kube-namespace); OSCAR's default without a
            // cluster.
            "services_namespace": app.invocations.kube.as_ref().map_or("oscar-svc", |k| k.namespace()),
            "controller_service_account": "",
            "gpu_available": false,
            "interLink_available": false,
            "serverless_backend": "oscar-wasm",
            "yunikorn_enable": false,
            "kueue_enable": false,
            "volume_enable": false,
            "oidc_groups": app.users.oidc.groups(),
            "minio_quota_enabled": false,
            "embedded_store": app.buckets.storage.embedded_buckets.is_some(),
        },
        "minio_provider": {
            "endpoint": minio.endpoint,
            "verify": minio.verify,
            "access_key": access_key,
            "secret_key": secret_key,
            "region": minio.region,
        },
        "allowed_image_repositories": app.operations.settings.get().allowed_image_repositories,
    }))
}

/// PUT /system/config: OSCAR's ConfigForUser, of which only `allowed_image_repositories` can be
/// changed; answers the list as OSCAR does. An image service is then deployed only when its
/// image contains one of them (an empty list allows every image).
async fn update_config(
    State(operations): State<Operations>,
    caller: crate::access::Caller,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<Json<Value>, ApiError> {
    super::auth::admin_only(&caller, "change the configuration")?;
    let mut map: serde_json::Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the configuration specification is not valid: {e}"))
    })?;
    crate::oscar_definition::canonical_keys(&mut map, &["allowed_image_repositories"]);
    let settings = crate::cluster_settings::Settings {
        allowed_image_repositories: match map.remove("allowed_image_repositories") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => serde_json::from_value(list).map_err(|e| {
                ApiError::BadRequest(format!(
                    "allowed_image_repositories must be a list of strings: {e}"
                ))
            })?,
        },
    };
    settings.check().map_err(ApiError::BadRequest)?;
    let answer = json!(settings.allowed_image_repositories);
    operations.settings.set(settings).await?;
    tracing::info!(repositories = %answer, "allowed image repositories changed");
    Ok(Json(answer))
}
