//! Reads the output folder back after the guest has finished.
//!
//! Everything goes through cap-std's `Dir`, which cannot be led out of the folder: a symlink
//! the guest left pointing at `/etc/passwd` (or anywhere else) is skipped, never followed.

use crate::supervisor::OutputFile;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io::Read;
use std::path::Path;

/// Caps on what an invocation may return.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// Most files.
    pub max_files: usize,
    /// Most bytes, all files together.
    pub max_bytes: u64,
}

/// Why the outputs cannot be returned.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// More files than allowed.
    #[error("the module wrote more than {0} output files")]
    TooManyFiles(usize),
    /// More bytes than allowed.
    #[error("the module wrote more than {0} bytes of output")]
    TooLarge(u64),
    /// A name that is not UTF-8 cannot be a zip entry name.
    #[error("output file name {0:?} is not valid UTF-8")]
    BadName(String),
    /// The file system failed.
    #[error("reading the output folder failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What was found, and what was left out.
#[derive(Debug, Default)]
pub struct Collected {
    /// Regular files, with `/`-separated paths relative to the output folder.
    pub files: Vec<OutputFile>,
    /// Paths of entries that are not regular files or folders (symlinks, sockets, ...).
    pub skipped: Vec<String>,
}

/// Collects every regular file under `dir`, recursively.
pub fn collect(dir: &Path, limits: OutputLimits) -> Result<Collected, OutputError> {
    let root = Dir::open_ambient_dir(dir, ambient_authority())?;
    let mut collected = Collected::default();
    let mut total = 0u64;
    walk(&root, "", limits, &mut total, &mut collected)?;
    Ok(collected)
}

fn walk(
    dir: &Dir,
    prefix: &str,
    limits: OutputLimits,
    total: &mut u64,
    out: &mut Collected,
) -> Result<(), OutputError> {
    for entry in dir.entries()? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| OutputError::BadName(name.to_string_lossy().into_owned()))?;
        let path = format!("{prefix}{name}");
        // file_type() does not follow symlinks.
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&entry.open_dir()?, &format!("{path}/"), limits, total, out)?;
        } else if file_type.is_file() {
            if out.files.len() >= limits.max_files {
                return Err(OutputError::TooManyFiles(limits.max_files));
            }
            let remaining = limits.max_bytes - *total;
            let mut bytes = Vec::new();
            // Read one byte past the budget to detect an overflow without reading it all.
            entry
                .open()?
                .take(remaining.saturating_add(1))
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > remaining {
                return Err(OutputError::TooLarge(limits.max_bytes));
            }
            *total += bytes.len() as u64;
            out.files.push(OutputFile { path, bytes });
        } else {
            out.skipped.push(path);
        }
    }
    Ok(())
}

/// Measures the output folder while the guest runs; `Err` once it holds more than allowed.
/// Symlinks are counted as entries, never followed.
pub fn check_usage(dir: &Path, limits: OutputLimits) -> Result<(), OutputError> {
    fn walk(
        dir: &Path,
        limits: OutputLimits,
        files: &mut usize,
        bytes: &mut u64,
    ) -> Result<(), OutputError> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), limits, files, bytes)?;
                continue;
            }
            *files += 1;
            *bytes += meta.len();
            if *files > limits.max_files {
                return Err(OutputError::TooManyFiles(limits.max_files));
            }
            if *bytes > limits.max_bytes {
                return Err(OutputError::TooLarge(limits.max_bytes));
            }
        }
        Ok(())
    }
    walk(dir, limits, &mut 0, &mut 0)
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
}
