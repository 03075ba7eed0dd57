//! A job's record (what OSCAR's JobsResponse shows) and the time formats it is shown in.

use serde::{Deserialize, Serialize};

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

/// One job, as persisted (a frame of its job file on one machine, a NATS key in a cluster).
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
    /// The W3C trace context (`traceparent`) of the request that accepted it, when traces are
    /// exported: the worker's span continues that trace, on whichever server runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The user its run is accounted to (the OIDC subject that submitted it, else the
    /// service's owner); absent for the administrator's jobs and those kept before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[cfg(test)]
impl JobRecord {
    /// A job of service `svc` accepted at 1 ms, for the stores' unit tests.
    pub(crate) fn for_tests(name: &str, status: Status, bytes: u64) -> Self {
        Self {
            name: name.into(),
            service: "svc".into(),
            origin: Origin::Job,
            status,
            created_ms: 1,
            started_ms: None,
            finished_ms: None,
            attempts: 0,
            outcome: None,
            bytes,
            trigger: None,
            traceparent: None,
            user: None,
        }
    }
}
