//! Content-addressed blobs on one machine, written atomically: modules as
//! `modules/<hex>.wasm` under the data folder, script services' packages as
//! `packages/<hex>.zip`.

use super::{Digest, ModuleBlobs};
use crate::fsutil;
use crate::stores::{StoreError, blocking};
use std::io;
use std::path::{Path, PathBuf};

/// Modules as files in a folder.
pub struct LocalModules(Files);

/// The folder, for the blocking tasks that read and write it.
#[derive(Clone)]
struct Files {
    dir: PathBuf,
    /// The files' extension, with its dot.
    extension: &'static str,
}

impl LocalModules {
    /// Opens (creating) `data_dir/modules`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        Self::open_folder(data_dir, "modules", ".wasm")
    }

    /// Opens (creating) `data_dir/packages`, the packages' zips.
    pub fn open_packages(data_dir: &Path) -> io::Result<Self> {
        Self::open_folder(data_dir, "packages", ".zip")
    }

    fn open_folder(data_dir: &Path, folder: &str, extension: &'static str) -> io::Result<Self> {
        let dir = data_dir.join(folder);
        fsutil::create_private_dir(&dir)?;
        fsutil::remove_stale_temporaries(&dir)?;
        Ok(Self(Files { dir, extension }))
    }
}

impl Files {
    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}{}", digest.hex(), self.extension))
    }
}

#[async_trait::async_trait]
impl ModuleBlobs for LocalModules {
    async fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        let this = self.0.clone();
        let digest = *digest;
        blocking(move || this.contains(&digest).map_err(StoreError::from)).await
    }

    async fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let this = self.0.clone();
        let digest = *digest;
        blocking(move || this.read(&digest).map_err(StoreError::from)).await
    }

    async fn write(&self, digest: &Digest, wasm: &[u8]) -> Result<(), StoreError> {
        let this = self.0.clone();
        let digest = *digest;
        let wasm = wasm.to_vec();
        blocking(move || this.write(&digest, &wasm).map_err(StoreError::from)).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let this = self.0.clone();
        let digest = *digest;
        blocking(move || this.delete(&digest).map_err(StoreError::from)).await
    }

    async fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let this = self.0.clone();
        blocking(move || this.list().map_err(StoreError::from)).await
    }
}

impl Files {
    fn contains(&self, digest: &Digest) -> io::Result<bool> {
        self.path(digest).try_exists()
    }

    fn read(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(digest)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, digest: &Digest, wasm: &[u8]) -> io::Result<()> {
        fsutil::atomic_write(&self.path(digest), wasm)
    }

    fn delete(&self, digest: &Digest) -> io::Result<bool> {
        if !self.path(digest).try_exists()? {
            return Ok(false);
        }
        fsutil::remove_durably(&self.path(digest))?;
        Ok(true)
    }

    fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|n| n.strip_suffix(self.extension))
                .and_then(|hex| Digest::parse(hex).ok())
            else {
                continue;
            };
            out.push((digest, entry.metadata()?.len()));
        }
        Ok(out)
    }
}
