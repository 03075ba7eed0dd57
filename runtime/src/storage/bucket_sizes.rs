//! Bytes held by the embedded store's buckets, for the `storage_per_bucket` quota and the
//! `storage_total` OSCAR's quota API reports. A bucket is a folder: its size is the sum of its
//! files' sizes, found by walking it (links are not followed, and s3s-fs keeps its own
//! metadata and upload parts outside the buckets' folders).
//!
//! Writes check against a size at most [`FRESH`] old, plus what the store accepted since: a
//! bucket of many objects is walked once a second at most, however many writes it takes.
//! Writes running at the same moment may together pass the limit by what they carry, as
//! MinIO's own quota (checked against its scanner's totals) may.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a walked size is trusted.
pub const FRESH: Duration = Duration::from_secs(1);

/// The embedded store's bucket sizes.
pub struct BucketSizes {
    root: PathBuf,
    cache: Mutex<HashMap<String, (u64, Instant)>>,
}

impl BucketSizes {
    /// Sizes of the buckets under `root` (the store's folder).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            cache: Mutex::default(),
        }
    }

    /// Bytes in `bucket` now (walked).
    pub fn walk(&self, bucket: &str) -> u64 {
        let size = folder_size(&self.root.join(bucket));
        self.lock()
            .insert(bucket.to_string(), (size, Instant::now()));
        size
    }

    /// Bytes in `bucket`, walked at most [`FRESH`] ago.
    pub fn recent(&self, bucket: &str) -> u64 {
        if let Some((size, at)) = self.lock().get(bucket)
            && at.elapsed() < FRESH
        {
            return *size;
        }
        self.walk(bucket)
    }

    /// Counts `bytes` written into `bucket` until its next walk.
    pub fn added(&self, bucket: &str, bytes: u64) {
        if let Some((size, _)) = self.lock().get_mut(bucket) {
            *size = size.saturating_add(bytes);
        }
    }

    /// The size of the file at `key` in `bucket`, if it is one.
    pub fn object(&self, bucket: &str, key: &str) -> Option<u64> {
        let meta = std::fs::symlink_metadata(self.root.join(bucket).join(key)).ok()?;
        meta.is_file().then_some(meta.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sum of the regular files' sizes under `dir` (0 when it is missing); iterative, so a
/// deep tree cannot exhaust the stack.
fn folder_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    total = total.saturating_add(entry.metadata().map_or(0, |m| m.len()));
                }
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_walked_and_then_follow_writes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/x/y")).unwrap();
        std::fs::write(dir.path().join("b/one"), b"12345").unwrap();
        std::fs::write(dir.path().join("b/x/y/two"), b"123").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("b/link")).unwrap();
        let sizes = BucketSizes::new(dir.path());
        assert_eq!(sizes.recent("b"), 8);
        assert_eq!(sizes.recent("missing"), 0);
        sizes.added("b", 10);
        assert_eq!(sizes.recent("b"), 18, "counted until the next walk");
        assert_eq!(sizes.walk("b"), 8);
        assert_eq!(sizes.object("b", "x/y/two"), Some(3));
        assert_eq!(sizes.object("b", "x"), None);
    }
}
