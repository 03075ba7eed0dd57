//! Who is in the cluster: each server announces itself every few seconds as a key of the
//! JetStream key-value bucket `oscar_members`, whose entries expire; the members are the keys
//! alive. GET /system/status counts them (OSCAR's nodes and replicas).

use super::{Cluster, names};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long an announcement lasts: a server that stops announcing leaves the count after it.
const LIFETIME: Duration = Duration::from_secs(15);

/// Announces this server until `stop` turns true, keeping `members` at the number of servers
/// announced (itself included); its key is withdrawn at the end.
pub async fn announce(
    cluster: Cluster,
    members: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let me = uuid::Uuid::new_v4().to_string();
    let mut store = None;
    loop {
        if store.is_none() {
            store = cluster
                .key_value(names::MEMBERS, LIFETIME)
                .await
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot open the members bucket; retrying"),
                )
                .ok();
        }
        if let Some(store) = &store {
            let host = hostname();
            if let Err(e) = store.put(&me, host.into()).await {
                tracing::debug!(error = %e, "could not announce this server");
            }
            if let Ok(keys) = store.keys().await {
                use futures::StreamExt as _;
                let alive = keys.filter(|k| std::future::ready(k.is_ok())).count().await;
                members.store(alive.max(1), Ordering::Relaxed);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LIFETIME / 3) => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    if let Some(store) = store {
        // Withdrawn at once, so that the others count one fewer without waiting.
        let _ = store.purge(&me).await;
    }
}

/// This machine's name, for whoever lists the members.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
