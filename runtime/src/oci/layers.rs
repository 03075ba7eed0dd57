//! The .wasm file of a `wasi/wasm` image: its config names it (Entrypoint, else Cmd), and one
//! of its layers (a tar, plain or gzip-compressed, as docker builds them) holds it.

use std::io::Read;

/// The parts of an OCI image config read here.
#[derive(Debug, serde::Deserialize)]
pub struct ImageConfig {
    /// The platform's OS (`wasi`, `wasip1`, ...).
    #[serde(default)]
    pub os: String,
    /// The platform's architecture (`wasm`).
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct RunConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

impl ImageConfig {
    /// The file the image runs: the first word of Entrypoint, else of Cmd.
    pub fn entrypoint(&self) -> Option<String> {
        let config = self.config.as_ref()?;
        [&config.entrypoint, &config.cmd]
            .into_iter()
            .flatten()
            .find_map(|words| words.first().filter(|w| !w.is_empty()).cloned())
    }
}

/// The bytes of `path` in the layer `blob` (of `media_type`), if it holds that file; at most
/// `limit` bytes are read. An error when the layer is not a tar.
pub fn find_file(
    blob: &[u8],
    media_type: &str,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, String> {
    let gzip = media_type.ends_with("gzip") || blob.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let wanted = normalize(path);
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("a layer is not a tar archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("a layer is not a tar archive: {e}"))?;
        let name = entry
            .path()
            .map(|p| normalize(&p.to_string_lossy()))
            .unwrap_or_default();
        if name != wanted || !entry.header().entry_type().is_file() {
            continue;
        }
        if entry.size() > limit {
            return Err(format!(
                "{path} has {} bytes; a module has at most {limit}",
                entry.size()
            ));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {path} from a layer: {e}"))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

/// `/app.wasm`, `./app.wasm` and `app.wasm` are the same file.
fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn finds_the_entrypoint_in_plain_and_gzip_layers() {
        let layer = tar_with("app.wasm", b"\0asm");
        assert_eq!(
            find_file(
                &layer,
                "application/vnd.oci.image.layer.v1.tar",
                "/app.wasm",
                100
            )
            .unwrap(),
            Some(b"\0asm".to_vec())
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &layer).unwrap();
        let gz = gz.finish().unwrap();
        assert!(
            find_file(
                &gz,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "app.wasm",
                100
            )
            .unwrap()
            .is_some()
        );
        assert_eq!(find_file(&layer, "", "other.wasm", 100).unwrap(), None);
        assert!(find_file(&layer, "", "app.wasm", 2).is_err());
    }

    #[test]
    fn entrypoint_then_cmd() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"os":"wasip1","architecture":"wasm","config":{"Cmd":["/b.wasm"]}}"#,
        )
        .unwrap();
        assert_eq!(config.entrypoint().as_deref(), Some("/b.wasm"));
        let config: ImageConfig = serde_json::from_str(
            r#"{"os":"wasi","architecture":"wasm","config":{"Entrypoint":["/a.wasm"],"Cmd":["x"]}}"#,
        )
        .unwrap();
        assert_eq!(config.entrypoint().as_deref(), Some("/a.wasm"));
    }
}
