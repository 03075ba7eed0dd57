//! `mount` of an external store: a read-only copy of the mounted folder, one per service, brought
//! up to date before each invocation (at most every [`FRESH`]) and preopened read-only. OSCAR
//! mounts such a folder with rclone; here the objects are not files of this machine, so they
//! are copied: new and changed objects (by ETag, else modification time) are downloaded,
//! removed ones deleted. What a guest could write would have nowhere to go, so it writes
//! nothing.
//!
//! The folder is bounded ([`MAX_OBJECTS`], [`MAX_BYTES`]) before anything is downloaded past
//! the bound, and a call whose copy cannot be brought up to date fails with the reason.

use super::objects::{self, ObjectError};
use super::spec::{Provider, StoragePath};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a copy is used without listing the folder again.
pub const FRESH: Duration = Duration::from_secs(2);
/// Most objects a mounted folder of an external store may hold.
pub const MAX_OBJECTS: usize = 10_000;
/// Most bytes it may hold.
pub const MAX_BYTES: u64 = 1 << 30;

/// Why a mount's copy could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Listing the folder failed.
    #[error("listing {provider} s3://{bucket}/{folder}: {reason}")]
    List {
        /// The provider reference.
        provider: String,
        /// The bucket.
        bucket: String,
        /// The folder.
        folder: String,
        /// Why.
        reason: String,
    },
    /// The folder is past a bound.
    #[error(
        "the mounted folder s3://{bucket}/{folder} holds more than {MAX_OBJECTS} objects or {MAX_BYTES} bytes; mount a smaller folder"
    )]
    TooLarge {
        /// The bucket.
        bucket: String,
        /// The folder.
        folder: String,
    },
    /// An object could not be downloaded.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The local copy could not be written.
    #[error("writing the mount's local copy: {0}")]
    Io(#[from] std::io::Error),
}

/// The copies, one per service.
#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    each: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Mirror>>>>,
}

/// One service's copy.
#[derive(Debug, Default)]
struct Mirror {
    /// What it copies (provider, endpoint, bucket, folder): another source starts over.
    source: String,
    synced: Option<Instant>,
    /// The version of each file copied, by its path in the folder.
    versions: HashMap<String, String>,
}

impl Mirrors {
    /// Copies kept under `root` (emptied now: they are remade on use).
    pub fn new(root: &Path) -> Self {
        let _ = std::fs::remove_dir_all(root);
        Self {
            root: root.to_path_buf(),
            each: Mutex::default(),
        }
    }

    /// The folder holding `service`'s copy of `mount` of `provider`, up to date within
    /// [`FRESH`].
    pub async fn sync(
        &self,
        service: &str,
        provider: &Provider,
        mount: &StoragePath,
    ) -> Result<PathBuf, MirrorError> {
        let entry = self
            .each
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.to_string())
            .or_default()
            .clone();
        let mut mirror = entry.lock().await;
        let dir = self.root.join(service);
        let source = format!(
            "{} {:?} {} {}",
            provider.reference, provider.endpoint, mount.bucket, mount.folder
        );
        if mirror.source != source {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            *mirror = Mirror {
                source,
                ..Mirror::default()
            };
        }
        if mirror.synced.is_some_and(|at| at.elapsed() < FRESH) {
            return Ok(dir);
        }
        tokio::fs::create_dir_all(&dir).await?;
        let listed = list(provider, mount).await?;
        for (name, (key, version)) in &listed {
            let path = dir.join(name);
            if mirror.versions.get(name) == Some(version) && path.is_file() {
                continue;
            }
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let part = dir.join(format!(".part-{}", uuid::Uuid::new_v4().simple()));
            if let Err(e) = objects::download(provider, &mount.bucket, key, &part).await {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e.into());
            }
            tokio::fs::rename(&part, &path).await?;
        }
        for gone in mirror.versions.keys().filter(|n| !listed.contains_key(*n)) {
            let _ = tokio::fs::remove_file(dir.join(gone)).await;
        }
        mirror.versions = listed.into_iter().map(|(n, (_, v))| (n, v)).collect();
        mirror.synced = Some(Instant::now());
        Ok(dir)
    }
}

/// The folder's objects: their path in the folder, to their key and version. Folder markers,
/// and names a file system could not hold as given, are left out.
async fn list(
    provider: &Provider,
    mount: &StoragePath,
) -> Result<HashMap<String, (String, String)>, MirrorError> {
    let fail = |reason: String| MirrorError::List {
        provider: provider.reference.clone(),
        bucket: mount.bucket.clone(),
        folder: mount.folder.clone(),
        reason,
    };
    let store = objects::bucket(provider, &mount.bucket).map_err(|e| fail(e.to_string()))?;
    let prefix =
        (!mount.folder.is_empty()).then(|| object_store::path::Path::from(mount.folder.as_str()));
    let mut listing = store.list(prefix.as_ref());
    let (mut found, mut bytes) = (HashMap::new(), 0u64);
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| fail(e.to_string()))?;
        let key = meta.location.to_string();
        let name = match mount.folder.as_str() {
            "" => key.as_str(),
            folder => match key.strip_prefix(folder).and_then(|r| r.strip_prefix('/')) {
                Some(name) => name,
                None => continue,
            },
        };
        if name.is_empty()
            || name.starts_with(".part-")
            || name
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            continue;
        }
        bytes = bytes.saturating_add(meta.size);
        if found.len() >= MAX_OBJECTS || bytes > MAX_BYTES {
            return Err(MirrorError::TooLarge {
                bucket: mount.bucket.clone(),
                folder: mount.folder.clone(),
            });
        }
        let version = meta
            .e_tag
            .clone()
            .unwrap_or_else(|| meta.last_modified.to_rfc3339());
        found.insert(name.to_string(), (key.clone(), version));
    }
    Ok(found)
}
