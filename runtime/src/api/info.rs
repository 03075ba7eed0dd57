//! GET /system/info: OSCAR's shape, plus the backends this server offers.

use super::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/system/info", get(info))
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
            "kubernetes": {"available": false, "reason": "no Kubernetes cluster is configured"}
        }
    }))
}
