//! The service registry: validated definitions, persisted one file per service
//! (`services/<name>.json`, written atomically), and the runnable module each one runs.

use crate::fsutil;
use crate::modules::Digest;
use crate::service::{DefinitionError, Service};
use crate::wasm::Runnable;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A service ready to invoke: its definition and its pre-linked module.
pub struct Deployed {
    /// The validated definition.
    pub service: Service,
    /// The module it runs; `None` when the stored module could not be loaded at start-up.
    pub runnable: Option<Arc<Runnable>>,
    /// Its concurrency slots.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Tells deployments apart: every deployment of every service gets a new one, so a
    /// redeploy is seen as such even when its allocation reuses an old one's address.
    pub generation: u64,
    /// How many slots `slots` started with.
    pub slot_count: usize,
    /// The definition as the API shows it (credentials hidden, secrets blank), serialized once
    /// here so that listing thousands of services copies bytes instead of building JSON.
    pub public_json: bytes::Bytes,
    /// Runs a wasm image by tag, which a synchronous call checks in the background.
    pub follows_tag: bool,
}

impl Deployed {
    /// Invocations running (or holding a slot) now.
    pub fn active(&self) -> usize {
        self.slot_count
            .saturating_sub(self.slots.available_permits())
    }
}

impl Deployed {
    /// A deployed service whose invocations run at most `max_concurrency` at once (lowered
    /// further by the definition's own `max_concurrency`).
    pub fn new(service: Service, runnable: Option<Arc<Runnable>>, max_concurrency: usize) -> Self {
        let slots = service
            .spec
            .max_concurrency
            .unwrap_or(usize::MAX)
            .min(max_concurrency)
            .max(1);
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // A serde_json::Value always serializes.
        let public_json = serde_json::to_vec(&service.to_public_json())
            .unwrap_or_default()
            .into();
        Self {
            public_json,
            follows_tag: crate::deployer::follows_tag(&service.definition),
            service,
            runnable,
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            slot_count: slots,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Failures of the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// POST of a name that exists.
    #[error("service {0:?} already exists")]
    Exists(String),
    /// Update or delete of a name that does not exist.
    #[error("service {0:?} not found")]
    NotFound(String),
    /// The file system failed.
    #[error("service registry I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Every service, by name, and which service each token belongs to.
pub struct Registry {
    dir: PathBuf,
    services: RwLock<Tables>,
}

/// The services by name, and their names by the SHA-256 of their token, so that an
/// invocation's bearer token is looked up once rather than compared with every service's
/// (which made /run slower as services grew).
#[derive(Default)]
struct Tables {
    by_name: BTreeMap<String, Arc<Deployed>>,
    by_token: std::collections::HashMap<[u8; 32], String>,
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token).into()
}

impl Tables {
    fn insert(&mut self, name: String, deployed: Arc<Deployed>) {
        if let Some(old) = self.by_name.get(&name) {
            self.by_token
                .remove(&token_digest(old.service.spec.token.as_bytes()));
        }
        self.by_token.insert(
            token_digest(deployed.service.spec.token.as_bytes()),
            name.clone(),
        );
        self.by_name.insert(name, deployed);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            self.by_token
                .remove(&token_digest(old.service.spec.token.as_bytes()));
        }
    }
}

impl Registry {
    /// Opens (creating) the registry under `data_dir` and reads every stored definition.
    /// Definitions that no longer validate are reported and skipped, never deleted.
    pub fn open(data_dir: &Path) -> io::Result<(Self, Vec<Service>)> {
        let dir = data_dir.join("services");
        fsutil::create_private_dir(&dir)?;
        fsutil::remove_stale_temporaries(&dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
                .and_then(|value| {
                    Service::from_definition(value).map_err(|e: DefinitionError| e.to_string())
                });
            match parsed {
                Ok(service) => found.push(service),
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "skipping unreadable service definition")
                }
            }
        }
        Ok((
            Self {
                dir,
                services: RwLock::default(),
            },
            found,
        ))
    }

    fn path(&self, name: &str) -> PathBuf {
        // Names are validated DNS labels, so they are safe as file names.
        self.dir.join(format!("{name}.json"))
    }

    fn persist(&self, service: &Service) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&service.to_json()).map_err(io::Error::other)?;
        fsutil::atomic_write(&self.path(&service.spec.name), &bytes)
    }

    /// Adds a service loaded at start-up, without writing it again.
    pub fn restore(&self, deployed: Deployed) {
        let name = deployed.service.spec.name.clone();
        self.write().insert(name, Arc::new(deployed));
    }

    /// Creates a service; fails if the name is taken.
    pub fn create(&self, deployed: Deployed) -> Result<Arc<Deployed>, RegistryError> {
        let mut services = self.write();
        let name = deployed.service.spec.name.clone();
        if services.by_name.contains_key(&name) {
            return Err(RegistryError::Exists(name));
        }
        self.persist(&deployed.service)?;
        let deployed = Arc::new(deployed);
        services.insert(name, deployed.clone());
        Ok(deployed)
    }

    /// Replaces an existing service. Invocations already running keep the old one.
    pub fn replace(&self, deployed: Deployed) -> Result<Arc<Deployed>, RegistryError> {
        let mut services = self.write();
        let name = deployed.service.spec.name.clone();
        if !services.by_name.contains_key(&name) {
            return Err(RegistryError::NotFound(name));
        }
        self.persist(&deployed.service)?;
        let deployed = Arc::new(deployed);
        services.insert(name, deployed.clone());
        Ok(deployed)
    }

    /// Removes a service.
    pub fn remove(&self, name: &str) -> Result<Arc<Deployed>, RegistryError> {
        let mut services = self.write();
        let Some(deployed) = services.by_name.get(name).cloned() else {
            return Err(RegistryError::NotFound(name.to_string()));
        };
        fsutil::remove_durably(&self.path(name))?;
        services.remove(name);
        Ok(deployed)
    }

    /// One service.
    pub fn get(&self, name: &str) -> Option<Arc<Deployed>> {
        self.read().by_name.get(name).cloned()
    }

    /// The service whose token `token` is, if any (one hash, one lookup).
    pub fn owner_of_token(&self, token: &[u8]) -> Option<Arc<Deployed>> {
        let tables = self.read();
        let name = tables.by_token.get(&token_digest(token))?;
        tables.by_name.get(name).cloned()
    }

    /// One service, or `NotFound`.
    pub fn require(&self, name: &str) -> Result<Arc<Deployed>, RegistryError> {
        self.get(name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Every service, by name.
    pub fn list(&self) -> Vec<Arc<Deployed>> {
        self.read().by_name.values().cloned().collect()
    }

    /// Names of the services that run `digest`.
    pub fn users_of(&self, digest: &Digest) -> Vec<String> {
        self.read()
            .by_name
            .values()
            .filter(|d| d.service.spec.backend.module() == Some(digest))
            .map(|d| d.service.spec.name.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.services.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.services.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str) -> Service {
        Service::from_definition(
            json!({"name": name, "module": Digest::of(b"m").to_string(), "extra": [1]}),
        )
        .unwrap()
    }

    #[test]
    fn create_replace_remove_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, found) = Registry::open(dir.path()).unwrap();
        assert!(found.is_empty());
        reg.create(Deployed::new(service("a"), None, 4)).unwrap();
        assert!(matches!(
            reg.create(Deployed::new(service("a"), None, 4)),
            Err(RegistryError::Exists(_))
        ));
        assert!(matches!(
            reg.replace(Deployed::new(service("b"), None, 4)),
            Err(RegistryError::NotFound(_))
        ));
        reg.create(Deployed::new(service("b"), None, 4)).unwrap();
        reg.remove("b").unwrap();
        assert_eq!(reg.users_of(&Digest::of(b"m")), vec!["a".to_string()]);

        let (_, found) = Registry::open(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].definition["extra"], json!([1]));
    }

    #[test]
    fn tokens_are_looked_up_by_digest_and_follow_replace_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = Registry::open(dir.path()).unwrap();
        let with_token = |token: &str| {
            Service::from_definition(
                json!({"name": "a", "module": Digest::of(b"m").to_string(), "token": token}),
            )
            .unwrap()
        };
        reg.create(Deployed::new(with_token("first"), None, 1))
            .unwrap();
        assert_eq!(reg.owner_of_token(b"first").unwrap().service.spec.name, "a");
        assert!(reg.owner_of_token(b"other").is_none());
        reg.replace(Deployed::new(with_token("second"), None, 1))
            .unwrap();
        assert!(reg.owner_of_token(b"first").is_none());
        assert!(reg.owner_of_token(b"second").is_some());
        reg.remove("a").unwrap();
        assert!(reg.owner_of_token(b"second").is_none());
    }

    #[test]
    fn unreadable_definitions_are_skipped_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::write(dir.path().join("services/bad.json"), b"{not json").unwrap();
        let (_, found) = Registry::open(dir.path()).unwrap();
        assert!(found.is_empty());
        assert!(dir.path().join("services/bad.json").exists());
    }
}
