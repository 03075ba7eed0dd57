//! The registry's store in a cluster: service definitions in the JetStream key-value bucket
//! `oscar_services`, keyed by name. A key's revision is its message's sequence in the bucket's
//! stream, so updates are compare-and-set on it, and every server watches the bucket to apply
//! the others' changes.

use super::{Cluster, ClusterError, names, store_error};
use crate::registry::{Revision, ServiceChange, ServiceStore, StoredDefinition};
use crate::stores::StoreError;
use async_nats::jetstream::kv;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Definitions in a key-value bucket.
pub struct NatsServices {
    cluster: Cluster,
    kv: kv::Store,
    /// The bucket's last revision when it was loaded: the watch starts after it.
    loaded_at: Arc<AtomicU64>,
}

impl NatsServices {
    /// Opens (creating) the bucket.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            kv: cluster.key_value(names::SERVICES, Duration::ZERO).await?,
            cluster: cluster.clone(),
            loaded_at: Arc::default(),
        })
    }
}

/// The last sequence of a key-value bucket's stream, asked of the server now.
pub(super) async fn last_revision(cluster: &Cluster, bucket: &str) -> Result<u64, StoreError> {
    let mut stream = cluster
        .jetstream
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|e| store_error(bucket, e))?;
    let info = stream.info().await.map_err(|e| store_error(bucket, e))?;
    Ok(info.state.last_sequence)
}

/// Every live entry of a bucket (key, value, revision).
pub(super) async fn entries(store: &kv::Store) -> Result<Vec<kv::Entry>, StoreError> {
    let mut keys = store.keys().await.map_err(|e| store_error("keys", e))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        names.push(key.map_err(|e| store_error("keys", e))?);
    }
    let mut out = Vec::with_capacity(names.len());
    for key in names {
        if let Some(entry) = store
            .entry(key)
            .await
            .map_err(|e| store_error("entry", e))?
            && entry.operation == kv::Operation::Put
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// How long a watch may be quiet before it is checked against the bucket's last revision.
const CHECK_EVERY: Duration = Duration::from_secs(3);

/// Watches every key of `store` after revision `after`, forever, sending each entry through
/// `send` until it says no. A watch is a consumer that NATS 2.9 may place on a NATS server
/// that is down, where it delivers nothing and may never report an error; so a watch that is
/// quiet while the bucket has moved past what it delivered, two checks in a row, is given
/// up: the bucket is read whole and the watch opened again. A broken watch is opened again
/// from the last revision seen. `send` sees some entries more than once, and must ignore
/// revisions it has applied.
pub(super) fn watch(
    store: kv::Store,
    after: Arc<AtomicU64>,
    mut send: impl FnMut(kv::Entry) -> bool + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            let from = after.load(Ordering::Relaxed) + 1;
            let mut watch = match store.watch_all_from_revision(from).await {
                Ok(watch) => watch,
                Err(e) => {
                    tracing::warn!(bucket = %store.name, error = %e, "cannot watch the bucket; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut behind = false;
            loop {
                match tokio::time::timeout(CHECK_EVERY, watch.next()).await {
                    Ok(Some(Ok(entry))) => {
                        behind = false;
                        after.fetch_max(entry.revision, Ordering::Relaxed);
                        if !send(entry) {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::warn!(bucket = %store.name, error = %e, "the bucket's watch broke; opening it again");
                        break;
                    }
                    Ok(None) => break,
                    Err(_quiet) => {
                        let moved = match store.stream.clone().info().await {
                            Ok(info) => info.state.last_sequence > after.load(Ordering::Relaxed),
                            Err(_) => false,
                        };
                        if moved && behind {
                            tracing::warn!(bucket = %store.name, "the bucket's watch stopped delivering; reading the bucket again");
                            if !resync(&store, &after, &mut send).await {
                                return;
                            }
                            break;
                        }
                        behind = moved;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Sends every live entry of `store` through `send`, and notes the bucket's last revision
/// read; `false` when `send` said to stop.
async fn resync(
    store: &kv::Store,
    after: &AtomicU64,
    send: &mut impl FnMut(kv::Entry) -> bool,
) -> bool {
    let last = match store.stream.clone().info().await {
        Ok(info) => info.state.last_sequence,
        Err(_) => return true,
    };
    match entries(store).await {
        Ok(all) => {
            for entry in all {
                if !send(entry) {
                    return false;
                }
            }
            // What was deleted meanwhile is not in the entries; what comes after is watched.
            after.fetch_max(last, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(bucket = %store.name, error = %e, "could not read the bucket again")
        }
    }
    true
}

#[async_trait::async_trait]
impl ServiceStore for NatsServices {
    async fn load(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let last = last_revision(&self.cluster, names::SERVICES).await?;
        self.loaded_at.store(last, Ordering::Relaxed);
        Ok(entries(&self.kv)
            .await?
            .into_iter()
            .map(|entry| StoredDefinition {
                name: entry.key,
                bytes: entry.value.to_vec(),
                revision: entry.revision,
            })
            .collect())
    }

    async fn create(&self, name: &str, definition: &[u8]) -> Result<Revision, StoreError> {
        let bytes = bytes::Bytes::copy_from_slice(definition);
        self.kv.create(name, bytes).await.map_err(|e| {
            if super::lost_race(e.kind() == kv::CreateErrorKind::AlreadyExists, &e) {
                StoreError::Conflict(name.to_string())
            } else {
                store_error("storing the service", e)
            }
        })
    }

    async fn update(
        &self,
        name: &str,
        definition: &[u8],
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        let bytes = bytes::Bytes::copy_from_slice(definition);
        self.kv.update(name, bytes, expected).await.map_err(|e| {
            if super::lost_race(e.kind() == kv::UpdateErrorKind::WrongLastRevision, &e) {
                StoreError::Conflict(name.to_string())
            } else {
                store_error("storing the service", e)
            }
        })
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.kv
            .delete(name)
            .await
            .map_err(|e| store_error("deleting the service", e))
    }

    async fn fetch(&self, name: &str) -> Result<Option<StoredDefinition>, StoreError> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| store_error("reading the service", e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|entry| StoredDefinition {
                name: entry.key,
                bytes: entry.value.to_vec(),
                revision: entry.revision,
            }))
    }

    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ServiceChange>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        watch(self.kv.clone(), self.loaded_at.clone(), move |entry| {
            let change = match entry.operation {
                kv::Operation::Put => ServiceChange::Put(StoredDefinition {
                    name: entry.key,
                    bytes: entry.value.to_vec(),
                    revision: entry.revision,
                }),
                kv::Operation::Delete | kv::Operation::Purge => ServiceChange::Deleted {
                    name: entry.key,
                    revision: entry.revision,
                },
            };
            sender.send(change).is_ok()
        });
        Some(receiver)
    }
}
