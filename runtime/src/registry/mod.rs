//! The service registry: the deployed services (validated definitions and the runnable module
//! each one runs) in memory, over a [`ServiceStore`] that keeps the definitions: a folder on
//! one machine ([`local::LocalServices`]), or a NATS key-value bucket shared by a cluster
//! (`crate::cluster::services`). Every stored definition has a revision, and an update names
//! the revision it replaces, so two concurrent updates cannot both land.

pub mod local;

use crate::modules::Digest;
use crate::service::{DefinitionError, Service};
use crate::stores::StoreError;
use crate::wasm::Runnable;
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

/// A definition's version in its store; higher is newer.
pub type Revision = u64;

/// A stored definition as its store holds it.
#[derive(Debug, Clone)]
pub struct StoredDefinition {
    /// The service's name (the store's key).
    pub name: String,
    /// The definition's JSON.
    pub bytes: Vec<u8>,
    /// Its revision.
    pub revision: Revision,
}

/// A change another server made, as a shared store reports it.
#[derive(Debug, Clone)]
pub enum ServiceChange {
    /// Created or updated.
    Put(StoredDefinition),
    /// Deleted at `revision`.
    Deleted {
        /// The service.
        name: String,
        /// The deletion's revision.
        revision: Revision,
    },
}

/// Where definitions are kept (see [`crate::stores`]).
#[async_trait::async_trait]
pub trait ServiceStore: Send + Sync {
    /// Every stored definition.
    async fn load(&self) -> Result<Vec<StoredDefinition>, StoreError>;
    /// Stores a new definition; `Conflict` if the name is taken.
    async fn create(&self, name: &str, definition: &[u8]) -> Result<Revision, StoreError>;
    /// Replaces the definition at revision `expected`; `Conflict` if it changed meanwhile,
    /// `NotFound` if there is none.
    async fn update(
        &self,
        name: &str,
        definition: &[u8],
        expected: Revision,
    ) -> Result<Revision, StoreError>;
    /// Removes a definition; `NotFound` if there is none.
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// One definition as stored now, for a store that other servers write too (a service this
    /// server has not heard of yet); `None` from a store this registry always knows in full.
    async fn fetch(&self, _name: &str) -> Result<Option<StoredDefinition>, StoreError> {
        Ok(None)
    }
    /// Changes made elsewhere, for a store shared with other servers; `None` for one that
    /// only this server writes.
    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ServiceChange>> {
        None
    }
}

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
    /// The stored definition's revision (set by the registry when it is stored).
    pub revision: Revision,
    /// The read-only folder holding a runtime service's script, made at its first call.
    pub app_dir: std::sync::OnceLock<std::path::PathBuf>,
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
            follows_tag: crate::service::follows_tag(&service.definition),
            service,
            runnable,
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            slot_count: slots,
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            revision: 0,
            app_dir: std::sync::OnceLock::new(),
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
    /// Another change to the service landed first.
    #[error(
        "service {0:?} was changed by another request at the same time; read it again and retry"
    )]
    Conflict(String),
    /// The store failed, or is away for now.
    #[error("service registry: {0}")]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// `error` of the store, about the service `name`.
    fn of(name: &str, error: StoreError, conflict: fn(String) -> Self) -> Self {
        match error {
            StoreError::Conflict(_) => conflict(name.to_string()),
            StoreError::NotFound(_) => Self::NotFound(name.to_string()),
            other => Self::Store(other),
        }
    }
}

/// What happened to a service in this registry, whichever server changed it: what the
/// subscribers of [`Registry::subscribe`] (the external MinIO's policies, the wasm images'
/// checks) follow instead of each change's caller remembering to tell them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceEvent {
    /// Created or replaced.
    Deployed(String),
    /// Removed.
    Removed(String),
}

/// How many events a slow subscriber may fall behind before it is told it lagged (and then
/// looks at the whole registry again).
const EVENT_BACKLOG: usize = 1024;

/// Every service, by name, and which service each token belongs to.
pub struct Registry {
    store: Box<dyn ServiceStore>,
    /// Seals definitions' secrets before they are stored, opens them when read.
    sealer: crate::secrets::Sealer,
    services: RwLock<Tables>,
    events: tokio::sync::broadcast::Sender<ServiceEvent>,
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
    #[cfg(test)]
    /// Opens (creating) the registry in a folder under `data_dir`, and reads every stored
    /// definition (see [`Registry::with_store`]).
    pub async fn open(
        data_dir: &std::path::Path,
    ) -> Result<(Self, Vec<(Service, Revision)>), StoreError> {
        let sealer = crate::secrets::Sealer::load_or_create(&data_dir.join("secrets.key"))?;
        Self::with_store(Box::new(local::LocalServices::open(data_dir)?), sealer).await
    }

