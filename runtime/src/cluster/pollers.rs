//! What the storage pollers have seen, in a cluster: the JetStream object store
//! `oscar_pollers`, one object per service (an object, not a key-value entry: a poller that
//! watches a large bucket remembers more than a NATS message holds). The server that takes
//! the poller lease over reads it and carries on where the last holder stopped.

use super::modules::{self as objects, Objects};
use super::{Cluster, ClusterError, names};
use crate::storage::poller_states::PollerStates;
use std::io;

/// Pollers' states in an object store.
pub struct NatsPollerStates {
    cluster: Cluster,
    objects: Objects,
}

impl NatsPollerStates {
    /// Opens (creating) the object store.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            objects: Objects::open(cluster, names::POLLERS).await?,
            cluster: cluster.clone(),
        })
    }
}

impl PollerStates for NatsPollerStates {
    fn load(&self, service: &str) -> io::Result<Option<Vec<u8>>> {
        self.cluster.wait(objects::read(&self.objects, service))
    }

    fn save(&self, service: &str, state: &[u8]) -> io::Result<()> {
        self.cluster
            .wait(objects::write(&self.objects.store, service, state))
    }

    fn forget(&self, service: &str) -> io::Result<()> {
        self.cluster
            .wait(objects::delete(&self.objects.store, service))
            .map(|_| ())
    }
}
