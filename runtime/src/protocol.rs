//! The contract between the server and the two clients in this package (the command-line
//! client and the pod supervisor), and with OSCAR's: header names, the bodies they exchange,
//! how an invocation ended, and the names of services and jobs, validated once where they
//! enter.

use serde::{Deserialize, Serialize};

/// Header names of oscar-wasm's answers and requests (OSCAR's own clients ignore them).
pub mod headers {
    /// How a synchronous invocation ended: `success`, `exit:<code>`, `trap`, `timeout`,
    /// `cancelled`, `limit`.
    pub const OUTCOME: &str = "x-oscar-wasm-outcome";
    /// What a successful `/run` answer's body holds: `file`, `zip` or `logs`.
    pub const OUTPUT_KIND: &str = "x-oscar-wasm-output";
    /// The one output file of a `file` answer, relative to the output folder.
    pub const OUTPUT_NAME: &str = "x-oscar-wasm-output-name";
    /// The job a POST /job created.
    pub const JOB: &str = "x-oscar-wasm-job";
    /// The input file's name, for a pod's supervisor.
    pub const INPUT_NAME: &str = oscar_wasm_supervisor::INPUT_NAME_HEADER;
    /// The id that ties a synchronous call's log lines together.
    pub const REQUEST_ID: &str = "x-request-id";
}

/// A job's status, Kubernetes-like, as OSCAR reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// Running now.
    Running,
    /// The module succeeded.
    Succeeded,
    /// The module failed, timed out, or could not run.
    Failed,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// Its name, as OSCAR writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an invocation or a job ended, as job records, metrics and logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The module succeeded (and its outputs were delivered).
    Success,
    /// It exited with a non-zero status.
    Exit,
    /// It trapped.
    Trap,
    /// It ran past its timeout.
    Timeout,
    /// Its caller went away.
    Cancelled,
    /// It wrote more than allowed.
    Limit,
    /// It could not run (its input, its service, the host).
    Error,
    /// It succeeded, but its outputs could not be uploaded.
    Upload,
    /// The server stopped while it ran, too many times.
    Interrupted,
}

impl Outcome {
    /// The label: `success`, `exit`, `trap`, ...
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Exit => "exit",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Limit => "limit",
            Self::Error => "error",
            Self::Upload => "upload",
            Self::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The answer to POST /job: 201 with this body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobCreated {
    /// The job's name.
    pub job_name: String,
    /// Its service.
    pub service: String,
}

/// OSCAR's rule for service names: a DNS-1123 label, at most 39 characters.
pub fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 39
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A service name: 1 to 39 characters, a DNS-1123 label, as in OSCAR. Safe as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl std::fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ServiceName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Option<Self> {
        is_service_name(name).then(|| Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for ServiceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job name: `<service>-<uuid>`, nothing that could leave a folder.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct JobName(String);

impl std::fmt::Debug for JobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl JobName {
    /// Validates `job` as a job of `service`.
    pub fn parse(service: &ServiceName, job: &str) -> Option<Self> {
        let id = job.strip_prefix(service.as_str())?.strip_prefix('-')?;
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        valid.then(|| Self(job.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for JobName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_once() {
        let service = ServiceName::parse("upper").expect("a valid name");
        for bad in ["..", "../x", "UPPER", "a/b", "", "x\u{0}"] {
            assert!(ServiceName::parse(bad).is_none(), "{bad:?}");
        }
        assert!(JobName::parse(&service, "upper-0f1e2d3c-aaaa").is_some());
        for bad in [
            "upper-",
            "upper-../x",
            "other-0f1e",
            "upper0f1e",
            "upper-zz",
        ] {
            assert!(JobName::parse(&service, bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outcomes_and_statuses_keep_their_wire_names() {
        assert_eq!(
            serde_json::to_string(&Outcome::Upload).unwrap(),
            "\"upload\""
        );
        assert_eq!(
            serde_json::to_string(&JobStatus::Succeeded).unwrap(),
            "\"Succeeded\""
        );
        for outcome in [Outcome::Success, Outcome::Exit, Outcome::Interrupted] {
            let text = serde_json::to_string(&outcome).unwrap();
            assert_eq!(text, format!("\"{}\"", outcome.label()));
        }
    }
}
