//! Which server runs a once-per-cluster task (the storage poller): the holder of a lease, a
//! key in the JetStream key-value bucket `oscar_leases` whose entries expire. The holder
//! renews it (compare-and-set on its revision) every third of its lifetime; when the holder
//! stops or dies, the key expires and the next server to try takes it.

use super::{Cluster, names};
use async_nats::jetstream::kv;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a lease lasts without renewal.
const LIFETIME: Duration = Duration::from_secs(9);

/// Keeps trying to hold the lease `name`, setting `held` while this server holds it, until
/// `stop` turns true (the lease is then given up).
pub async fn hold(
    cluster: Cluster,
    name: String,
    held: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let store: kv::Store = loop {
        match cluster.key_value(names::LEASES, LIFETIME).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the lease bucket; retrying");
                tokio::select! {
                    () = tokio::time::sleep(LIFETIME / 3) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
            }
        }
    };
    let me = uuid::Uuid::new_v4().to_string();
    let mut revision: Option<u64> = None;
    loop {
        revision = match revision {
            None => store.create(&name, me.clone().into()).await.ok(),
            Some(r) => store.update(&name, me.clone().into(), r).await.ok(),
        };
        let holds = revision.is_some();
        if held.swap(holds, Ordering::Relaxed) != holds {
            tracing::info!(lease = %name, holds, "cluster lease changed hands");
        }
        tokio::select! {
            () = tokio::time::sleep(LIFETIME / 3) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    held.store(false, Ordering::Relaxed);
    if let Some(r) = revision {
        // Given up at once, so that another server takes over without waiting.
        let _ = store.delete_expect_revision(&name, Some(r)).await;
    }
}
