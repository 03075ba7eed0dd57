//! Small state documents kept whole as JSON: the run-time settings of `PUT /system/config`,
//! the records of buckets made through `/system/buckets`, and the OIDC users' store keys. On
//! one machine each is a file in the data folder ([`LocalDocuments`]); in a cluster, a key of
//! the NATS key-value bucket `oscar_documents` (`crate::cluster::documents`), which every
//! server watches, so that every server answers the same. A change is compare-and-set on the
//! document's revision and made again on a lost race, so two servers changing one document
//! at once both land.

use crate::stores::{StoreError, blocking};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A document's version in its store; 0 for one not stored yet.
pub type Revision = u64;

/// A change another server made.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The document.
    pub name: String,
    /// Its JSON.
    pub bytes: Vec<u8>,
    /// Its revision.
    pub revision: Revision,
}

/// Where documents are kept. Blocking: call off the async reactor.
#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync {
    /// A document's bytes (`None` when it is not stored) and revision.
    async fn load(&self, name: &str) -> Result<(Option<Vec<u8>>, Revision), StoreError>;
    /// Stores a document if it is still at revision `expected`: its new revision, or `None`
    /// when another change landed first.
    async fn save(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Revision,
    ) -> Result<Option<Revision>, StoreError>;
    /// Changes other servers make, for a store shared with them; `None` otherwise.
    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Changed>> {
        None
    }
}

/// Documents as files, `<data_dir>/<name>.json`, written atomically. This server is their only
/// writer, so revisions only count its own changes.
pub struct LocalDocuments(Files);

/// The folder and the revisions, for the blocking tasks that read and write them.
#[derive(Clone)]
struct Files {
    dir: PathBuf,
    revisions: Arc<Mutex<HashMap<String, Revision>>>,
}

impl LocalDocuments {
    /// Documents in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self(Files {
            dir: data_dir.to_path_buf(),
            revisions: Arc::default(),
        })
    }
}

