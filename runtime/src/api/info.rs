//! GET /system/info (OSCAR's shape, plus the backends this server offers) and GET
//! /system/config (OSCAR's ConfigForUser: the cluster's configuration under `config`, its
//! default MinIO provider, the allowed image repositories).

/// The OSCAR release whose API this server follows; its clients (the dashboard above all)
/// choose their code paths by it. oscar-wasm's own version is `serverless_backend.version`.
pub const OSCAR_API_VERSION: &str = "4.1.2";

use super::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/info", get(info))
        .route("/system/config", get(config))
}

async fn info(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "version": OSCAR_API_VERSION,
        "git_commit": option_env!("OSCAR_WASM_GIT_COMMIT").unwrap_or(""),
        "architecture": std::env::consts::ARCH,
        "kubernetes_version": "",
        "serverless_backend": {"name": "oscar-wasm", "version": env!("CARGO_PKG_VERSION")},
        "backends": {
            "wasm": {"available": true, "engine": "wasmtime", "services": app.registry.list().len()},
            "kubernetes": match app.executor.kube() {
                Some(kube) => json!({"available": true, "namespace": kube.namespace()}),
                None => json!({"available": false, "reason": "no Kubernetes cluster is configured (--kube-callback-url and KUBECONFIG or a service account)"}),
            }
        }
    }))
}

/// OSCAR's Config: clients (oscar-cli, oscar-python, `oscar-wasm service put-file`) read
/// `minio_provider` from it to reach the cluster's own store. Administrator only, like all of
/// /system.
async fn config(State(app): State<AppState>) -> Json<Value> {
    let minio = &app.storage.default_provider;
    Json(json!({
        "config": {
            "name": "oscar-wasm",
            "namespace": "oscar",
            "services_namespace": "oscar-svc",
            "controller_service_account": "",
            "gpu_available": false,
            "interLink_available": false,
            "serverless_backend": "oscar-wasm",
            "yunikorn_enable": false,
            "kueue_enable": false,
            "volume_enable": false,
            "oidc_groups": [],
            "minio_quota_enabled": false,
            "embedded_store": app.storage.embedded_buckets.is_some(),
        },
        "minio_provider": {
            "endpoint": minio.endpoint,
            "verify": minio.verify,
            "access_key": minio.access_key,
            "secret_key": minio.secret_key,
            "region": minio.region,
        },
        "allowed_image_repositories": [],
    }))
}
