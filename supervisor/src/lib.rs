//! What the runtime and the supervisor of an image service's pod say to each other, shared by
//! both sides: the supervisor fetches `<callback>/input` (its file name in
//! [`INPUT_NAME_HEADER`]) and `<callback>/script`, and posts a [`PodResult`] to
//! `<callback>/result`, each with the invocation's one-time token as a bearer token.
//!
//! It is a crate of its own so that the supervisor binary depends on nothing of the runtime's
//! (wasmtime, the server) and can be linked statically.

/// The header naming the input file, on the answer to `<callback>/input`.
pub const INPUT_NAME_HEADER: &str = "x-oscar-wasm-input-name";

/// What the supervisor posts back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PodResult {
    /// The script's exit code.
    pub exit_code: i32,
    /// The script's stdout and stderr.
    pub output: String,
    /// The output files, base64.
    pub files: Vec<ResultFile>,
}

/// One output file of a [`PodResult`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ResultFile {
    /// Path relative to the output folder.
    pub path: String,
    /// Contents, base64.
    pub base64: String,
}