impl Files {
    fn revisions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Revision>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl DocumentStore for LocalDocuments {
    async fn load(&self, name: &str) -> Result<(Option<Vec<u8>>, Revision), StoreError> {
        let this = self.0.clone();
        let name = name.to_string();
        blocking(move || this.load(&name).map_err(StoreError::from)).await
    }

    async fn save(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Revision,
    ) -> Result<Option<Revision>, StoreError> {
        let this = self.0.clone();
        let name = name.to_string();
        let bytes = bytes.to_vec();
        blocking(move || this.save(&name, &bytes, expected).map_err(StoreError::from)).await
    }
}

impl Files {
    fn load(&self, name: &str) -> io::Result<(Option<Vec<u8>>, Revision)> {
        let revision = self.revisions().get(name).copied().unwrap_or(0);
        match std::fs::read(self.dir.join(format!("{name}.json"))) {
            Ok(bytes) => Ok((Some(bytes), revision)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((None, revision)),
            Err(e) => Err(e),
        }
    }

    fn save(&self, name: &str, bytes: &[u8], expected: Revision) -> io::Result<Option<Revision>> {
        let mut revisions = self.revisions();
        let current = revisions.entry(name.to_string()).or_default();
        if *current != expected {
            return Ok(None);
        }
        crate::fsutil::atomic_write(&self.dir.join(format!("{name}.json")), bytes)?;
        *current += 1;
        Ok(Some(*current))
    }
}

/// One document in memory, over its store.
pub struct Document<T> {
    store: Arc<dyn DocumentStore>,
    name: &'static str,
    /// The value and its revision. Never held while the store works: request handlers read it
    /// on the async workers, and a shared store's writes wait on the network.
    current: RwLock<(T, Revision)>,
    /// Serialises this server's changes.
    writer: tokio::sync::Mutex<()>,
}

impl<T> std::fmt::Debug for Document<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How often a change is made again after losing races before it gives up.
const ATTEMPTS: usize = 16;

impl<T: Serialize + DeserializeOwned + Default + Clone + Send + Sync> Document<T> {
    /// Reads `name` from `store` (none stored yet: the default). A stored document that cannot
    /// be read is an error, never a silent default.
    pub async fn open(
        store: Arc<dyn DocumentStore>,
        name: &'static str,
    ) -> Result<Self, StoreError> {
        let (bytes, revision) = store.load(name).await?;
        let value = parse(name, bytes.as_deref())?;
        Ok(Self {
            store,
            name,
            current: RwLock::new((value, revision)),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.current.read().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// Changes the value with `edit` (applied to a copy), stored before memory follows; on a
    /// lost race the document is read again and `edit` applied to what won.
    pub async fn update<R: Send>(
        &self,
        mut edit: impl FnMut(&mut T) -> R + Send,
    ) -> Result<R, StoreError> {
        let _writer = self.writer.lock().await;
        let (mut next, mut revision) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for _ in 0..ATTEMPTS {
            let mut edited = next.clone();
            let result = edit(&mut edited);
            let bytes = serde_json::to_vec_pretty(&edited).map_err(io::Error::other)?;
            if let Some(stored) = self.store.save(self.name, &bytes, revision).await? {
                self.replace(edited, stored);
                return Ok(result);
            }
            let (bytes, stored) = self.store.load(self.name).await?;
            next = parse(self.name, bytes.as_deref())?;
            revision = stored;
            self.replace(next.clone(), revision);
        }
        Err(StoreError::Conflict(format!(
            "{} (it kept changing under this change; try again)",
            self.name
        )))
    }

    /// Applies another server's version, if it is newer than this one; whether it was.
    pub fn apply(&self, bytes: &[u8], revision: Revision) -> bool {
        match parse::<T>(self.name, Some(bytes)) {
            Ok(value) => self.replace(value, revision),
            Err(e) => {
                tracing::warn!(document = self.name, error = %e, "another server stored a document this one cannot read; kept its own");
                false
            }
        }
    }

    fn replace(&self, value: T, revision: Revision) -> bool {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // The same revision again (a watch read again) changes nothing.
        if current.1 >= revision && current.1 != 0 {
            return false;
        }
        *current = (value, revision);
        true
    }
}

fn parse<T: DeserializeOwned + Default>(name: &str, bytes: Option<&[u8]>) -> io::Result<T> {
    match bytes {
        None => Ok(T::default()),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| io::Error::other(format!("{name} is not valid: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose first save always loses the race, as if another server wrote first.
    struct Racy {
        inner: LocalDocuments,
        lost: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl DocumentStore for Racy {
        async fn load(&self, name: &str) -> Result<(Option<Vec<u8>>, Revision), StoreError> {
            self.inner.load(name).await
        }

        async fn save(
            &self,
            name: &str,
            bytes: &[u8],
            expected: Revision,
        ) -> Result<Option<Revision>, StoreError> {
            let first = !std::mem::replace(&mut *self.lost.lock().unwrap(), true);
            if first {
                // The other server's change lands first.
                self.inner.save(name, br#"{"other": 1}"#, expected).await?;
                return Ok(None);
            }
            self.inner.save(name, bytes, expected).await
        }
    }

    #[tokio::test]
    async fn a_change_that_loses_a_race_is_made_again_on_what_won() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Racy {
            inner: LocalDocuments::new(dir.path()),
            lost: Mutex::new(false),
        });
        let doc: Document<HashMap<String, u32>> = Document::open(store, "doc").await.unwrap();
        doc.update(|map| map.insert("mine".into(), 2))
            .await
            .unwrap();
        assert_eq!(doc.read(|m| m.len()), 2, "both changes kept");
        let again: Document<HashMap<String, u32>> =
            Document::open(Arc::new(LocalDocuments::new(dir.path())), "doc")
                .await
                .unwrap();
        assert_eq!(again.read(|m| m.get("other").copied()), Some(1));
        assert_eq!(again.read(|m| m.get("mine").copied()), Some(2));
    }

    #[tokio::test]
    async fn an_older_version_from_elsewhere_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let doc: Document<HashMap<String, u32>> =
            Document::open(Arc::new(LocalDocuments::new(dir.path())), "doc")
                .await
                .unwrap();
        assert!(doc.apply(br#"{"a": 1}"#, 5));
        assert!(!doc.apply(br#"{"a": 0}"#, 4));
        assert_eq!(doc.read(|m| m.get("a").copied()), Some(1));
        assert!(!doc.apply(b"not json", 6));
    }
}
