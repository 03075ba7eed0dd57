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

/// One invocation request, as recorded on the hot path: only what the request gives; the
/// shapes OSCAR shows are made when the log is read.
#[derive(Debug, Clone)]
struct Recorded {
    at_ms: u64,
    status: u16,
    latency: std::time::Duration,
    method: axum::http::Method,
    path: String,
    user: String,
}

/// One invocation request, as OSCAR's executions logger shows it.
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

impl From<&Recorded> for Execution {
    fn from(r: &Recorded) -> Self {
        let timestamp = crate::jobs::record::rfc3339_ms(r.at_ms);
        let latency = format!("{:?}", r.latency);
        let raw = format!(
            "[GIN-EXECUTIONS-LOGGER] {timestamp} | {} | {latency} | | {} {} | {}",
            r.status, r.method, r.path, r.user
        );
        Self {
            timestamp,
            status: r.status,
            latency,
            client_ip: String::new(),
            method: r.method.to_string(),
            path: r.path.clone(),
            user: r.user.clone(),
            raw,
        }
    }
}

/// The recent executions.
#[derive(Default)]
pub struct Executions {
    entries: Mutex<VecDeque<Recorded>>,
}

impl Executions {
    fn record(&self, entry: Recorded) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// Every kept entry, oldest first, in OSCAR's shape.
    pub fn all(&self) -> Vec<Execution> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().map(Execution::from).collect()
    }
}

/// Middleware of the invocation routes: records each request once it is answered.
pub async fn record(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let user = match super::auth::presented(request.headers()) {
        crate::auth::Presented::Basic { user, .. } => String::from_utf8_lossy(&user).into_owned(),
        _ => String::new(),
    };
    let response = next.run(request).await;
    app.executions.record(Recorded {
        at_ms: crate::jobs::record::now_ms(),
        status: response.status().as_u16(),
        latency: started.elapsed(),
        method,
        path,
        user,
    });
    response
}

/// GET /system/logs.
pub async fn list(
    State(app): State<AppState>,
    caller: crate::access::Caller,
) -> Result<axum::Json<serde_json::Value>, super::ApiError> {
    super::auth::admin_only(&caller, "read the execution log")?;
    Ok(axum::Json(
        serde_json::json!({"logs": app.executions.all()}),
    ))
}
