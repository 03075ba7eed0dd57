//! What OSCAR keeps about a bucket besides its objects (in MinIO, as tags and policies): who
//! owns it, its visibility and the users allowed on it. Here they are records in
//! the document `buckets` ([`crate::documents`]: `<data_dir>/buckets.json`, or shared by a
//! cluster), kept for the buckets created through `/system/buckets`; a service's buckets take
//! theirs from the service, and buckets made straight through S3 have none.

use crate::documents::{Document, DocumentStore};
use crate::stores::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// At most this many users may be named on one bucket.
pub const MAX_ALLOWED_USERS: usize = 1000;
/// A user name longer than this is refused.
pub const MAX_USER_LEN: usize = 256;

/// Who may see a bucket, OSCAR's three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Its owner only.
    #[default]
    Private,
    /// Every user.
    Public,
    /// Its owner and the users it names.
    Restricted,
}

impl Visibility {
    /// OSCAR's spelling, case-insensitive; empty is private, as OSCAR defaults it.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "private" => Ok(Self::Private),
            "public" => Ok(Self::Public),
            "restricted" => Ok(Self::Restricted),
            other => Err(format!(
                "visibility '{other}' is not one of private, public or restricted"
            )),
        }
    }

    /// OSCAR's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Restricted => "restricted",
        }
    }
}

/// What is kept about one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// The owner's identifier.
    pub owner: String,
    /// The owner's display name.
    pub owner_name: String,
    /// Who may see it.
    pub visibility: Visibility,
    /// The users allowed on a restricted bucket.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// The service a user created the bucket with: while services use it, they decide who
    /// reaches it; once none does, the record does, so its owner keeps it (as OSCAR tags a
    /// service's buckets with their owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Checks the users named on a bucket against the bounds above.
pub fn check_users(users: &[String]) -> Result<(), String> {
    if users.len() > MAX_ALLOWED_USERS {
        return Err(format!(
            "allowed_users names {} users; at most {MAX_ALLOWED_USERS} are kept",
            users.len()
        ));
    }
    match users
        .iter()
        .find(|u| u.is_empty() || u.len() > MAX_USER_LEN)
    {
        Some(bad) => Err(format!(
            "allowed_users has a user name of {} bytes; names have 1 to {MAX_USER_LEN}",
            bad.len()
        )),
        None => Ok(()),
    }
}

/// The records, in memory and in their store.
#[derive(Debug)]
pub struct BucketRecords {
    document: Document<BTreeMap<String, BucketRecord>>,
    /// Counts changes, this server's and the others', for those who follow them.
    changes: tokio::sync::watch::Sender<u64>,
}

/// The records' document name.
pub const DOCUMENT: &str = "buckets";

impl BucketRecords {
    #[cfg(test)]
    /// Loads `<data_dir>/buckets.json` (none yet is no records).
    pub async fn open(data_dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_in(Arc::new(crate::documents::LocalDocuments::new(data_dir))).await
    }

    /// Loads the records from `store`.
    pub async fn open_in(store: Arc<dyn DocumentStore>) -> Result<Self, StoreError> {
        Ok(Self {
            document: Document::open(store, DOCUMENT).await?,
            changes: tokio::sync::watch::channel(0).0,
        })
    }

    /// The record of `bucket`, if one is kept.
    pub fn get(&self, bucket: &str) -> Option<BucketRecord> {
        self.document.read(|records| records.get(bucket).cloned())
    }

    /// The buckets whose record names `owner`.
    pub fn owned_by(&self, owner: &str) -> Vec<String> {
        self.document.read(|records| {
            records
                .iter()
                .filter(|(_, record)| record.owner == owner)
                .map(|(bucket, _)| bucket.clone())
                .collect()
        })
    }

    /// Wakes at every later change of the records (this server's or another's).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Keeps `record` for `bucket`, stored before returning.
    pub async fn put(&self, bucket: &str, record: BucketRecord) -> Result<(), StoreError> {
        self.document
            .update(|records| {
                records.insert(bucket.to_string(), record.clone());
            })
            .await?;
        self.changed();
        Ok(())
    }

    /// Forgets `bucket`.
    pub async fn remove(&self, bucket: &str) -> Result<(), StoreError> {
        self.document
            .update(|records| {
                records.remove(bucket);
            })
            .await?;
        self.changed();
        Ok(())
    }

    /// Applies another server's version.
    pub fn apply(&self, bytes: &[u8], revision: crate::documents::Revision) -> bool {
        let applied = self.document.apply(bytes, revision);
        if applied {
            self.changed();
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(visibility: Visibility) -> BucketRecord {
        BucketRecord {
            owner: "oscar".into(),
            owner_name: "oscar".into(),
            visibility,
            allowed_users: vec!["u1".into()],
            service: None,
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let records = BucketRecords::open(dir.path()).await.unwrap();
        records
            .put("a", record(Visibility::Restricted))
            .await
            .unwrap();
        records.put("b", record(Visibility::Public)).await.unwrap();
        records.remove("b").await.unwrap();
        let again = BucketRecords::open(dir.path()).await.unwrap();
        assert_eq!(again.get("a"), Some(record(Visibility::Restricted)));
        assert_eq!(again.get("b"), None);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_not_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("buckets.json"), b"{").unwrap();
        assert!(BucketRecords::open(dir.path()).await.is_err());
    }

    #[test]
    fn visibility_is_read_as_oscar_spells_it() {
        assert_eq!(Visibility::parse("").unwrap(), Visibility::Private);
        assert_eq!(Visibility::parse("PUBLIC").unwrap(), Visibility::Public);
        assert_eq!(
            Visibility::parse(" restricted ").unwrap(),
            Visibility::Restricted
        );
        assert!(Visibility::parse("everyone").is_err());
    }

    #[test]
    fn user_lists_are_bounded() {
        assert!(check_users(&["a".into()]).is_ok());
        assert!(check_users(&[String::new()]).is_err());
        assert!(check_users(&["x".repeat(MAX_USER_LEN + 1)]).is_err());
        assert!(check_users(&vec!["a".to_string(); MAX_ALLOWED_USERS + 1]).is_err());
    }
}
