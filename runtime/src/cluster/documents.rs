//! The small state documents in a cluster ([`crate::documents`]): the key-value bucket
//! `oscar_documents`, one key per document, compare-and-set on its revision, watched by every
//! server.

use super::services::{last_revision, watch};
use super::{Cluster, ClusterError, names, store_error};
use crate::documents::{Changed, DocumentStore, Revision};
use crate::stores::StoreError;
use async_nats::jetstream::kv;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Documents in a key-value bucket.
pub struct NatsDocuments {
    kv: kv::Store,
    /// The bucket's last revision when this server started: the watch starts after it.
    opened_at: Arc<AtomicU64>,
}

impl NatsDocuments {
    /// Opens (creating) the bucket.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let kv = cluster.key_value(names::DOCUMENTS, Duration::ZERO).await?;
        let opened_at = last_revision(cluster, names::DOCUMENTS)
            .await
            .map_err(|e| ClusterError::JetStream {
                what: format!("key-value bucket {}", names::DOCUMENTS),
                reason: e.to_string(),
            })?;
        Ok(Self {
            kv,
            opened_at: Arc::new(AtomicU64::new(opened_at)),
        })
    }
}

#[async_trait::async_trait]
impl DocumentStore for NatsDocuments {
    async fn load(&self, name: &str) -> Result<(Option<Vec<u8>>, Revision), StoreError> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| store_error(name, e))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                (Some(entry.value.to_vec()), entry.revision)
            }
            // Deleted: what is written next is a create at revision 0.
            _ => (None, 0),
        })
    }

    async fn save(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Revision,
    ) -> Result<Option<Revision>, StoreError> {
        let value = bytes::Bytes::copy_from_slice(bytes);
        let stored = if expected == 0 {
            self.kv
                .create(name, value)
                .await
                .map_err(|e| match e.kind() {
                    _ if super::lost_race(e.kind() == kv::CreateErrorKind::AlreadyExists, &e) => {
                        None
                    }
                    _ => Some(store_error(name, e)),
                })
        } else {
            self.kv
                .update(name, value, expected)
                .await
                .map_err(|e| match e.kind() {
                    _ if super::lost_race(
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        &e,
                    ) =>
                    {
                        None
                    }
                    _ => Some(store_error(name, e)),
                })
        };
        match stored {
            Ok(revision) => Ok(Some(revision)),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Changed>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        // The documents were read when they were opened, before this: only later changes.
        let after = Arc::new(AtomicU64::new(self.opened_at.load(Ordering::Relaxed)));
        watch(self.kv.clone(), after, move |entry| {
            if entry.operation != kv::Operation::Put {
                return true;
            }
            sender
                .send(Changed {
                    name: entry.key,
                    bytes: entry.value.to_vec(),
                    revision: entry.revision,
                })
                .is_ok()
        });
        Some(receiver)
    }
}
