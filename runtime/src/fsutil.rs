//! Crash-safe file writes: a reader (or a restarted server) sees the old file or the new one,
//! never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename,
/// then fsync of the folder so that the rename itself survives a power cut or `kill -9`.
/// Everything this server writes is users' data, so files are owner-only (0600).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, bytes, 0o600)
}

/// A small JSON state file (owner-only): its value, or the default when there is none yet;
/// an error, never a silent default, when it cannot be read.
pub fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> io::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::other(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Writes `value` as pretty JSON with [`atomic_write`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    atomic_write(path, &bytes)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file and makes the removal durable; a missing file is not an error.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// fsyncs a folder, which is what makes a rename or unlink inside it durable on Linux.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes leftovers of writes interrupted by a crash (`.NAME.tmp-*` files).
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Removes a folder and everything under it, however deep (see [`remove_contents`]). Symlinks
/// are removed, never followed. A missing path is not an error. Meant for trees nobody else is
/// changing (a finished invocation's scratch).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let dir = match rustix::fs::open(path, DIR_FLAGS, rustix::fs::Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        // A file or a symlink where a folder was expected: remove that.
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => return fs::remove_file(path),
        Err(e) => return Err(e.into()),
    };
    remove_contents(dir)?;
    fs::remove_dir(path)
}

/// Empties the folder `path` and keeps it. Fails if `path` is not a folder (a symlink
/// included), so a caller recycling a folder never empties one it did not make.
pub fn empty_dir(path: &Path) -> io::Result<()> {
    remove_contents(rustix::fs::open(
        path,
        DIR_FLAGS,
        rustix::fs::Mode::empty(),
    )?)
}

/// How folders are opened for removal: never through a symlink.
const DIR_FLAGS: rustix::fs::OFlags = rustix::fs::OFlags::RDONLY
    .union(rustix::fs::OFlags::DIRECTORY)
    .union(rustix::fs::OFlags::NOFOLLOW)
    .union(rustix::fs::OFlags::CLOEXEC);

/// Removes everything in the open folder `root`, holding two folder handles at a time and no
/// recursion: the usual recursive removal opens one handle per level (a folder 6,000 levels
/// deep exhausts the open-file limit, and its stack) and builds paths longer than the kernel
/// accepts. It walks down one handle at a time and climbs back through `..`, keeping only the
/// stack of names.
fn remove_contents(root: rustix::fd::OwnedFd) -> io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode};
    let mut current = root;
    let mut names: Vec<std::ffi::CString> = Vec::new();
    loop {
        let mut entries = rustix::fs::Dir::read_from(&current)?;
        let mut down = None;
        while let Some(entry) = entries.read() {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let file_type = match entry.file_type() {
                FileType::Unknown => FileType::from_raw_mode(
                    rustix::fs::statat(&current, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                ),
                known => known,
            };
            if file_type == FileType::Directory {
                down = Some(name.to_owned());
                break;
            }
            rustix::fs::unlinkat(&current, name, AtFlags::empty())?;
        }
        match down {
            Some(name) => {
                current = rustix::fs::openat(&current, &name, DIR_FLAGS, Mode::empty())?;
                names.push(name);
            }
            None => {
                // `current` is empty now: climb to its parent and remove it; done at the root.
                let Some(name) = names.pop() else {
                    return Ok(());
                };
                let parent = rustix::fs::openat(&current, c"..", DIR_FLAGS, Mode::empty())?;
                rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR)?;
                current = parent;
            }
        }
    }
}

/// Creates `path` (and missing parents) readable by its owner only: folders holding secrets
/// or users' data. An existing folder is narrowed to 0700 as well.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    #[cfg(unix)]
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_takes_deep_trees_files_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        // Deeper than PATH_MAX allows as one path, built one level at a time.
        let mut here = fs::File::open(&root).unwrap();
        for i in 0..3000 {
            let name = std::ffi::CString::new("level-of-the-tree").unwrap();
            rustix::fs::mkdirat(&here, &name, rustix::fs::Mode::RWXU).unwrap();
            if i % 100 == 0 {
                rustix::fs::openat(
                    &here,
                    c"file",
                    rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
                    rustix::fs::Mode::RUSR,
                )
                .unwrap();
            }
            let next = rustix::fs::openat(
                &here,
                &name,
                rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            here = fs::File::from(next);
        }
        drop(here);
        let outside = dir.path().join("outside.txt");
        fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dirlink")).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
        remove_tree(&root).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".a.json.tmp-123"), b"x").unwrap();
        fs::write(dir.path().join("b.json"), b"y").unwrap();
        remove_stale_temporaries(dir.path()).unwrap();
        assert!(!dir.path().join(".a.json.tmp-123").exists());
        assert!(dir.path().join("b.json").exists());
    }

    #[test]
    fn empty_dir_keeps_the_folder_and_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a"), b"x").unwrap();
        fs::create_dir_all(root.join("b/c/d")).unwrap();
        fs::write(root.join("b/c/d/e"), b"x").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("kept"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        empty_dir(&root).unwrap();
        assert!(root.is_dir());
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        assert!(outside.join("kept").exists(), "a symlink was followed");
        let link = dir.path().join("link-to-outside");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(empty_dir(&link).is_err());
        assert!(outside.join("kept").exists());
    }
}