    /// The registry over `store`, and every stored definition with its revision. Definitions
    /// that no longer validate are reported and skipped, never deleted.
    pub async fn with_store(
        store: Box<dyn ServiceStore>,
        sealer: crate::secrets::Sealer,
    ) -> Result<(Self, Vec<(Service, Revision)>), StoreError> {
        let registry = Self {
            store,
            sealer,
            services: RwLock::default(),
            events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
        };
        let found = registry
            .store
            .load()
            .await?
            .into_iter()
            .filter_map(|stored| match registry.parse(&stored.bytes) {
                Ok(service) => Some((service, stored.revision)),
                Err(reason) => {
                    tracing::error!(service = %stored.name, %reason, "skipping unreadable service definition");
                    None
                }
            })
            .collect();
        Ok((registry, found))
    }

    /// A stored definition's bytes as a validated service, its secrets opened.
    pub(crate) fn parse(&self, bytes: &[u8]) -> Result<Service, String> {
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if let serde_json::Value::Object(map) = &mut value {
            let name = map
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.sealer.open(&name, map).map_err(|e| e.to_string())?;
        }
        match Service::from_definition(value.clone()) {
            // Versions before cpu was honoured stored any text; such a service still loads,
            // its cpu left out, rather than vanishing at an upgrade.
            Err(DefinitionError::InvalidField {
                field: "cpu",
                reason,
            }) => {
                tracing::warn!(%reason, "a stored service's cpu is not a CPU quantity; it is ignored until the service is updated");
                if let serde_json::Value::Object(map) = &mut value {
                    map.remove("cpu");
                }
                Service::from_definition(value).map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    /// A service's definition as stored: its secrets sealed.
    fn encode(&self, service: &Service) -> Result<Vec<u8>, StoreError> {
        let mut definition = service.definition.clone();
        self.sealer
            .seal(&service.spec.name, &mut definition)
            .map_err(StoreError::Io)?;
        serde_json::to_vec_pretty(&definition).map_err(|e| StoreError::Io(io::Error::other(e)))
    }

    /// A definition as its store holds it now (see [`ServiceStore::fetch`]).
    pub async fn fetch(&self, name: &str) -> Result<Option<StoredDefinition>, StoreError> {
        self.store.fetch(name).await
    }

    /// Every later change to the services, this server's and the others' alike.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ServiceEvent> {
        self.events.subscribe()
    }

    fn announce(&self, event: ServiceEvent) {
        // No subscriber is no error.
        let _ = self.events.send(event);
    }

    /// Changes other servers make to the shared store, when there is one.
    pub fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ServiceChange>> {
        self.store.follow()
    }

    /// Adds a service that is already stored (loaded at start-up, or changed by another
    /// server), unless what this registry holds under its name is as new or newer. Returns
    /// whether it was added.
    pub fn restore(&self, deployed: Deployed) -> bool {
        let name = deployed.service.spec.name.clone();
        let mut services = self.write();
        if services
            .by_name
            .get(&name)
            .is_some_and(|d| d.revision >= deployed.revision)
        {
            return false;
        }
        services.insert(name.clone(), Arc::new(deployed));
        drop(services);
        self.announce(ServiceEvent::Deployed(name));
        true
    }

    /// Forgets a service another server deleted at `revision`, unless this registry holds a
    /// newer one under its name (created again since).
    pub fn forget(&self, name: &str, revision: Revision) -> Option<Arc<Deployed>> {
        let mut services = self.write();
        let current = services.by_name.get(name)?.clone();
        if current.revision > revision {
            return None;
        }
        services.remove(name);
        drop(services);
        self.announce(ServiceEvent::Removed(name.to_string()));
        Some(current)
    }

    /// Creates a service; fails if the name is taken.
    pub async fn create(&self, mut deployed: Deployed) -> Result<Arc<Deployed>, RegistryError> {
        let name = deployed.service.spec.name.clone();
        if self.get(&name).is_some() {
            return Err(RegistryError::Exists(name));
        }
        deployed.revision = self
            .store
            .create(&name, &self.encode(&deployed.service)?)
            .await
            .map_err(|e| RegistryError::of(&name, e, RegistryError::Exists))?;
        Ok(self.install(deployed))
    }

    /// Replaces the service stored at revision `expected`; `Conflict` when another change
    /// landed since. Invocations already running keep the old one.
    pub async fn replace(
        &self,
        mut deployed: Deployed,
        expected: Revision,
    ) -> Result<Arc<Deployed>, RegistryError> {
        let name = deployed.service.spec.name.clone();
        deployed.revision = self
            .store
            .update(&name, &self.encode(&deployed.service)?, expected)
            .await
            .map_err(|e| RegistryError::of(&name, e, RegistryError::Conflict))?;
        Ok(self.install(deployed))
    }

    /// Puts a just-stored service in the tables, unless a newer revision got there first
    /// (another server's change, seen through the store meanwhile).
    fn install(&self, deployed: Deployed) -> Arc<Deployed> {
        let name = deployed.service.spec.name.clone();
        let deployed = Arc::new(deployed);
        let mut services = self.write();
        match services.by_name.get(&name) {
            Some(current) if current.revision > deployed.revision => current.clone(),
            _ => {
                services.insert(name.clone(), deployed.clone());
                drop(services);
                self.announce(ServiceEvent::Deployed(name));
                deployed
            }
        }
    }

    /// Removes a service.
    pub async fn remove(&self, name: &str) -> Result<Arc<Deployed>, RegistryError> {
        let Some(deployed) = self.get(name) else {
            return Err(RegistryError::NotFound(name.to_string()));
        };
        self.store
            .delete(name)
            .await
            .map_err(|e| RegistryError::of(name, e, RegistryError::Conflict))?;
        self.write().remove(name);
        self.announce(ServiceEvent::Removed(name.to_string()));
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

    #[tokio::test]
    async fn create_replace_remove_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, found) = Registry::open(dir.path()).await.unwrap();
        assert!(found.is_empty());
        reg.create(Deployed::new(service("a"), None, 4))
            .await
            .unwrap();
        assert!(matches!(
            reg.create(Deployed::new(service("a"), None, 4)).await,
            Err(RegistryError::Exists(_))
        ));
        assert!(matches!(
            reg.replace(Deployed::new(service("b"), None, 4), 0).await,
            Err(RegistryError::NotFound(_))
        ));
        let first = reg.get("a").unwrap().revision;
        reg.replace(Deployed::new(service("a"), None, 4), first)
            .await
            .unwrap();
        // A second update from the same read lost the race: refused, never merged.
        assert!(matches!(
            reg.replace(Deployed::new(service("a"), None, 4), first)
                .await,
            Err(RegistryError::Conflict(_))
        ));
        reg.create(Deployed::new(service("b"), None, 4))
            .await
            .unwrap();
        reg.remove("b").await.unwrap();
        assert_eq!(reg.users_of(&Digest::of(b"m")), vec!["a".to_string()]);

        let (_, found) = Registry::open(dir.path()).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.definition["extra"], json!([1]));
    }

