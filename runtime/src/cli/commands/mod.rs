//! One function per client command: read the arguments, call the server, print the answer.

mod cluster;
mod files;
mod invoke;
mod jobs;
mod push;
mod service;

pub use cluster::cluster;
pub use invoke::{job, run};
pub use jobs::{jobs, logs, outputs};
pub use push::push;
pub use service::service;

use super::CliError;
use std::io::Read;
use std::path::Path;

/// The bytes of an input file, or of standard input for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
        Ok(bytes)
    } else {
        std::fs::read(path).map_err(|e| super::file_error(path, e))
    }
}
