//! What the storage pollers ([`crate::pipeline::poller`]) have seen, by service, kept so that
//! a restart (or the server that takes the poller over) carries on where the last round
//! stopped: files on one machine, NATS in a cluster (`crate::cluster::pollers`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
pub trait PollerStates: Send + Sync {
    /// A service's state as saved; `None` when there is none.
    fn load(&self, service: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Saves a service's state (durably).
    fn save(&self, service: &str, state: &[u8]) -> std::io::Result<()>;
    /// Forgets a deleted service's state, so that a service created again with the same name
    /// starts afresh.
    fn forget(&self, service: &str) -> std::io::Result<()>;
}

/// Pollers' states as files, `DATA_DIR/pollers/<service>.json`.
pub struct LocalPollerStates {
    dir: PathBuf,
}

impl LocalPollerStates {
    /// The states under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pollers"),
        }
    }

    fn path(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.json"))
    }
}

impl PollerStates for LocalPollerStates {
    fn load(&self, service: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(service)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, service: &str, state: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        crate::fsutil::atomic_write(&self.path(service), state)
    }

    fn forget(&self, service: &str) -> std::io::Result<()> {
        crate::fsutil::remove_durably(&self.path(service))
    }
}

/// A service's state, or a fresh one (nothing seen yet) when none is saved or it cannot be read.
pub fn load(states: &dyn PollerStates, service: &str) -> Seen {
    match states.load(service) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Ok(None) => Seen::default(),
        Err(e) => {
            tracing::warn!(service, error = %e, "the poller's state could not be read; starting afresh");
            Seen::default()
        }
    }
}
