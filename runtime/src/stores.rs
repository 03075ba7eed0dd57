//! The seam of the state stores. Every store the server keeps its state in (service
//! definitions, modules' bytes, job records and files, the job queue, pollers' states,
//! documents) is an async trait with two implementations: files under the data folder, which
//! do their blocking work off the reactor through [`blocking`], and a cluster's NATS
//! (`crate::cluster`). Both answer with [`StoreError`], so that what is above them never
//! tells them apart, and `Unavailable` becomes 503 with `Retry-After` in one place
//! (`crate::api::error`). A leaf: it imports nothing of the crate.

use std::io;

/// Why a store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another change landed first (a compare-and-set lost), or the key is taken.
    #[error("{0} was changed meanwhile")]
    Conflict(String),
    /// No such key.
    #[error("{0} not found")]
    NotFound(String),
    /// The store is away for now (a cluster's NATS electing a leader, or not answering):
    /// worth retrying.
    #[error("the state store is unavailable for now: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error("the state store failed: {0}")]
    Io(#[from] io::Error),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Runs a local store's file work on a thread allowed to block, so that the reactor's
/// workers never wait on a disk.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(format!("a store task failed: {e}"))))?
}
