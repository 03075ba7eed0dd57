//! Per-invocation scratch folders: `<root>/<uuid>/in` (the input file) and `<root>/<uuid>/out`
//! (the output folder). Removed when the [`Scratch`] is dropped, whatever the outcome.

use std::io;
use std::path::{Path, PathBuf};

/// The folder under which invocations get their scratch folders; it belongs to one server.
#[derive(Debug, Clone)]
pub struct ScratchRoot {
    path: PathBuf,
}

impl ScratchRoot {
    /// Creates the root, removing what a previous run of this server left behind (a crash
    /// leaves scratch folders that no one will remove otherwise).
    pub fn prepare(path: PathBuf) -> io::Result<Self> {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh scratch folder with empty `in/` and `out/`.
    pub fn create(&self) -> io::Result<Scratch> {
        let dir = self.path.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&dir)?;
        let scratch = Scratch {
            input: dir.join("in"),
            output: dir.join("out"),
            dir,
        };
        std::fs::create_dir(&scratch.input)?;
        std::fs::create_dir(&scratch.output)?;
        Ok(scratch)
    }
}

/// One invocation's folders; removed on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Host path of the input folder (preopened read-only).
    pub input: PathBuf,
    /// Host path of the output folder (preopened read-write).
    pub output: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove scratch folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_removed_on_drop_and_root_cleaned_on_prepare() {
        let tmp = tempfile::tempdir().unwrap();
        let root = ScratchRoot::prepare(tmp.path().join("root")).unwrap();
        let s = root.create().unwrap();
        std::fs::write(s.output.join("f"), b"x").unwrap();
        let dir = s.dir.clone();
        drop(s);
        assert!(!dir.exists());
        let leftover = root.create().unwrap();
        let leftover_dir = leftover.dir.clone();
        std::mem::forget(leftover);
        let _root = ScratchRoot::prepare(tmp.path().join("root")).unwrap();
        assert!(!leftover_dir.exists());
    }
}
