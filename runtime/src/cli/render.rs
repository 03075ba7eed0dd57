//! What the client commands print and write: aligned tables for people, JSON for scripts, and
//! the result of a synchronous invocation turned back into files.

use super::{CliError, file_error};
use base64::Engine as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A borderless table with a header row, columns two spaces apart (kubectl's look).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text: String = table
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    text.push('\n');
    text
}

/// Prints a value as pretty JSON on standard output.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Usage(format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub use crate::protocol::headers::OUTPUT_KIND as OUTPUT_KIND_HEADER;
pub use crate::protocol::headers::OUTPUT_NAME as OUTPUT_NAME_HEADER;

/// A successful synchronous invocation's result.
#[derive(Debug, PartialEq)]
pub enum RunResult {
    /// One output file.
    File {
        /// Its bytes.
        bytes: Vec<u8>,
        /// Its name relative to the output folder, when the server says.
        name: Option<String>,
    },
    /// Several output files, zipped.
    Zip(Vec<u8>),
    /// No output file: the logs.
    Logs(Vec<u8>),
}

/// Decodes a `/run` answer. oscar-wasm says what it holds; an OSCAR cluster does not, so a body
/// that is base64 is taken as one file (a zip if it is one) and any other as logs.
pub fn decode_run(kind: Option<&str>, name: Option<String>, body: Vec<u8>) -> RunResult {
    let decode = |body: &[u8]| {
        let compact: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD.decode(compact)
    };
    match kind {
        Some("logs") => RunResult::Logs(body),
        Some("zip") => match decode(&body) {
            Ok(bytes) => RunResult::Zip(bytes),
            Err(_) => RunResult::Logs(body),
        },
        Some("file") => match decode(&body) {
            Ok(bytes) => RunResult::File { bytes, name },
            Err(_) => RunResult::Logs(body),
        },
        _ => match decode(&body) {
            Ok(bytes) if !body.is_empty() && bytes.starts_with(b"PK\x03\x04") => {
                RunResult::Zip(bytes)
            }
            Ok(bytes) if !body.is_empty() => RunResult::File { bytes, name: None },
            _ => RunResult::Logs(body),
        },
    }
}

/// Writes a result where the user asked: `output` (a file, or a folder for several files or
/// for a named file), else standard output. Returns a one-line summary for people.
pub fn write_result(result: RunResult, output: Option<&Path>) -> Result<String, CliError> {
    match (result, output) {
        (RunResult::Logs(text), _) => {
            write_stdout(&text)?;
            Ok("the service wrote no output file; its logs are above".into())
        }
        (RunResult::File { bytes, .. } | RunResult::Zip(bytes), None) => {
            write_stdout(&bytes)?;
            Ok(String::new())
        }
        (RunResult::File { bytes, name }, Some(path)) => {
            let target = if path.is_dir() {
                let file_name = name
                    .as_deref()
                    .and_then(|n| Path::new(n).file_name())
                    .map_or_else(|| PathBuf::from("output"), PathBuf::from);
                path.join(file_name)
            } else {
                path.to_path_buf()
            };
            std::fs::write(&target, &bytes).map_err(|e| file_error(&target, e))?;
            Ok(format!(
                "wrote {} ({} bytes)",
                target.display(),
                bytes.len()
            ))
        }
        (RunResult::Zip(bytes), Some(dir)) => {
            let files = unzip(&bytes, dir)?;
            Ok(format!(
                "wrote {} files into {}",
                files.len(),
                dir.display()
            ))
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Usage(format!("writing to standard output: {e}")))
}

/// Unzips `bytes` into `dir` (created). Entries whose names would leave `dir` (absolute paths,
/// `..`) are refused: a zip comes from a module, which is not trusted.
pub fn unzip(bytes: &[u8], dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| CliError::Usage(format!("the answer is not a valid zip: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let mut written = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| CliError::Usage(format!("zip entry {i}: {e}")))?;
        let relative = entry.enclosed_name().ok_or_else(|| {
            CliError::Usage(format!(
                "zip entry {:?} would be written outside {}",
                entry.name(),
                dir.display()
            ))
        })?;
        let target = dir.join(relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| file_error(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| file_error(parent, e))?;
        }
        let mut file = std::fs::File::create(&target).map_err(|e| file_error(&target, e))?;
        std::io::copy(&mut entry, &mut file).map_err(|e| file_error(&target, e))?;
        written.push(target);
    }
    Ok(written)
}

/// `1.5 MiB`-style sizes for tables.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_by_header_and_without_it() {
        assert_eq!(
            decode_run(Some("file"), Some("a.txt".into()), b64(b"hi")),
            RunResult::File {
                bytes: b"hi".to_vec(),
                name: Some("a.txt".into())
            }
        );
        assert_eq!(
            decode_run(Some("logs"), None, b"aGk=".to_vec()),
            RunResult::Logs(b"aGk=".to_vec())
        );
        // An OSCAR cluster: base64 with line breaks is a file, a zip is a zip, text is logs.
        assert_eq!(
            decode_run(None, None, b"aG\nk=\n".to_vec()),
            RunResult::File {
                bytes: b"hi".to_vec(),
                name: None
            }
        );
        let zip = zip_of(&[("a", b"1")]);
        assert_eq!(decode_run(None, None, b64(&zip)), RunResult::Zip(zip));
        let logs = b"2026-01-01 - supervisor - INFO - done\n".to_vec();
        assert_eq!(decode_run(None, None, logs.clone()), RunResult::Logs(logs));
        assert_eq!(
            decode_run(None, None, Vec::new()),
            RunResult::Logs(Vec::new())
        );
    }

    #[test]
    fn unzips_into_folders_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let files = unzip(&zip_of(&[("a/b.txt", b"B"), ("c.txt", b"C")]), &out).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(out.join("a/b.txt")).unwrap(), b"B");
        assert_eq!(std::fs::read(out.join("c.txt")).unwrap(), b"C");
        let err = unzip(&zip_of(&[("../evil.txt", b"x")]), &out).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(!dir.path().join("evil.txt").exists());
        assert!(unzip(b"not a zip", &out).is_err());
    }

    #[test]
    fn file_results_go_into_folders_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let result = RunResult::File {
            bytes: b"x".to_vec(),
            name: Some("sub/gray.png".into()),
        };
        write_result(result, Some(dir.path())).unwrap();
        assert_eq!(std::fs::read(dir.path().join("gray.png")).unwrap(), b"x");
        let target = dir.path().join("named.bin");
        let result = RunResult::File {
            bytes: b"y".to_vec(),
            name: None,
        };
        write_result(result, Some(&target)).unwrap();
        assert_eq!(std::fs::read(target).unwrap(), b"y");
    }

    #[test]
    fn tables_align_and_sizes_read_well() {
        let text = table(
            &["NAME", "SIZE"],
            vec![
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "22".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let column = lines[0].find("SIZE").unwrap();
        assert_eq!(lines[2].find("22").unwrap(), column, "{text}");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
    }
}