    #[tokio::test]
    async fn tokens_are_looked_up_by_digest_and_follow_replace_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = Registry::open(dir.path()).await.unwrap();
        let with_token = |token: &str| {
            Service::from_definition(
                json!({"name": "a", "module": Digest::of(b"m").to_string(), "token": token}),
            )
            .unwrap()
        };
        reg.create(Deployed::new(with_token("first"), None, 1))
            .await
            .unwrap();
        assert_eq!(reg.owner_of_token(b"first").unwrap().service.spec.name, "a");
        assert!(reg.owner_of_token(b"other").is_none());
        let revision = reg.get("a").unwrap().revision;
        reg.replace(Deployed::new(with_token("second"), None, 1), revision)
            .await
            .unwrap();
        assert!(reg.owner_of_token(b"first").is_none());
        assert!(reg.owner_of_token(b"second").is_some());
        reg.remove("a").await.unwrap();
        assert!(reg.owner_of_token(b"second").is_none());
    }

    #[tokio::test]
    async fn a_stored_cpu_earlier_versions_took_is_left_out_not_the_service() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        let stored = json!({"name": "old", "module": Digest::of(b"m").to_string(), "cpu": "lots"});
        std::fs::write(dir.path().join("services/old.json"), stored.to_string()).unwrap();
        let (_, found) = Registry::open(dir.path()).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.spec.cpu, None);
    }

    #[tokio::test]
    async fn unreadable_definitions_are_skipped_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::write(dir.path().join("services/bad.json"), b"{not json").unwrap();
        let (_, found) = Registry::open(dir.path()).await.unwrap();
        assert!(found.is_empty());
        assert!(dir.path().join("services/bad.json").exists());
    }
}
