//! Per-invocation scratch folders: `<root>/<uuid>/in` (the input file) and `<root>/<uuid>/out`
//! (the output folder), emptied when the [`Scratch`] is dropped, whatever the outcome.
//!
//! Emptied folders go back to a pool and are handed to later invocations: creating and removing
//! three folders per call was a fifth of the server's time under load. What a guest sees is
//! the same either way: an input folder holding only its own input and an empty output folder.
//! A folder that cannot be emptied completely is removed instead of pooled.
//!
//! The root belongs to one server, which holds a lock on `<root>/.lock` while it runs. The
//! root is removed at shutdown; a killed server cannot do that, so each start also removes the
//! roots of dead servers beside its own (`oscar-wasm-*` folders whose lock nobody holds): they
//! hold users' inputs and outputs, in memory when the root is on tmpfs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prefix of the scratch roots this program names itself (see `ServeArgs::scratch_root`).
pub const ROOT_PREFIX: &str = "oscar-wasm-";
/// The lock file inside a root.
const LOCK_FILE: &str = ".lock";
/// A root from a version without lock files is taken as dead once unchanged for this long.
const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);
/// Emptied scratch folders kept for reuse; more than this many at once are removed. Folders
/// are made only when the pool is empty, so it holds at most the peak of concurrent calls.
const POOL_CAP: usize = 1024;

/// The folder under which invocations get their scratch folders; it belongs to one server.
#[derive(Debug, Clone)]
pub struct ScratchRoot {
    path: PathBuf,
    pool: Arc<Mutex<Vec<PathBuf>>>,
    _lock: Arc<std::fs::File>,
}

impl ScratchRoot {
    /// Creates the root, removing what a previous run of this server left behind (a crash
    /// leaves scratch folders that no one will remove otherwise).
    ///
    /// The caller owns `path` (it holds the data folder's lock).
    pub fn prepare(path: PathBuf) -> io::Result<Self> {
        remove_dead_siblings(&path);
        crate::fsutil::remove_tree(&path)?;
        // Owner-only: the folders hold users' inputs and outputs.
        crate::fsutil::create_private_dir(&path)?;
        let lock = std::fs::File::create(path.join(LOCK_FILE))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                io::Error::other(format!("{} is in use by another server", path.display()))
            }
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(Self {
            path,
            pool: Arc::default(),
            _lock: Arc::new(lock),
        })
    }

    /// Removes the root and everything in it (at shutdown).
    pub fn remove(&self) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Err(e) = crate::fsutil::remove_tree(&self.path) {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the scratch root");
        }
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scratch folder with empty `in/` and `out/`: an emptied one from the pool, else new.
    pub fn create(&self) -> io::Result<Scratch> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(dir) = pooled {
            return Ok(Scratch::new(dir, self.pool.clone()));
        }
        let dir = self.path.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&dir)?;
        // Built before the folders exist, so a failure below removes what was made.
        let scratch = Scratch::new(dir, self.pool.clone());
        std::fs::create_dir(&scratch.input)?;
        std::fs::create_dir(&scratch.output)?;
        Ok(scratch)
    }

    /// Emptied folders waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Removes the `oscar-wasm-*` roots beside `own` whose servers are gone: their lock is free,
/// or (roots of versions before the lock) they have not changed for an hour.
fn remove_dead_siblings(own: &Path) {
    let named_by_us = own
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(ROOT_PREFIX));
    let Some(parent) = own.parent().filter(|_| named_by_us) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(ROOT_PREFIX));
        if !ours || path == own || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dead = match std::fs::File::open(path.join(LOCK_FILE)) {
            Ok(lock) => lock.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_GRACE),
        };
        if dead {
            match crate::fsutil::remove_tree(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed a dead server's scratch folder")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove a dead server's scratch folder")
                }
            }
        }
    }
}

/// One invocation's folders; emptied and pooled (or removed) on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Host path of the input folder (preopened read-only).
    pub input: PathBuf,
    /// Host path of the output folder (preopened read-write).
    pub output: PathBuf,
    pool: Arc<Mutex<Vec<PathBuf>>>,
}

impl Scratch {
    fn new(dir: PathBuf, pool: Arc<Mutex<Vec<PathBuf>>>) -> Self {
        Self {
            input: dir.join("in"),
            output: dir.join("out"),
            dir,
            pool,
        }
    }

    /// Empties both folders; `Err` leaves the folder unfit for reuse.
    fn empty(&self) -> io::Result<()> {
        crate::fsutil::empty_dir(&self.input)?;
        crate::fsutil::empty_dir(&self.output)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.empty().is_ok() {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_CAP {
                pool.push(std::mem::take(&mut self.dir));
                return;
            }
        }
        // Iterative: a guest may have left a tree too deep for a recursive removal.
        if let Err(e) = crate::fsutil::remove_tree(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove scratch folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_emptied_and_reused_and_root_cleaned_on_prepare() {
        let tmp = tempfile::tempdir().unwrap();
        let root = ScratchRoot::prepare(tmp.path().join("root")).unwrap();
        let s = root.create().unwrap();
        std::fs::write(s.input.join("event-file"), b"x").unwrap();
        std::fs::write(s.output.join("f"), b"x").unwrap();
        std::fs::create_dir_all(s.output.join("a/b")).unwrap();
        let dir = s.dir.clone();
        drop(s);
        assert_eq!(root.pooled(), 1);
        let again = root.create().unwrap();
        assert_eq!(again.dir, dir, "the emptied folder is reused");
        assert_eq!(std::fs::read_dir(&again.input).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&again.output).unwrap().count(), 0);
        // A folder that cannot be emptied (here: out/ replaced by a symlink) is removed.
        std::fs::remove_dir(&again.output).unwrap();
        std::os::unix::fs::symlink(tmp.path(), &again.output).unwrap();
        drop(again);
        assert!(!dir.exists());
        assert_eq!(root.pooled(), 0);
        assert!(tmp.path().join("root").exists(), "the symlink was followed");
        let leftover = root.create().unwrap();
        let leftover_dir = leftover.dir.clone();
        std::mem::forget(leftover);
        drop(root);
        let _root = ScratchRoot::prepare(tmp.path().join("root")).unwrap();
        assert!(!leftover_dir.exists());
    }

    #[test]
    fn dead_servers_roots_are_removed_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let live = ScratchRoot::prepare(tmp.path().join("oscar-wasm-live")).unwrap();
        let dead = ScratchRoot::prepare(tmp.path().join("oscar-wasm-dead")).unwrap();
        let left = dead.create().unwrap();
        std::fs::write(left.input.join("secret"), b"x").unwrap();
        std::mem::forget(left);
        drop(dead);
        std::fs::create_dir(tmp.path().join("unrelated")).unwrap();
        let _own = ScratchRoot::prepare(tmp.path().join("oscar-wasm-own")).unwrap();
        assert!(live.path().exists());
        assert!(!tmp.path().join("oscar-wasm-dead").exists());
        assert!(tmp.path().join("unrelated").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(live.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
    }
}
