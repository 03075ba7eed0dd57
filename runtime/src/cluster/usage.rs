//! Usage accounts in a cluster ([`crate::usage::store`]): the key-value bucket `oscar_usage`,
//! a key `<hour>.<server>` per hour and server (each server writes only its own keys, so
//! nothing races), entries expiring with the retention, watched by every server.

use super::services::{entries, last_revision, watch};
use super::{Cluster, ClusterError, names, store_error};
use crate::stores::StoreError;
use crate::usage::ledger::HourDoc;
use crate::usage::store::UsageStore;
use async_nats::jetstream::kv;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Usage documents in a key-value bucket.
pub struct NatsUsage {
    kv: kv::Store,
    /// The bucket's last revision when this server opened it: the watch starts after it.
    opened_at: u64,
    /// This server's name in the keys: new at each start, so a restarted server never
    /// overwrites what it saved before.
    me: String,
}

impl NatsUsage {
    /// Opens (creating) the bucket, whose entries last `retention`.
    pub async fn open(cluster: &Cluster, retention: Duration) -> Result<Self, ClusterError> {
        let kv = cluster.key_value(names::USAGE, retention).await?;
        let opened_at =
            last_revision(cluster, names::USAGE)
                .await
                .map_err(|e| ClusterError::JetStream {
                    what: format!("key-value bucket {}", names::USAGE),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            kv,
            opened_at,
            me: uuid::Uuid::new_v4().to_string(),
        })
    }
}

/// A document from an entry, when it is one (a malformed value is skipped with a warning).
fn doc_of(entry: &kv::Entry) -> Option<HourDoc> {
    serde_json::from_slice(&entry.value)
        .inspect_err(|e| tracing::warn!(key = %entry.key, error = %e, "a usage entry is not a usage document"))
        .ok()
}

#[async_trait::async_trait]
impl UsageStore for NatsUsage {
    fn source(&self) -> String {
        self.me.clone()
    }

    async fn load(&self, oldest_hour: u64) -> Result<Vec<HourDoc>, StoreError> {
        Ok(entries(&self.kv)
            .await?
            .iter()
            .filter_map(doc_of)
            .filter(|doc| doc.hour >= oldest_hour)
            .collect())
    }

    async fn save(&self, doc: &HourDoc) -> Result<(), StoreError> {
        let key = format!("{}.{}", doc.hour, doc.source);
        let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
        self.kv
            .put(&key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| store_error(&key, e))
    }

    async fn prune(&self, _oldest_hour: u64) -> Result<(), StoreError> {
        // Entries expire with the bucket's max age, the retention.
        Ok(())
    }

    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<HourDoc>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        // The documents were read at start, after `opened_at`: a document delivered again
        // replaces itself.
        watch(
            self.kv.clone(),
            Arc::new(AtomicU64::new(self.opened_at)),
            move |entry| {
                if entry.operation != kv::Operation::Put {
                    return true;
                }
                doc_of(&entry).is_none_or(|doc| sender.send(doc).is_ok())
            },
        );
        Some(receiver)
    }
}
