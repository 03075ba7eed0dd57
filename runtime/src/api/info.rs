//! GET /system/info (OSCAR's shape, plus the backends this server offers) and GET
//! /system/config (the cluster's configuration, with its default MinIO provider).

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
        "version": env!("CARGO_PKG_VERSION"),
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
        "name": "oscar-wasm",
        "namespace": "oscar",
        "services_namespace": "oscar-svc",
        "gpu_available": false,
        "interLink_available": false,
        "yunikorn_enable": false,
        "oidc_groups": [],
        "minio_provider": {
            "endpoint": minio.endpoint,
            "verify": minio.verify,
            "access_key": minio.access_key,
            "secret_key": minio.secret_key,
            "region": minio.region,
        },
        "embedded_store": app.storage.embedded_buckets.is_some(),
    }))
}
