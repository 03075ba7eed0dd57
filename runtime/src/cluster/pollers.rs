//! What the storage pollers have seen, in a cluster: the JetStream object store
//! `oscar_pollers`, one object per service (an object, not a key-value entry: a poller that
//! watches a large bucket remembers more than a NATS message holds). The server that takes
//! the poller lease over reads it and carries on where the last holder stopped.

use super::modules::{self as objects, Objects};
use super::{Cluster, ClusterError, names};
use crate::storage::poller_states::PollerStates;
use crate::stores::StoreError;

/// Pollers' states in an object store.
pub struct NatsPollerStates {
    objects: Objects,
}

impl NatsPollerStates {
    /// Opens (creating) the object store.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            objects: Objects::open(cluster, names::POLLERS).await?,
        })
    }
}

#[async_trait::async_trait]
impl PollerStates for NatsPollerStates {
    async fn load(&self, service: &str) -> Result<Option<Vec<u8>>, StoreError> {
        objects::read(&self.objects, service).await
    }

    async fn save(&self, service: &str, state: &[u8]) -> Result<(), StoreError> {
        objects::write(&self.objects.store, service, state).await
    }

    async fn forget(&self, service: &str) -> Result<(), StoreError> {
        objects::delete(&self.objects.store, service)
            .await
            .map(|_| ())
    }
}
