//! The clusters file: named endpoints with their credentials and a default, in the user's config
//! folder, in oscar-cli's shape so that its users recognise it:
//!
//! ```yaml
//! oscar:
//!   local:
//!     endpoint: http://127.0.0.1:8080
//!     auth_user: oscar
//!     auth_password: a secret
//!     ssl_verify: true
//! default: local
//! ```
//!
//! Its path: `OSCAR_WASM_CLUSTERS`, else `$XDG_CONFIG_HOME/oscar-wasm/clusters.yaml`, else
//! `~/.config/oscar-wasm/clusters.yaml`. It holds passwords, so it is written readable by its
//! owner only.

use super::{CliError, file_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// Base URL.
    pub endpoint: String,
    /// The administrator's user name.
    #[serde(default = "default_user")]
    pub auth_user: String,
    /// The administrator's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<String>,
    /// Whether to verify TLS certificates.
    #[serde(default = "yes")]
    pub ssl_verify: bool,
}

fn default_user() -> String {
    "oscar".into()
}

fn yes() -> bool {
    true
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Clusters {
    /// Clusters by name.
    #[serde(default)]
    pub oscar: BTreeMap<String, Cluster>,
    /// The one used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Where the clusters file is.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OSCAR_WASM_CLUSTERS") {
        return Some(p.into());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("oscar-wasm").join("clusters.yaml"))
}

impl Clusters {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        match std::fs::read_to_string(path) {
            Ok(text) => yaml_serde::from_str(&text).map_err(|e| file_error(path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(file_error(path, e)),
        }
    }

    /// Writes the file (owner-only, replaced atomically).
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let text = yaml_serde::to_string(self).map_err(|e| file_error(path, e))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| file_error(parent, e))?;
        }
        crate::fsutil::atomic_write(path, text.as_bytes()).map_err(|e| file_error(path, e))
    }

    /// The cluster named `name`, else the default one, else the only one.
    pub fn select(&self, name: Option<&str>) -> Result<Option<(&str, &Cluster)>, CliError> {
        let name = match name.or(self.default.as_deref()) {
            Some(n) => n,
            None if self.oscar.len() == 1 => self.oscar.keys().next().map_or("", |k| k.as_str()),
            None => return Ok(None),
        };
        match self.oscar.get_key_value(name) {
            Some((k, c)) => Ok(Some((k.as_str(), c))),
            None => Err(CliError::Usage(format!(
                "no cluster named {name:?} (oscar-wasm cluster list shows them)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_selects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/clusters.yaml");
        assert_eq!(Clusters::load(&path).unwrap(), Clusters::default());
        let mut clusters = Clusters::default();
        clusters.oscar.insert(
            "a".into(),
            Cluster {
                endpoint: "http://a".into(),
                auth_user: "oscar".into(),
                auth_password: Some("pw".into()),
                ssl_verify: true,
            },
        );
        // The only cluster is used even without a default.
        assert_eq!(clusters.select(None).unwrap().unwrap().0, "a");
        clusters.oscar.insert(
            "b".into(),
            Cluster {
                endpoint: "http://b".into(),
                auth_user: "u".into(),
                auth_password: None,
                ssl_verify: false,
            },
        );
        assert!(clusters.select(None).unwrap().is_none());
        clusters.default = Some("b".into());
        clusters.save(&path).unwrap();
        let loaded = Clusters::load(&path).unwrap();
        assert_eq!(loaded, clusters);
        assert_eq!(loaded.select(None).unwrap().unwrap().1.endpoint, "http://b");
        assert_eq!(
            loaded.select(Some("a")).unwrap().unwrap().1.endpoint,
            "http://a"
        );
        assert!(loaded.select(Some("zzz")).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the file holds passwords");
        }
    }

    #[test]
    fn reads_oscar_cli_shape_with_defaults() {
        let text = "oscar:\n  prod:\n    endpoint: https://oscar.example.org\ndefault: prod\n";
        let clusters: Clusters = yaml_serde::from_str(text).unwrap();
        let (_, prod) = clusters.select(None).unwrap().unwrap();
        assert_eq!(prod.auth_user, "oscar");
        assert!(prod.ssl_verify);
        assert_eq!(prod.auth_password, None);
    }
}
