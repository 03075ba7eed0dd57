//! Each OIDC user's own store keys, made at their first login (as OSCAR makes each user a MinIO
//! user) and kept as the document `store-users` ([`crate::documents`]:
//! `<data_dir>/store-users.json`, or shared by a cluster): GET /system/config gives users their own,
//! and the embedded store lets a user's keys reach only that user's buckets, the buckets
//! shared with them, and those of the services they may use. With an external MinIO the same
//! keys become a MinIO user ([`super::minio_users`]).

use crate::documents::{Document, DocumentStore};
use crate::stores::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One user's keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreKeys {
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKeys")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The users' keys, in memory and in their store.
pub struct StoreUsers {
    document: Document<HashMap<String, StoreKeys>>,
    /// Users by access key, rebuilt from the document at each change.
    by_access_key: RwLock<HashMap<String, String>>,
}

impl std::fmt::Debug for StoreUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUsers").finish_non_exhaustive()
    }
}

/// The keys' document name.
pub const DOCUMENT: &str = "store-users";

impl StoreUsers {
    #[cfg(test)]
    /// Loads `<data_dir>/store-users.json` (none yet: no users).
    pub async fn open(data_dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_in(Arc::new(crate::documents::LocalDocuments::new(data_dir))).await
    }

    /// Loads the keys from `store`.
    pub async fn open_in(store: Arc<dyn DocumentStore>) -> Result<Self, StoreError> {
        let users = Self {
            document: Document::open(store, DOCUMENT).await?,
            by_access_key: RwLock::default(),
        };
        users.reindex();
        Ok(users)
    }

    fn reindex(&self) {
        let index = self.document.read(|by_user| {
            by_user
                .iter()
                .map(|(user, keys)| (keys.access_key.clone(), user.clone()))
                .collect()
        });
        *self
            .by_access_key
            .write()
            .unwrap_or_else(|e| e.into_inner()) = index;
    }

    /// `user`'s keys, made and stored the first time.
    pub async fn ensure(&self, user: &str) -> Result<StoreKeys, StoreError> {
        if let Some(keys) = self.get(user) {
            return Ok(keys);
        }
        let fresh = StoreKeys {
            access_key: random("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20),
            secret_key: random(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                40,
            ),
        };
        // Another request (or server) may have made them meanwhile: theirs are kept.
        let keys = self
            .document
            .update(|by_user| {
                by_user
                    .entry(user.to_string())
                    .or_insert_with(|| fresh.clone())
                    .clone()
            })
            .await?;
        self.reindex();
        Ok(keys)
    }

    /// `user`'s keys, if they have logged in.
    pub fn get(&self, user: &str) -> Option<StoreKeys> {
        self.document.read(|by_user| by_user.get(user).cloned())
    }

    /// The user and secret of `access_key`.
    pub fn by_access_key(&self, access_key: &str) -> Option<(String, String)> {
        let user = self
            .by_access_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(access_key)?
            .clone();
        let keys = self.get(&user)?;
        Some((user, keys.secret_key))
    }

    /// Applies another server's version.
    pub fn apply(&self, bytes: &[u8], revision: crate::documents::Revision) -> bool {
        let applied = self.document.apply(bytes, revision);
        if applied {
            self.reindex();
        }
        applied
    }
}

fn random(alphabet: &str, n: usize) -> String {
    use rand::Rng as _;
    let alphabet = alphabet.as_bytes();
    let mut rng = rand::rng();
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_made_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let users = StoreUsers::open(dir.path()).await.unwrap();
        let alice = users.ensure("alice").await.unwrap();
        assert_eq!(users.ensure("alice").await.unwrap(), alice);
        let bob = users.ensure("bob").await.unwrap();
        assert_ne!(alice.access_key, bob.access_key);
        let again = StoreUsers::open(dir.path()).await.unwrap();
        assert_eq!(
            again.by_access_key(&alice.access_key),
            Some(("alice".into(), alice.secret_key.clone()))
        );
        assert_eq!(again.get("bob"), Some(bob));
        assert!(again.by_access_key("nope").is_none());
        assert!(!format!("{alice:?}").contains(&alice.secret_key));
    }
}
