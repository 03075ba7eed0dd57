//! OIDC users as users of an external MinIO (`--storage-minio-admin`), as OSCAR makes them:
//! at a user's first login after each start the server creates (or refreshes) their MinIO
//! user with their keys from [`super::store_users`] and writes their canned policy, which grants
//! the buckets OSCAR's rules open to them ([`crate::access::BucketFacts::open_to`]); whenever
//! buckets or services change, every provisioned user's policy is written again, by one
//! background task that coalesces bursts of changes (`crate::minio_sync::keep_policies`).

use super::minio_admin::{AdminError, MinioAdmin};
use super::store_users::StoreKeys;
use std::collections::HashSet;
use std::sync::Mutex;

/// The MinIO users this server keeps.
pub struct MinioUsers {
    admin: MinioAdmin,
    provisioned: Mutex<HashSet<String>>,
}

impl MinioUsers {
    /// Users kept through `admin`.
    pub fn new(admin: MinioAdmin) -> Self {
        Self {
            admin,
            provisioned: Mutex::default(),
        }
    }

    /// Whether `sub` has been provisioned since this server started.
    pub fn is_provisioned(&self, sub: &str) -> bool {
        self.lock().contains(sub)
    }

    /// Creates `sub`'s MinIO user with `keys` (MinIO updates an existing one) and gives it
    /// exactly `buckets`.
    pub async fn provision(
        &self,
        sub: &str,
        keys: &StoreKeys,
        buckets: &[String],
    ) -> Result<(), AdminError> {
        self.admin
            .add_user(&keys.access_key, &keys.secret_key)
            .await?;
        self.write_policy(keys, buckets).await?;
        self.lock().insert(sub.to_string());
        Ok(())
    }

    /// Rewrites the policy of the user holding `keys` to grant exactly `buckets`.
    pub async fn write_policy(
        &self,
        keys: &StoreKeys,
        buckets: &[String],
    ) -> Result<(), AdminError> {
        // Named by access key: a subject may hold characters MinIO refuses in policy names.
        let name = format!("oscar-wasm-{}", keys.access_key);
        self.admin
            .set_user_buckets(&name, &keys.access_key, buckets)
            .await
    }

    /// The users provisioned since start.
    pub fn provisioned(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.provisioned.lock().unwrap_or_else(|e| e.into_inner())
    }
}
