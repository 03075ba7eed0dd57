//! Service secrets sealed at rest. A stored definition keeps `environment.secrets` with its
//! names and blank values (as OSCAR's stored FDL does); the values travel beside them in one
//! field, [`SEALED_FIELD`], encrypted with AES-256-GCM under a key the server keeps apart
//! (`DATA_DIR/secrets.key`, owner-only, or `--secrets-key-file`, which every member of a
//! cluster must share), with the service's name as additional data, so a sealed blob moved to
//! another service does not open. Secrets thus live in the same record, and the same revision,
//! as the definition they belong to: an update of either cannot tear, and a cluster's members
//! see both through the one watch they already have.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::io;
use std::path::Path;

/// The stored definition's field holding the sealed values.
pub const SEALED_FIELD: &str = "oscar_wasm_sealed_secrets";

/// Bytes of a key.
const KEY_LEN: usize = 32;

/// Why sealed secrets could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The definition was sealed and this server has no key.
    #[error(
        "its secrets are sealed and this server has no key to open them (give the cluster's --secrets-key-file)"
    )]
    NoKey,
    /// The key is not the one that sealed them, or the blob was changed.
    #[error(
        "its sealed secrets do not open with this server's key (another key sealed them, or they were changed)"
    )]
    Mismatch,
    /// The field is not a sealed blob.
    #[error("its sealed secrets are malformed: {0}")]
    Malformed(String),
}

/// Seals and opens definitions' secrets; without a key, definitions are stored as given.
pub struct Sealer {
    key: Option<LessSafeKey>,
}

impl Sealer {
    /// No key: secrets are stored as given (a cluster member without `--secrets-key-file`).
    pub fn none() -> Self {
        Self { key: None }
    }

    /// The key in `path`: 32 bytes, raw or as base64 text.
    pub fn from_file(path: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let key = if bytes.len() == KEY_LEN {
            bytes
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(String::from_utf8_lossy(&bytes).trim())
                .ok()
                .filter(|k| k.len() == KEY_LEN)
                .ok_or_else(|| {
                    io::Error::other(format!(
                        "{} must hold a 32-byte key, raw or as base64",
                        path.display()
                    ))
                })?
        };
        Self::with_key(&key)
    }

    /// The key in `path`, made (random, owner-only) when there is none yet.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        if !path.exists() {
            let mut key = [0u8; KEY_LEN];
            aws_lc_rs::rand::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
            crate::fsutil::atomic_write(path, &key)?;
        }
        Self::from_file(path)
    }

    fn with_key(key: &[u8]) -> io::Result<Self> {
        let key =
            UnboundKey::new(&AES_256_GCM, key).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Self {
            key: Some(LessSafeKey::new(key)),
        })
    }

    /// Whether definitions are sealed.
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// The definition as stored: secret values blanked and sealed into [`SEALED_FIELD`].
    pub fn seal(&self, service: &str, definition: &mut Map<String, Value>) -> io::Result<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let Some(Value::Object(secrets)) = definition
            .get_mut("environment")
            .and_then(|e| e.get_mut("secrets"))
        else {
            return Ok(());
        };
        // Any value but null or "" is a secret, numbers and booleans included (a YAML
        // definition's `PIN: 1234` arrives as a number).
        if secrets
            .values()
            .all(|v| v.is_null() || v.as_str() == Some(""))
        {
            return Ok(());
        }
        let mut sealed = serde_json::to_vec(&*secrets).map_err(io::Error::other)?;
        for value in secrets.values_mut() {
            *value = Value::String(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(service.as_bytes()),
            &mut sealed,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        definition.insert(
            SEALED_FIELD.into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(blob)),
        );
        Ok(())
    }

    /// The definition as loaded: sealed values put back into `environment.secrets`.
    pub fn open(
        &self,
        service: &str,
        definition: &mut Map<String, Value>,
    ) -> Result<(), SealError> {
        let Some(blob) = definition.remove(SEALED_FIELD) else {
            return Ok(());
        };
        let key = self.key.as_ref().ok_or(SealError::NoKey)?;
        let blob = blob
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| SealError::Malformed("not base64 of a nonce and a ciphertext".into()))?;
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|e| SealError::Malformed(e.to_string()))?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(service.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Mismatch)?;
        let values: Map<String, Value> =
            serde_json::from_slice(plain).map_err(|e| SealError::Malformed(e.to_string()))?;
        let environment = definition
            .entry("environment")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(environment) = environment {
            environment.insert("secrets".into(), Value::Object(values));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition() -> Map<String, Value> {
        json!({"name": "svc", "environment": {"variables": {"V": "1"}, "secrets": {"API": "s3cr3t"}}})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn sealed_values_are_nowhere_in_the_stored_text_and_open_again() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secrets.key");
        let sealer = Sealer::load_or_create(&key).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut stored = definition();
        sealer.seal("svc", &mut stored).unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(stored["environment"]["secrets"]["API"], "");
        // Another server with the same key file opens it.
        let again = Sealer::load_or_create(&key).unwrap();
        let mut loaded = stored.clone();
        again.open("svc", &mut loaded).unwrap();
        assert_eq!(loaded, definition());
        // Not under another service's name, nor with another key, nor without a key.
        assert!(matches!(
            again.open("other", &mut stored.clone()),
            Err(SealError::Mismatch)
        ));
        let other = Sealer::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(matches!(
            other.open("svc", &mut stored.clone()),
            Err(SealError::Mismatch)
        ));
        assert!(matches!(
            Sealer::none().open("svc", &mut stored.clone()),
            Err(SealError::NoKey)
        ));
    }

    #[test]
    fn numbers_and_booleans_are_sealed_too() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(&dir.path().join("k")).unwrap();
        let given = json!({"name": "svc", "environment": {"secrets": {"PIN": 987654, "ON": true}}});
        let mut stored = given.as_object().unwrap().clone();
        sealer.seal("svc", &mut stored).unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("987654") && !text.contains("true"), "{text}");
        sealer.open("svc", &mut stored).unwrap();
        assert_eq!(Value::Object(stored), given);
    }

    #[test]
    fn without_secrets_or_without_a_key_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::load_or_create(&dir.path().join("k")).unwrap();
        let mut plain = json!({"name": "svc"}).as_object().unwrap().clone();
        sealer.seal("svc", &mut plain).unwrap();
        assert!(!plain.contains_key(SEALED_FIELD));
        let mut given = definition();
        Sealer::none().seal("svc", &mut given).unwrap();
        assert_eq!(given, definition());
    }
}
