//! Reads the output folder back after the guest has finished.
//!
//! Everything goes through cap-std's `Dir`, which cannot be led out of the folder: a symlink
//! the guest left pointing at `/etc/passwd` (or anywhere else) is skipped, never followed.

use crate::faas::OutputFile;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io::Read;
use std::path::Path;

/// Deepest folder nesting an output folder may have. Walks over guest-made trees are
/// iterative, so depth cannot overflow the host's stack; this bound keeps the number of folder
/// handles a walk holds open small.
pub const MAX_DEPTH: usize = 64;

/// Caps on what an invocation may return.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// Most entries: files and folders together (an empty folder costs the host memory too).
    pub max_files: usize,
    /// Most bytes, all files together, by their length (a sparse file counts in full: it is
    /// read whole).
    pub max_bytes: u64,
}

/// Why the outputs cannot be returned.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// More entries than allowed.
    #[error("the module wrote more than {0} output files and folders")]
    TooManyFiles(usize),
    /// More bytes than allowed.
    #[error("the module wrote more than {0} bytes of output")]
    TooLarge(u64),
    /// Folders nested deeper than [`MAX_DEPTH`].
    #[error("the module nested output folders more than {MAX_DEPTH} deep")]
    TooDeep,
    /// A name that is not UTF-8 cannot be a zip entry name.
    #[error("output file name {0:?} is not valid UTF-8")]
    BadName(String),
    /// The file system failed.
    #[error("reading the output folder failed: {0}")]
    Io(#[from] std::io::Error),
}

impl OutputError {
    /// Whether the module broke a limit (its fault) rather than the host failing.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Self::TooManyFiles(_) | Self::TooLarge(_) | Self::TooDeep
        )
    }
}

/// What was found, and what was left out.
#[derive(Debug, Default)]
pub struct Collected {
    /// Regular files, with `/`-separated paths relative to the output folder.
    pub files: Vec<OutputFile>,
    /// Paths of entries that are not regular files or folders (symlinks, sockets, ...).
    pub skipped: Vec<String>,
}

/// Counts entries and bytes against the limits as a walk meets them.
struct Budget {
    limits: OutputLimits,
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn new(limits: OutputLimits) -> Self {
        Self {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    fn entry(&mut self) -> Result<(), OutputError> {
        self.entries += 1;
        if self.entries > self.limits.max_files {
            return Err(OutputError::TooManyFiles(self.limits.max_files));
        }
        Ok(())
    }

    fn bytes(&mut self, len: u64) -> Result<(), OutputError> {
        self.bytes = self.bytes.saturating_add(len);
        if self.bytes > self.limits.max_bytes {
            return Err(OutputError::TooLarge(self.limits.max_bytes));
        }
        Ok(())
    }

    fn remaining(&self) -> u64 {
        self.limits.max_bytes.saturating_sub(self.bytes)
    }
}

/// Collects every regular file under `dir`, depth first, without recursion: the stack holds
/// one open folder per level, at most [`MAX_DEPTH`].
pub fn collect(dir: &Path, limits: OutputLimits) -> Result<Collected, OutputError> {
    let root = Dir::open_ambient_dir(dir, ambient_authority())?;
    let mut collected = Collected::default();
    let mut budget = Budget::new(limits);
    let mut stack = vec![(root.entries()?, String::new())];
    while let Some((entries, prefix)) = stack.last_mut() {
        let Some(entry) = entries.next() else {
            stack.pop();
            continue;
        };
        let entry = entry?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| OutputError::BadName(name.to_string_lossy().into_owned()))?;
        let path = format!("{prefix}{name}");
        budget.entry()?;
        // file_type() does not follow symlinks.
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if stack.len() > MAX_DEPTH {
                return Err(OutputError::TooDeep);
            }
            let inner = entry.open_dir()?.entries()?;
            stack.push((inner, format!("{path}/")));
        } else if file_type.is_file() {
            let remaining = budget.remaining();
            let mut bytes = Vec::new();
            // Read one byte past the budget to detect an overflow without reading it all.
            entry
                .open()?
                .take(remaining.saturating_add(1))
                .read_to_end(&mut bytes)?;
            budget.bytes(bytes.len() as u64)?;
            collected.files.push(OutputFile { path, bytes });
        } else {
            collected.skipped.push(path);
        }
    }
    Ok(collected)
}

/// Measures the output folder while the guest runs; `Err` once it holds more than allowed.
/// Symlinks are counted as entries, never followed. Iterative, like [`collect`].
pub fn check_usage(dir: &Path, limits: OutputLimits) -> Result<(), OutputError> {
    let mut budget = Budget::new(limits);
    let mut stack = vec![std::fs::read_dir(dir)?];
    while let Some(entries) = stack.last_mut() {
        let Some(entry) = entries.next() else {
            stack.pop();
            continue;
        };
        let entry = entry?;
        budget.entry()?;
        // DirEntry::metadata does not follow symlinks.
        let meta = entry.metadata()?;
        if meta.is_dir() {
            if stack.len() > MAX_DEPTH {
                return Err(OutputError::TooDeep);
            }
            stack.push(std::fs::read_dir(entry.path())?);
        } else {
            budget.bytes(meta.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OutputLimits = OutputLimits {
        max_files: 10,
        max_bytes: 100,
    };

    #[test]
    fn collects_recursively_and_skips_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::write(tmp.path().join("top.txt"), b"1").unwrap();
        std::fs::write(tmp.path().join("a/b/deep.txt"), b"22").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("escape")).unwrap();
        let mut c = collect(tmp.path(), LIMITS).unwrap();
        c.files.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<_> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/b/deep.txt", "top.txt"]);
        assert_eq!(c.skipped, ["escape"]);
    }

    #[test]
    fn limits_are_enforced() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("big"), vec![0u8; 101]).unwrap();
        assert!(matches!(
            collect(tmp.path(), LIMITS),
            Err(OutputError::TooLarge(100))
        ));
        std::fs::write(tmp.path().join("big"), vec![0u8; 100]).unwrap();
        assert!(collect(tmp.path(), LIMITS).is_ok());
        for i in 0..10 {
            std::fs::write(tmp.path().join(format!("f{i}")), b"").unwrap();
        }
        assert!(matches!(
            collect(tmp.path(), LIMITS),
            Err(OutputError::TooManyFiles(10))
        ));
    }

    #[test]
    fn folders_count_as_entries() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..11 {
            std::fs::create_dir(tmp.path().join(format!("d{i}"))).unwrap();
        }
        assert!(matches!(
            collect(tmp.path(), LIMITS),
            Err(OutputError::TooManyFiles(10))
        ));
        assert!(matches!(
            check_usage(tmp.path(), LIMITS),
            Err(OutputError::TooManyFiles(10))
        ));
    }

    #[test]
    fn deep_trees_are_refused_without_recursion() {
        let tmp = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            max_files: 100_000,
            max_bytes: 100,
        };
        let mut path = tmp.path().to_path_buf();
        for _ in 0..MAX_DEPTH {
            path.push("d");
        }
        std::fs::create_dir_all(&path).unwrap();
        assert!(collect(tmp.path(), limits).is_ok());
        assert!(check_usage(tmp.path(), limits).is_ok());
        std::fs::create_dir(path.join("d")).unwrap();
        assert!(matches!(
            collect(tmp.path(), limits),
            Err(OutputError::TooDeep)
        ));
        assert!(matches!(
            check_usage(tmp.path(), limits),
            Err(OutputError::TooDeep)
        ));
    }
}
