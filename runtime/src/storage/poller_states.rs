//! What the storage pollers ([`crate::pipeline::poller`]) have seen, by service, kept so that
//! a restart (or the server that takes the poller over) carries on where the last round
//! stopped: files on one machine, NATS in a cluster (`crate::cluster::pollers`).

use crate::stores::{StoreError, blocking};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// What a service's poller has seen.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Seen {
    /// `bucket/key` -> version (ETag, else modification time).
    pub objects: BTreeMap<String, String>,
    /// Whether the first round (which only takes note) is done.
    pub baseline: bool,
}

/// Where the pollers keep what they have seen, by service: a folder on one machine
/// ([`LocalPollerStates`]), NATS in a cluster (`crate::cluster::pollers`), so that the server
/// that takes the poller over carries on where the last one stopped. Blocking.
#[async_trait::async_trait]
pub trait PollerStates: Send + Sync {
    /// A service's state as saved; `None` when there is none.
    async fn load(&self, service: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Saves a service's state (durably).
    async fn save(&self, service: &str, state: &[u8]) -> Result<(), StoreError>;
    /// Forgets a deleted service's state, so that a service created again with the same name
    /// starts afresh.
    async fn forget(&self, service: &str) -> Result<(), StoreError>;
}

/// Pollers' states as files, `DATA_DIR/pollers/<service>.json`.
pub struct LocalPollerStates(Files);

/// The folder, for the blocking tasks that read and write it.
#[derive(Clone)]
struct Files {
    dir: PathBuf,
}

impl LocalPollerStates {
    /// The states under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self(Files {
            dir: data_dir.join("pollers"),
        })
    }
}

impl Files {
    fn path(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.json"))
    }
}

#[async_trait::async_trait]
impl PollerStates for LocalPollerStates {
    async fn load(&self, service: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        blocking(move || this.load(&service).map_err(StoreError::from)).await
    }

    async fn save(&self, service: &str, state: &[u8]) -> Result<(), StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let state = state.to_vec();
        blocking(move || this.save(&service, &state).map_err(StoreError::from)).await
    }

    async fn forget(&self, service: &str) -> Result<(), StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        blocking(move || this.forget(&service).map_err(StoreError::from)).await
    }
}

impl Files {
    fn load(&self, service: &str) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(service)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, service: &str, state: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        crate::fsutil::atomic_write(&self.path(service), state)
    }

    fn forget(&self, service: &str) -> io::Result<()> {
        crate::fsutil::remove_durably(&self.path(service))
    }
}

/// A service's state, or a fresh one (nothing seen yet) when none is saved or it cannot be read.
pub async fn load(states: &dyn PollerStates, service: &str) -> Seen {
    match states.load(service).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Ok(None) => Seen::default(),
        Err(e) => {
            tracing::warn!(service, error = %e, "the poller's state could not be read; starting afresh");
            Seen::default()
        }
    }
}
