//! OSCAR's execution log: every invocation request (POST /run, POST /job) with its status,
//! latency and caller, the most recent [`MAX_ENTRIES`] kept in memory, served by
//! GET /system/logs as `{"logs": [...]}` in OSCAR's shape (the dashboard charts it).

use super::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

/// Entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 10_000;

/// One invocation request, as OSCAR's executions logger records it.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    /// When it was answered, RFC 3339.
    pub timestamp: String,
    /// The answer's status.
    pub status: u16,
    /// How long it took, in Go's duration notation (`1.5ms`).
    pub latency: String,
    /// The caller's address, when known.
    pub client_ip: String,
    /// `POST`.
    pub method: String,
    /// `/run/NAME` or `/job/NAME`.
    pub path: String,
    /// Who: the administrator's user name, or empty for a service token.
    pub user: String,
    /// The whole line, as OSCAR's logger writes it.
    pub raw: String,
}

/// The recent executions.
#[derive(Default)]
pub struct Executions {
    entries: Mutex<VecDeque<Execution>>,
}

impl Executions {
    /// Keeps one entry.
    pub fn record(&self, entry: Execution) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Every kept entry, oldest first.
    pub fn all(&self) -> Vec<Execution> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().cloned().collect()
    }
}

/// Middleware of the invocation routes: records each request once it is answered.
pub async fn record(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let user = match super::auth::presented(request.headers()) {
        crate::auth::Presented::Basic { user, .. } => String::from_utf8_lossy(&user).into_owned(),
        _ => String::new(),
    };
    let response = next.run(request).await;
    let latency = format!("{:?}", started.elapsed());
    let timestamp = crate::jobs::record::rfc3339_ms(crate::jobs::record::now_ms());
    let status = response.status().as_u16();
    let raw = format!(
        "[GIN-EXECUTIONS-LOGGER] {timestamp} | {status} | {latency} | | {method} {path} | {user}"
    );
    app.executions.record(Execution {
        timestamp,
        status,
        latency,
        client_ip: String::new(),
        method,
        path,
        user,
        raw,
    });
    response
}

/// GET /system/logs.
pub async fn list(State(app): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"logs": app.executions.all()}))
}
