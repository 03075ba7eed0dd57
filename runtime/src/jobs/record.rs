//! A job's record (what OSCAR's JobsResponse shows) and the time formats it is shown in.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// A job's status (see [`crate::protocol::JobStatus`]).
pub use crate::protocol::JobStatus as Status;
/// How a job ended (see [`crate::protocol::Outcome`]).
pub use crate::protocol::Outcome;

/// Where a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// POST /job: an asynchronous job with its input and outputs kept.
    Job,
    /// A failed POST /run, kept so that its log can be read (bounded per service).
    Run,
}

/// One job, as persisted in `job.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `<service>-<uuid>`.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Job or failed synchronous run.
    pub origin: Origin,
    /// Where it is.
    pub status: Status,
    /// Accepted at, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Last started at.
    pub started_ms: Option<u64>,
    /// Finished at.
    pub finished_ms: Option<u64>,
    /// Runs started (more than one after a crash).
    pub attempts: u32,
    /// How the module ended (`success`, `exit`, `trap`, `timeout`, ...).
    pub outcome: Option<Outcome>,
    /// Bytes kept on disk for it (input, outputs, log), counted when it finishes.
    pub bytes: u64,
    /// The storage event that made it, when a bucket triggered it: its input is that object,
    /// downloaded when the job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::storage::event::ObjectEvent>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC with seconds, as Kubernetes shows times: `2024-01-31T13:45:07Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = crate::faas::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The same with milliseconds, for log lines.
pub fn rfc3339_ms(ms: u64) -> String {
    let base = rfc3339(ms);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms % 1000)
}

/// Milliseconds since the epoch of a `SystemTime`.
pub fn to_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_like_kubernetes() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
