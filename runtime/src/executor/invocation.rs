//! What an invocation is, whatever runs it: its input, who asked, how it ended and why it
//! could not run. Every backend ([`super::backend::Backend`]) takes and returns these; they
//! import nothing of the crate but FaaS Supervisor's file and log types and the usage meters.

use crate::faas::{LogLine, OutputFile};
use crate::protocol::Outcome;
pub use crate::usage::meters::Meters;

/// An invocation's input file.
#[derive(Debug)]
pub enum Input {
    /// Bytes decoded from a request body: written as `event-file-<uuid>`, as FaaS Supervisor
    /// names it.
    Body(Vec<u8>),
    /// A downloaded object waiting in a staging file: moved into the input folder as `name`
    /// (the key's last segment), with the storage variables in `env`.
    Object {
        /// The staging file (removed whatever happens).
        staged: std::path::PathBuf,
        /// The input file's name.
        name: String,
        /// STORAGE_OBJECT_KEY, EVENT_TIME, EVENT.
        env: Vec<(String, String)>,
    },
}

impl From<Vec<u8>> for Input {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Body(bytes)
    }
}

/// What kind of invocation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// POST /run: a client waits, so the queue is bounded.
    Sync,
    /// A job from the persisted queue.
    Job,
}

impl Kind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Job => "job",
        }
    }
}

/// Who asked, for logs, metrics and usage accounts.
#[derive(Debug, Clone)]
pub struct Request {
    /// Sync call or job.
    pub kind: Kind,
    /// The id that ties log lines to this invocation (the job name for jobs).
    pub id: String,
    /// The user it is accounted to ([`crate::usage::meters::Usage::user`]).
    pub user: String,
    /// An external store's `mount` folder, copied here by the pipeline: preopened
    /// read-only instead of the embedded store's folder.
    pub mount_copy: Option<std::path::PathBuf>,
}

impl Request {
    /// A synchronous call, known in the logs as request `id`, accounted to `user`.
    pub fn sync(id: String, user: String) -> Self {
        Self {
            kind: Kind::Sync,
            id,
            user,
            mount_copy: None,
        }
    }
}

/// Why an invocation could not produce a result (as opposed to a module that failed).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Every slot busy and the queue full.
    #[error("the server is at its concurrency limit and its queue is full; retry later")]
    Overloaded,
    /// The service's module could not be loaded.
    #[error("the service's module is unavailable: {0}")]
    Unavailable(String),
    /// The output folder broke a limit or could not be read.
    #[error(transparent)]
    Outputs(#[from] crate::faas::outputs::OutputError),
    /// The host failed (scratch folder, preopen, a panicked worker).
    #[error("invocation failed on the host: {0}")]
    Host(String),
    /// The service is of another kind than the route serves (an HTTP service on /run).
    #[error("{0}")]
    WrongKind(String),
    /// The backend's own service failed (the Kubernetes API).
    #[error("the cluster failed: {0}")]
    Backend(String),
    /// The user's invocations already hold their quota.
    #[error(transparent)]
    Quota(#[from] crate::quotas::Exceeded),
    /// The service's `mount` of an external store could not be copied.
    #[error("the service's mount could not be read: {0}")]
    Mount(String),
}

/// A finished invocation.
#[derive(Debug)]
pub struct Completed {
    /// How the guest ended.
    pub exit: Exit,
    /// Regular files found in the output folder.
    pub files: Vec<OutputFile>,
    /// The guest's stdout and stderr, merged.
    pub output: Vec<u8>,
    /// The runtime's log lines for this invocation.
    pub log: Vec<LogLine>,
    /// What the run used; `meters.wall` is the run's own time (not the wait for a slot).
    pub meters: Meters,
}

/// Bytes of the output files, for [`Meters::bytes_out`].
pub fn files_bytes(files: &[OutputFile]) -> u64 {
    files
        .iter()
        .map(|f| u64::try_from(f.bytes.len()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add)
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Returned from main, or exited with status 0.
    Success,
    /// Exited with a non-zero status.
    Status(i32),
    /// Trapped (panic, unreachable, out of bounds, stack overflow, out of memory, ...).
    Trap(String),
    /// Ran past its deadline.
    Timeout,
    /// Stopped because the caller went away.
    Cancelled,
    /// Stopped for writing more output than allowed.
    Limit(String),
}

impl Exit {
    /// How the run ended, as job records and metrics name it.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Success => Outcome::Success,
            Self::Status(_) => Outcome::Exit,
            Self::Trap(_) => Outcome::Trap,
            Self::Timeout => Outcome::Timeout,
            Self::Cancelled => Outcome::Cancelled,
            Self::Limit(_) => Outcome::Limit,
        }
    }

    /// The label of [`Exit::outcome`]: `success`, `exit`, `trap`, ...
    pub fn label(&self) -> &'static str {
        self.outcome().label()
    }

    /// The value of the outcome header: the label, with the status of a non-zero exit
    /// (`exit:3`).
    pub fn header_value(&self) -> String {
        match self {
            Self::Status(code) => format!("exit:{code}"),
            other => other.label().to_string(),
        }
    }
}
