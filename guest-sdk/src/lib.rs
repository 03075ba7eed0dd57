//! # oscar-guest: write an oscar-wasm processing module in a few lines
//!
//! A module is a WASI command (a program with `main`). Each invocation gets one input file and
//! an empty output folder, named by the environment variables `INPUT_FILE_PATH` and
//! `TMP_OUTPUT_DIR` (OSCAR's contract). Whatever the module writes to the output folder is the
//! result: one file is returned as is, several as a zip; with none, the module's printed output
//! is returned.
//!
//! ```no_run
//! // An upper-casing service: this is the whole of its `main`.
//! oscar_guest::run(|input| {
//!     let text = input.read_to_string()?;
//!     oscar_guest::write_output("upper.txt", text.to_uppercase())?;
//!     Ok(())
//! })
//! ```
//!
//! Build it for `wasm32-wasip1` (see the repository's `scripts/build-guests.sh`).

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// An error with a message for the user; [`run`] prints it and exits with status 1.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<std::string::FromUtf8Error> for Error {
    fn from(e: std::string::FromUtf8Error) -> Self {
        Self(format!("the input is not UTF-8 text: {e}"))
    }
}

/// Result type of module code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn env_path(name: &str) -> Result<PathBuf> {
    path_from(name, std::env::var_os(name))
}

/// The path a contract variable holds, or why there is none.
fn path_from(name: &str, value: Option<std::ffi::OsString>) -> Result<PathBuf> {
    value.map(PathBuf::from).ok_or_else(|| {
        Error(format!(
            "{name} is not set: is this running as an oscar-wasm service?"
        ))
    })
}

/// The input file's path (`INPUT_FILE_PATH`).
pub fn input_path() -> Result<PathBuf> {
    env_path("INPUT_FILE_PATH")
}

/// The output folder (`TMP_OUTPUT_DIR`).
pub fn output_dir() -> Result<PathBuf> {
    env_path("TMP_OUTPUT_DIR")
}

/// A service variable (from the definition's `environment.variables`), if set.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A service variable parsed into `T`, or `default` when unset.
///
/// ```no_run
/// let size: u32 = oscar_guest::var_or("SIZE", 64).unwrap();
/// ```
pub fn var_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|e| Error(format!("variable {name}={text:?}: {e}"))),
    }
}

/// The invocation's input file.
#[derive(Debug, Clone)]
pub struct Input {
    path: PathBuf,
}

impl Input {
    /// The input of this invocation.
    pub fn current() -> Result<Self> {
        Ok(Self {
            path: input_path()?,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its file name: `event-file-<uuid>` for an HTTP invocation, the object's name for one
    /// triggered by a bucket.
    pub fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("input")
    }

    /// Its file name without the extension, to name outputs after the input
    /// (`photo.jpg` -> `photo`).
    ///
    /// ```no_run
    /// let input = oscar_guest::Input::current().unwrap();
    /// let name = format!("{}-gray.png", input.stem());
    /// ```
    pub fn stem(&self) -> &str {
        self.path
            .file_stem()
            .and_then(|n| n.to_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("input")
    }

    /// Its bytes.
    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path)
            .map_err(|e| Error(format!("reading {}: {e}", self.path.display())))
    }

    /// Its text (UTF-8).
    pub fn read_to_string(&self) -> Result<String> {
        Ok(String::from_utf8(self.read()?)?)
    }
}

/// The path of output file `name` (relative to the output folder, folders allowed, no `..`),
/// with its folders created: for code that writes a file itself, such as a streaming encoder.
///
/// ```no_run
/// use std::io::Write;
/// let mut file = std::fs::File::create(oscar_guest::output_path("report/summary.txt").unwrap()).unwrap();
/// writeln!(file, "done").unwrap();
/// ```
pub fn output_path(name: &str) -> Result<PathBuf> {
    let relative = relative_output(name)?;
    output_path_in(&output_dir()?, relative)
}

/// `name` as a path inside the output folder, or why it cannot be one.
fn relative_output(name: &str) -> Result<&Path> {
    let relative = Path::new(name);
    if name.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(Error(format!(
            "output name {name:?} must be a relative path without '..'"
        )));
    }
    Ok(relative)
}

/// `relative` inside `dir`, with its folders created.
fn output_path_in(dir: &Path, relative: &Path) -> Result<PathBuf> {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error(format!("creating {}: {e}", parent.display())))?;
    }
    Ok(path)
}

/// Writes one output file; `name` is relative to the output folder and may contain folders.
///
/// Returns the path written.
///
/// ```no_run
/// oscar_guest::write_output("lines/0001.txt", "first line\n").unwrap();
/// ```
pub fn write_output(name: &str, bytes: impl AsRef<[u8]>) -> Result<PathBuf> {
    let path = output_path(name)?;
    std::fs::write(&path, bytes).map_err(|e| Error(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

/// Runs a module written as one function of its input: an `Err` is printed to stderr and the
/// module exits with status 1, which the server reports as a failed invocation (500 on
/// `/run`, a `Failed` job), with that message in its log.
///
/// ```no_run
/// oscar_guest::run(|input| {
///     let text = input.read_to_string()?;
///     if text.is_empty() {
///         return Err(oscar_guest::Error::msg("the input is empty").into());
///     }
///     oscar_guest::write_output("lines.txt", format!("{}\n", text.lines().count()))?;
///     Ok(())
/// })
/// ```
pub fn run<F>(f: F)
where
    F: FnOnce(Input) -> std::result::Result<(), Box<dyn std::error::Error>>,
{
    let result = Input::current().map_err(Into::into).and_then(f);
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_must_stay_inside() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            let err = relative_output(bad).unwrap_err().to_string();
            assert!(err.contains("must be a relative path"), "{bad}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("oscar-guest-test-{}", std::process::id()));
        let path = output_path_in(&dir, relative_output("a/b/c.txt").unwrap()).unwrap();
        assert_eq!(path, dir.join("a/b/c.txt"));
        assert!(dir.join("a/b").is_dir(), "its folders are created");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn input_names() {
        let input = Input {
            path: PathBuf::from("/tmp/input/photo.v2.jpg"),
        };
        assert_eq!(input.file_name(), "photo.v2.jpg");
        assert_eq!(input.stem(), "photo.v2");
        let http = Input {
            path: PathBuf::from("/tmp/input/event-file-0a1b"),
        };
        assert_eq!(http.stem(), "event-file-0a1b");
    }

    #[test]
    fn missing_contract_variables_are_explained() {
        let err = path_from("INPUT_FILE_PATH", None).unwrap_err().to_string();
        assert!(err.contains("INPUT_FILE_PATH is not set"), "{err}");
        let set = path_from("INPUT_FILE_PATH", Some("/tmp/input/x".into())).unwrap();
        assert_eq!(set, PathBuf::from("/tmp/input/x"));
    }
}
