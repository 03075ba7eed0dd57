//! OSCAR's execution log: every invocation request with its status, latency and caller, the
//! most recent [`MAX_ENTRIES`] kept in memory (recorded and served by `crate::api::executions`).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 10_000;

/// One invocation request, as recorded on the hot path: only what the request gives; the
/// shapes OSCAR shows are made when the log is read.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it was answered, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The answer's status.
    pub status: u16,
    /// How long it took.
    pub latency: std::time::Duration,
    /// The request's method.
    pub method: axum::http::Method,
    /// The request's path.
    pub path: String,
    /// The basic-auth user, or empty.
    pub user: String,
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
        let timestamp = crate::clock::rfc3339_ms(r.at_ms);
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
    /// Keeps `entry`, dropping the oldest beyond [`MAX_ENTRIES`].
    pub fn record(&self, entry: Recorded) {
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
