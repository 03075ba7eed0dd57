//! Keeps the users of an external MinIO (`--storage-minio-admin`) in step with OSCAR's rules:
//! a user is provisioned at their first request after each start, and after any change to
//! buckets or services every provisioned user's policy is written again. The MinIO side is
//! [`crate::storage::minio_users`]; which buckets a user may reach is [`crate::access`]'s.

use crate::app::App;
use std::sync::Arc;

/// The buckets of `minio.default` that `sub` may read and write.
pub async fn user_buckets(app: &App, sub: &str) -> Result<Vec<String>, String> {
    let buckets = app
        .bucket_admin
        .list()
        .await
        .map_err(|e| format!("listing the store's buckets: {e}"))?;
    Ok(buckets
        .into_iter()
        .map(|b| b.name)
        .filter(|name| {
            crate::access::bucket_facts(&app.bucket_records, &app.registry, name).open_to(sub)
        })
        .collect())
}

/// Makes `sub` a MinIO user with their keys and policy, unless done since start.
pub async fn provision(app: &App, sub: &str) -> Result<(), String> {
    let Some(users) = &app.minio_users else {
        return Ok(());
    };
    if users.is_provisioned(sub) {
        return Ok(());
    }
    let keys = app
        .store_users
        .get(sub)
        .ok_or_else(|| format!("{sub} has no store keys"))?;
    let buckets = user_buckets(app, sub).await?;
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

/// Rewrites every provisioned user's policy after each change, until `stop` turns true.
pub async fn keep_policies(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(users) = app.minio_users.clone() else {
        return;
    };
    loop {
        tokio::select! {
            () = users.next_change() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        for sub in users.provisioned() {
            let Some(keys) = app.store_users.get(&sub) else {
                continue;
            };
            let written = match user_buckets(&app, &sub).await {
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
