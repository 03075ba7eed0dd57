//! Packages of script services: a zip of pure-Python packages (what `pip install --target lib`
//! leaves, zipped) that a Python service names in its definition (`"packages":
//! "sha256:<hex>"`) and finds unpacked, read-only, at `/oscar/app/lib` on its `sys.path`.
//!
//! Zips are stored content-addressed like modules ([`ModuleBlobs`]: a folder on one machine,
//! a NATS object store in a cluster), checked when uploaded (a readable zip whose every
//! entry stays inside the folder, within [`MAX_ENTRIES`] and [`MAX_UNPACKED`]) and checked
//! again, byte by byte, when unpacked, since a zip's declared sizes can lie.

use crate::modules::{Digest, ModuleBlobs};
use crate::stores::StoreError;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;

/// Files and folders a package zip may hold.
pub const MAX_ENTRIES: usize = 20_000;
/// Bytes a package zip may unpack to.
pub const MAX_UNPACKED: u64 = 256 << 20;

/// Why a zip cannot be a package, or a package cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not a zip this server can read, or one outside the limits: the uploader's to fix.
    #[error("not a usable package zip: {0}")]
    Invalid(String),
    /// No package with that digest.
    #[error("no package {0}: upload it to /system/packages first")]
    NotFound(Digest),
    /// The store failed.
    #[error("package store: {0}")]
    Store(#[from] StoreError),
    /// Unpacking failed on this server's disk.
    #[error("unpacking a package: {0}")]
    Io(#[from] std::io::Error),
}

/// A stored package, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackageInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size of the zip.
    pub size: u64,
}

/// The result of storing a zip.
#[derive(Debug, Clone)]
pub struct StoredPackage {
    /// Its digest.
    pub digest: Digest,
    /// Files in it.
    pub files: usize,
    /// Bytes it unpacks to.
    pub unpacked: u64,
    /// False when the same bytes were already stored.
    pub created: bool,
}

/// The package store.
#[derive(Clone)]
pub struct Packages {
    blobs: Arc<dyn ModuleBlobs>,
}

impl Packages {
    /// Packages kept by `blobs`.
    pub fn new(blobs: Arc<dyn ModuleBlobs>) -> Self {
        Self { blobs }
    }

    /// Checks and stores a zip.
    pub async fn put(&self, zip: bytes::Bytes) -> Result<StoredPackage, PackageError> {
        let checked = zip.clone();
        let (files, unpacked) = crate::stores::blocking(move || Ok(check(&checked)))
            .await
            .map_err(PackageError::Store)??;
        let digest = Digest::of(&zip);
        let created = !self.blobs.contains(&digest).await?;
        if created {
            self.blobs.write(&digest, &zip).await?;
        }
        Ok(StoredPackage {
            digest,
            files,
            unpacked,
            created,
        })
    }

    /// Whether a package is stored.
    pub async fn contains(&self, digest: &Digest) -> Result<bool, PackageError> {
        Ok(self.blobs.contains(digest).await?)
    }

    /// A package's zip.
    pub async fn read(&self, digest: &Digest) -> Result<Vec<u8>, PackageError> {
        self.blobs
            .read(digest)
            .await?
            .ok_or(PackageError::NotFound(*digest))
    }

    /// Every stored package, ordered by digest.
    pub async fn list(&self) -> Result<Vec<PackageInfo>, PackageError> {
        let mut out: Vec<PackageInfo> = self
            .blobs
            .list()
            .await?
            .into_iter()
            .map(|(digest, size)| PackageInfo {
                digest: digest.to_string(),
                size,
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }
}

/// (files, declared unpacked bytes) of a zip within the limits.
fn check(zip: &[u8]) -> Result<(usize, u64), PackageError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| PackageError::Invalid(e.to_string()))?;
    if archive.len() > MAX_ENTRIES {
        return Err(PackageError::Invalid(format!(
            "{} entries, more than {MAX_ENTRIES}",
            archive.len()
        )));
    }
    let (mut files, mut unpacked) = (0, 0u64);
    let mut seen = std::collections::HashSet::new();
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| PackageError::Invalid(e.to_string()))?;
        let Some(path) = entry.enclosed_name() else {
            return Err(PackageError::Invalid(format!(
                "entry {:?} would land outside its folder",
                entry.name()
            )));
        };
        if !seen.insert(path) {
            return Err(PackageError::Invalid(format!(
                "entry {:?} is in it twice",
                entry.name()
            )));
        }
        if entry.is_file() {
            files += 1;
            unpacked = unpacked.saturating_add(entry.size());
        }
    }
    if unpacked > MAX_UNPACKED {
        return Err(PackageError::Invalid(format!(
            "it unpacks to {unpacked} bytes, more than {MAX_UNPACKED}"
        )));
    }
    Ok((files, unpacked))
}

/// Unpacks a stored zip into `into` (a new folder), never past [`MAX_UNPACKED`] bytes in
/// all, whatever its entries declare; symbolic links and special files are skipped.
pub fn unpack(zip: &[u8], into: &Path) -> Result<(), PackageError> {
    check(zip)?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| PackageError::Invalid(e.to_string()))?;
    let mut budget = MAX_UNPACKED;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| PackageError::Invalid(e.to_string()))?;
        let Some(relative) = entry.enclosed_name() else {
            continue;
        };
        let path = into.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if !entry.is_file() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create_new(&path)?;
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut file)?;
        if written > budget {
            return Err(PackageError::Invalid(format!(
                "it unpacks to more than {MAX_UNPACKED} bytes"
            )));
        }
        budget -= written;
        file.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut out);
        for (name, bytes) in files {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn a_package_unpacks_into_its_folder() {
        let zip = zip_of(&[
            ("greet/__init__.py", b"def hello(): return 'hi'\n"),
            ("greet/data/words.txt", b"a b c"),
        ]);
        assert_eq!(check(&zip).unwrap(), (2, 30));
        let dir = tempfile::tempdir().unwrap();
        let into = dir.path().join("lib");
        unpack(&zip, &into).unwrap();
        assert_eq!(
            std::fs::read(into.join("greet/data/words.txt")).unwrap(),
            b"a b c"
        );
    }

    #[test]
    fn entries_that_leave_the_folder_and_non_zips_are_refused() {
        for name in ["../evil.py", "/etc/evil.py", "a/../../evil.py"] {
            let zip = zip_of(&[(name, b"x")]);
            let e = check(&zip).unwrap_err();
            assert!(e.to_string().contains("outside its folder"), "{name}: {e}");
        }
        assert!(matches!(check(b"not a zip"), Err(PackageError::Invalid(_))));
    }
}
