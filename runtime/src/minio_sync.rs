//! Keeps the users of an external MinIO (`--storage-minio-admin`) in step with OSCAR's rules:
//! a user is provisioned at their first request after each start, and after any change to
//! buckets or services every provisioned user's policy is written again. The MinIO side is
//! [`crate::storage::minio_users`]; which buckets a user may reach is [`crate::access`]'s.

use crate::registry::Registry;
use crate::storage::bucket_records::BucketRecords;
use crate::storage::buckets::BucketAdmin;
use crate::storage::minio_users::MinioUsers;
use crate::storage::store_users::StoreUsers;
use std::sync::Arc;

/// What the sync reads and writes: the store's buckets and their records, the services
/// (whose buckets are open to their users), the users' keys, and MinIO's users.
#[derive(Clone)]
pub struct Parts {
    /// Lists the store's buckets.
    pub bucket_admin: BucketAdmin,
    /// Owners and visibility of buckets made through /system/buckets.
    pub bucket_records: Arc<BucketRecords>,
    /// The services.
    pub registry: Arc<Registry>,
    /// Each user's keys.
    pub store_users: Arc<StoreUsers>,
    /// The MinIO side.
    pub minio_users: Arc<MinioUsers>,
}

/// The buckets of `minio.default` that `sub` may read and write.
pub async fn user_buckets(parts: &Parts, sub: &str) -> Result<Vec<String>, String> {
    let buckets = parts
        .bucket_admin
        .list()
        .await
        .map_err(|e| format!("listing the store's buckets: {e}"))?;
    Ok(buckets
        .into_iter()
        .map(|b| b.name)
        .filter(|name| {
            crate::access::bucket_facts(&parts.bucket_records, &parts.registry, name).open_to(sub)
        })
        .collect())
}

/// Makes `sub` a MinIO user with their keys and policy, unless done since start.
pub async fn provision(parts: &Parts, sub: &str) -> Result<(), String> {
    let users = &parts.minio_users;
    if users.is_provisioned(sub) {
        return Ok(());
    }
    let keys = parts
        .store_users
        .get(sub)
        .ok_or_else(|| format!("{sub} has no store keys"))?;
    let buckets = user_buckets(parts, sub).await?;
    users
        .provision(sub, &keys, &buckets)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        user = sub,
        buckets = buckets.len(),
        "MinIO user provisioned"
    );
    Ok(())
}

/// Rewrites every provisioned user's policy after each change to the services or the bucket
/// records (this server's or another's: it follows the registry's events and the records'
/// changes), until `stop` turns true. Changes that arrive while a rewrite runs are taken
/// together by the next one.
pub async fn keep_policies(parts: Parts, mut stop: tokio::sync::watch::Receiver<bool>) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let users = parts.minio_users.clone();
    let mut services = parts.registry.subscribe();
    let mut records = parts.bucket_records.subscribe();
    loop {
        tokio::select! {
            event = services.recv() => {
                if matches!(event, Err(RecvError::Closed)) {
                    return;
                }
            }
            changed = records.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.wait_for(|stop| *stop) => return,
        }
        while !matches!(
            services.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        records.borrow_and_update();
        for sub in users.provisioned() {
            let Some(keys) = parts.store_users.get(&sub) else {
                continue;
            };
            let written = match user_buckets(&parts, &sub).await {
                Ok(buckets) => users
                    .write_policy(&keys, &buckets)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(user = %sub, error = %e, "could not update the user's MinIO policy");
            }
        }
    }
}
