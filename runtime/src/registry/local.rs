//! The registry's store on one machine: one file per service under the data folder
//! (`services/<name>.json`, written atomically). Revisions live in memory: one server is the
//! only writer, so they only have to order its own changes.

use super::{Revision, ServiceStore, StoredDefinition};
use crate::fsutil;
use crate::stores::{StoreError, blocking};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Definitions as files in a folder.
pub struct LocalServices(Arc<Folder>);

/// The folder and the revisions, shared with the blocking tasks that write it.
struct Folder {
    dir: PathBuf,
    /// Each stored service's revision, and the last revision given out.
    revisions: Mutex<(HashMap<String, Revision>, Revision)>,
}

impl LocalServices {
    /// Opens (creating) `data_dir/services`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("services");
        fsutil::create_private_dir(&dir)?;
        fsutil::remove_stale_temporaries(&dir)?;
        Ok(Self(Arc::new(Folder {
            dir,
            revisions: Mutex::default(),
        })))
    }
}

#[async_trait::async_trait]
impl ServiceStore for LocalServices {
    async fn load(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let folder = self.0.clone();
        blocking(move || folder.load()).await
    }

    async fn create(&self, name: &str, definition: &[u8]) -> Result<Revision, StoreError> {
        let (folder, name, definition) = (self.0.clone(), name.to_string(), definition.to_vec());
        blocking(move || folder.create(&name, &definition)).await
    }

    async fn update(
        &self,
        name: &str,
        definition: &[u8],
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        let (folder, name, definition) = (self.0.clone(), name.to_string(), definition.to_vec());
        blocking(move || folder.update(&name, &definition, expected)).await
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let (folder, name) = (self.0.clone(), name.to_string());
        blocking(move || folder.delete(&name)).await
    }
}

impl Folder {
    fn path(&self, name: &str) -> PathBuf {
        // Names are validated DNS labels, so they are safe as file names.
        self.dir.join(format!("{name}.json"))
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, (HashMap<String, Revision>, Revision)> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next revision, recorded for `name`.
    fn bump(revisions: &mut (HashMap<String, Revision>, Revision), name: &str) -> Revision {
        revisions.1 += 1;
        revisions.0.insert(name.to_string(), revisions.1);
        revisions.1
    }
}

impl Folder {
    fn load(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let mut found = Vec::new();
        let mut revisions = self.revisions();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            match std::fs::read(&path) {
                Ok(bytes) => found.push(StoredDefinition {
                    revision: Self::bump(&mut revisions, name),
                    name: name.to_string(),
                    bytes,
                }),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "skipping unreadable service definition")
                }
            }
        }
        Ok(found)
    }

    fn create(&self, name: &str, definition: &[u8]) -> Result<Revision, StoreError> {
        let mut revisions = self.revisions();
        if revisions.0.contains_key(name) {
            return Err(StoreError::Conflict(name.to_string()));
        }
        fsutil::atomic_write(&self.path(name), definition)?;
        Ok(Self::bump(&mut revisions, name))
    }

    fn update(
        &self,
        name: &str,
        definition: &[u8],
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        let mut revisions = self.revisions();
        match revisions.0.get(name) {
            None => return Err(StoreError::NotFound(name.to_string())),
            Some(&current) if current != expected => {
                return Err(StoreError::Conflict(name.to_string()));
            }
            Some(_) => {}
        }
        fsutil::atomic_write(&self.path(name), definition)?;
        Ok(Self::bump(&mut revisions, name))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let mut revisions = self.revisions();
        if revisions.0.remove(name).is_none() {
            return Err(StoreError::NotFound(name.to_string()));
        }
        fsutil::remove_durably(&self.path(name))?;
        Ok(())
    }
}
