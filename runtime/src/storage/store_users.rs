//! Each OIDC user's own store keys, made at their first login (as OSCAR makes each user a MinIO
//! user) and kept in `<data_dir>/store-users.json`: GET /system/config gives users their own,
//! and the embedded store lets a user's keys reach only that user's buckets, the buckets
//! shared with them, and those of the services they may use. With an external MinIO the same
//! keys become a MinIO user ([`super::minio_users`]).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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

#[derive(Default)]
struct Tables {
    by_user: HashMap<String, StoreKeys>,
    by_access_key: HashMap<String, String>,
}

/// The users' keys, in memory and on disk.
pub struct StoreUsers {
    path: PathBuf,
    tables: RwLock<Tables>,
}

impl std::fmt::Debug for StoreUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUsers").finish_non_exhaustive()
    }
}

impl StoreUsers {
    /// Loads `<data_dir>/store-users.json` (none yet: no users).
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("store-users.json");
        let by_user: HashMap<String, StoreKeys> = crate::fsutil::read_json_or_default(&path)?;
        let by_access_key = by_user
            .iter()
            .map(|(user, keys)| (keys.access_key.clone(), user.clone()))
            .collect();
        Ok(Self {
            path,
            tables: RwLock::new(Tables {
                by_user,
                by_access_key,
            }),
        })
    }

    /// `user`'s keys, made and kept on disk the first time.
    pub fn ensure(&self, user: &str) -> std::io::Result<StoreKeys> {
        if let Some(keys) = self.get(user) {
            return Ok(keys);
        }
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = tables.by_user.get(user) {
            return Ok(keys.clone());
        }
        let keys = StoreKeys {
            access_key: random("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20),
            secret_key: random(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                40,
            ),
        };
        let mut next = tables.by_user.clone();
        next.insert(user.to_string(), keys.clone());
        crate::fsutil::write_json(&self.path, &next)?;
        tables.by_user = next;
        tables
            .by_access_key
            .insert(keys.access_key.clone(), user.to_string());
        Ok(keys)
    }

    /// `user`'s keys, if they have logged in.
    pub fn get(&self, user: &str) -> Option<StoreKeys> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        tables.by_user.get(user).cloned()
    }

    /// The user and secret of `access_key`.
    pub fn by_access_key(&self, access_key: &str) -> Option<(String, String)> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let user = tables.by_access_key.get(access_key)?;
        let keys = tables.by_user.get(user)?;
        Some((user.clone(), keys.secret_key.clone()))
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

    #[test]
    fn keys_are_made_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let users = StoreUsers::open(dir.path()).unwrap();
        let alice = users.ensure("alice").unwrap();
        assert_eq!(users.ensure("alice").unwrap(), alice);
        let bob = users.ensure("bob").unwrap();
        assert_ne!(alice.access_key, bob.access_key);
        let again = StoreUsers::open(dir.path()).unwrap();
        assert_eq!(
            again.by_access_key(&alice.access_key),
            Some(("alice".into(), alice.secret_key.clone()))
        );
        assert_eq!(again.get("bob"), Some(bob));
        assert!(again.by_access_key("nope").is_none());
        assert!(!format!("{alice:?}").contains(&alice.secret_key));
    }
}
