//! The step after every invocation, for /run, jobs and storage events alike: a successful
//! invocation's output files go to the service's output buckets (as in OSCAR, before the
//! caller hears of the result), and the invocation's outcome is settled: how it ended, and
//! whether its outputs arrived.

use crate::executor::invocation::{Completed, Exit};
use crate::protocol::Outcome;
use crate::storage::Storage;
use crate::storage::spec::StorageSpec;

/// What delivering an invocation's outputs came to.
#[derive(Debug, Default)]
pub struct Delivered {
    /// One line per upload, for the job's log.
    pub lines: Vec<String>,
    /// Why the upload failed, when it did: the invocation then failed as a whole.
    pub failure: Option<String>,
}

impl Delivered {
    /// The outcome label of the invocation: the module's (`success`, `exit`, `trap`, ...), or
    /// `upload` when it succeeded but its outputs could not be delivered.
    pub fn outcome(&self, completed: &Completed) -> Outcome {
        if self.failure.is_some() {
            Outcome::Upload
        } else {
            completed.exit.outcome()
        }
    }

    /// Whether the invocation succeeded, outputs delivered included.
    pub fn succeeded(&self, completed: &Completed) -> bool {
        completed.exit == Exit::Success && self.failure.is_none()
    }
}

/// Uploads the outputs of a successful invocation to the output buckets of `spec`; nothing
/// for a failed one or a service without outputs.
pub async fn to_buckets(storage: &Storage, spec: &StorageSpec, completed: &Completed) -> Delivered {
    if completed.exit != Exit::Success || spec.outputs.is_empty() {
        return Delivered::default();
    }
    match storage.upload_outputs(spec, &completed.files).await {
        Ok(lines) => Delivered {
            lines,
            failure: None,
        },
        Err(e) => Delivered {
            lines: Vec::new(),
            failure: Some(format!("output upload failed: {e}")),
        },
    }
}
