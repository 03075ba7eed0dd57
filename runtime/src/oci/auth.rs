//! Registry credentials as docker and podman users keep them: a `config.json` whose `auths`
//! map a registry to `auth` (base64 of `user:password`) or to `username` and `password`; plus
//! one registry's credentials from flags or the environment. They are only ever sent to their
//! registry: never logged, never returned.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use std::collections::BTreeMap;
use std::path::Path;

/// Credentials by registry host (`host[:port]`; Docker Hub under `docker.io` and its aliases).
#[derive(Clone, Default)]
pub struct Auths(BTreeMap<String, (String, String)>);

impl std::fmt::Debug for Auths {
    // Registries only: credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Auths {
    /// `path`'s credentials, else those of docker's own `config.json` (`$DOCKER_CONFIG`, else
    /// `~/.docker`) when there is one, else none.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let default = || {
            let folder = std::env::var_os("DOCKER_CONFIG")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".docker"))
                })?;
            Some(folder.join("config.json")).filter(|p| p.is_file())
        };
        match path.map(Path::to_path_buf).or_else(default) {
            Some(path) => Self::from_docker_config(&path),
            None => Ok(Self::default()),
        }
    }

    /// Reads a docker `config.json`.
    pub fn from_docker_config(path: &Path) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
        }
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let file: File = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a docker config.json: {e}", path.display()))?;
        let mut auths = BTreeMap::new();
        for (registry, entry) in file.auths {
            let pair = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|d| {
                        d.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    })
                    .ok_or_else(|| {
                        format!(
                            "{}: the auth of {registry} is not base64 of user:password",
                            path.display()
                        )
                    })?,
                (_, Some(user), Some(password)) => (user, password),
                // Credential helpers and identity tokens are not read.
                _ => continue,
            };
            auths.insert(registry_host(&registry), pair);
        }
        Ok(Self(auths))
    }

    /// Adds (or replaces) one registry's credentials.
    pub fn insert(&mut self, registry: &str, user: String, password: String) {
        self.0.insert(registry_host(registry), (user, password));
    }

    /// What to present to `registry` (as oci-client resolves it).
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        let host = registry_host(registry);
        let found = self.0.get(&host).or_else(|| {
            // Docker Hub is spelled several ways.
            is_docker_hub(&host)
                .then(|| {
                    self.0
                        .iter()
                        .find(|(k, _)| is_docker_hub(k))
                        .map(|(_, v)| v)
                })
                .flatten()
        });
        match found {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// `https://index.docker.io/v1/` as `index.docker.io`, `host:5000/` as `host:5000`.
fn registry_host(registry: &str) -> String {
    let trimmed = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    trimmed
        .split('/')
        .next()
        .unwrap_or(trimmed)
        .to_ascii_lowercase()
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_configs_and_matches_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dTpw"},
                "127.0.0.1:5000": {"username": "a", "password": "b"},
                "helper.example": {}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        let auths = Auths::from_docker_config(&path).unwrap();
        let basic = |u: &str, p: &str| format!("{:?}", RegistryAuth::Basic(u.into(), p.into()));
        assert_eq!(
            format!("{:?}", auths.for_registry("docker.io")),
            basic("u", "p")
        );
        assert_eq!(
            format!("{:?}", auths.for_registry("127.0.0.1:5000")),
            basic("a", "b")
        );
        assert_eq!(
            format!("{:?}", auths.for_registry("helper.example")),
            format!("{:?}", RegistryAuth::Anonymous)
        );
        // Debug output names registries, never credentials.
        let shown = format!("{auths:?}");
        assert!(!shown.contains('"') || !shown.contains("\"b\""), "{shown}");
        assert!(shown.contains("127.0.0.1:5000"));
    }

    #[test]
    fn a_bad_auth_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths": {"r": {"auth": "!!"}}}"#).unwrap();
        assert!(Auths::from_docker_config(&path).is_err());
    }
}
