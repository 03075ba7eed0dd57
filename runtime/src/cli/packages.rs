//! A Python service's packages as users keep them: a folder (what `pip install --target lib`
//! leaves) that `service apply` zips, or a zip; uploaded to /system/packages, whose digest
//! then goes into the definition's `packages`.

use super::connection::Client;
use super::{CliError, file_error};
use reqwest::Method;
use std::io::Write as _;
use std::path::Path;

/// Uploads the folder or zip at `path`; returns the package's digest.
pub fn upload(client: &Client, path: &Path) -> Result<String, CliError> {
    let zip = if path.is_dir() {
        zip_folder(path)?
    } else {
        std::fs::read(path).map_err(|e| file_error(path, e))?
    };
    let response = client.send_ok(
        client
            .admin(Method::POST, client.url(&["system", "packages"], &[]))
            .header(reqwest::header::CONTENT_TYPE, "application/zip")
            .body(zip),
    )?;
    crate::cli::connection::stored_digest(response)
}

/// The folder's files as a zip, by their paths inside it; compiled bytecode (`__pycache__`,
/// which the sandbox's read-only folder cannot use) and symbolic links are left out.
pub fn zip_folder(root: &Path) -> Result<Vec<u8>, CliError> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| file_error(&dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(&dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| file_error(&path, e))?;
            if entry.file_name() == "__pycache__" {
                continue;
            }
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let bytes = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
                writer
                    .start_file(name, options)
                    .map_err(|e| CliError::Usage(format!("zipping {}: {e}", path.display())))?;
                writer.write_all(&bytes).map_err(|e| file_error(&path, e))?;
            }
        }
    }
    writer
        .finish()
        .map_err(|e| CliError::Usage(format!("zipping {}: {e}", root.display())))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_folder_zips_without_its_bytecode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/__pycache__")).unwrap();
        std::fs::write(dir.path().join("pkg/__init__.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("pkg/__pycache__/__init__.pyc"), "junk").unwrap();
        let zip = super::zip_folder(dir.path()).unwrap();
        let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        let names: Vec<&str> = archive.file_names().collect();
        assert_eq!(names, ["pkg/__init__.py"]);
    }
}
