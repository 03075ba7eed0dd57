//! The deployer: every change to services and modules, and the rules that keep them
//! consistent. A service never names a module that is not stored, a module in use is never
//! deleted, a definition is validated against this server's limits, and no job is stored for a
//! service being deleted (it would outlive it, or show under a service created again with the
//! same name). Bucket events fan out here too: an object created in the embedded store becomes
//! one job per service whose input folder holds it.

mod images;

pub use images::Refresh;

use crate::jobs::record::JobRecord;
use crate::jobs::{CreateError, JobInput, Jobs};
use crate::kube::Kube;
use crate::modules::{Digest, ModuleError, ModuleStore, Stored};
use crate::oscar_definition;
use crate::registry::{Deployed, Registry, RegistryError};
use crate::service::{DefinitionError, Service};
use crate::storage::Storage;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Failures of deploy-time operations.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The definition is invalid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// Name taken or not found, or the registry's disk failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The module store failed or refused the upload.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The definition names a module that was never uploaded.
    #[error("module {0} is not stored: upload it first with POST /system/modules")]
    UnknownModule(Digest),
    /// The module is used by services.
    #[error("module {digest} is used by service(s) {}", services.join(", "))]
    ModuleInUse {
        /// The module.
        digest: Digest,
        /// Who uses it.
        services: Vec<String>,
    },
    /// Internal failure (a panicked blocking task).
    #[error("internal error: {0}")]
    Internal(String),
    /// A service's `image` could not be resolved or pulled.
    #[error(transparent)]
    Image(#[from] crate::oci::OciError),
    /// The Kubernetes API failed to take an exposed image service's Deployment or Service
    /// (the definition is stored; applying it again retries).
    #[error("the service is stored, but its Deployment could not be applied: {0}")]
    Cluster(String),
}

/// Whether `deployed` is an image service with an exposed Deployment.
fn exposed_image(deployed: &Deployed) -> bool {
    matches!(
        deployed.service.spec.backend,
        crate::service::Backend::Image { .. }
    ) && deployed.service.spec.expose.is_some_and(|e| e.api_port > 0)
}

/// Runtime image -> ((modified, length) of its file, the module stored from it).
type RuntimeModules = std::sync::Mutex<
    std::collections::HashMap<&'static str, ((Option<std::time::SystemTime>, u64), Digest)>,
>;

/// What a definition may ask of this server.
#[derive(Debug, Clone, Copy)]
pub struct DeployLimits {
    /// `--max-memory`.
    pub max_memory: u64,
    /// `--max-timeout`.
    pub max_timeout: Duration,
    /// `--max-service-concurrency`.
    pub service_concurrency: usize,
    /// `--allow-local-endpoints`.
    pub allow_local_endpoints: bool,
    /// `--default-memory`, filled into definitions that set none, as OSCAR fills its own.
    pub default_memory: u64,
    /// `--image-refresh`: how often a synchronous call re-checks a wasm image's tag.
    pub image_refresh: Duration,
}

/// Changes services and modules, keeping them consistent.
pub struct Deployer {
    registry: Arc<Registry>,
    modules: Arc<ModuleStore>,
    storage: Arc<Storage>,
    jobs: Arc<Jobs>,
    kube: Option<Arc<Kube>>,
    images_available: bool,
    /// `--runtimes-dir`.
    runtimes_dir: std::path::PathBuf,
    /// The packages script services may name.
    packages: crate::packages::Packages,
    /// Each runtime's module, by the file's modification time and size when it was stored.
    runtime_modules: RuntimeModules,
    /// The image repositories services may pull from.
    settings: Arc<crate::cluster_settings::ClusterSettings>,
    /// Where wasm images come from.
    registries: Arc<crate::oci::Registries>,
    /// When each wasm-image service's tag was last checked, one check at a time per service.
    image_checks: images::Checks,
    /// Where the poller keeps its state (forgotten with a deleted service).
    pollers: Arc<dyn crate::storage::poller_states::PollerStates>,
    limits: DeployLimits,
    /// Held shared while a job is accepted and exclusively while a service is deleted.
    jobs_gate: tokio::sync::RwLock<()>,
    /// Serialises changes that touch both the registry and the module store.
    deploy_lock: tokio::sync::Mutex<()>,
}

/// The pieces a [`Deployer`] changes.
pub struct DeployerParts {
    /// The services.
    pub registry: Arc<Registry>,
    /// The modules.
    pub modules: Arc<ModuleStore>,
    /// Buckets of `minio.default` paths are created at deploy.
    pub storage: Arc<Storage>,
    /// Jobs go with their service.
    pub jobs: Arc<Jobs>,
    /// The cluster's Jobs go with their service too.
    pub kube: Option<Arc<Kube>>,
    /// Where the pollers keep what they have seen.
    pub pollers: Arc<dyn crate::storage::poller_states::PollerStates>,
    /// The administrator's run-time settings (allowed image repositories).
    pub settings: Arc<crate::cluster_settings::ClusterSettings>,
    /// The OCI registries client.
    pub registries: Arc<crate::oci::Registries>,
    /// Where the script runtimes' components are (`--runtimes-dir`).
    pub runtimes_dir: std::path::PathBuf,
    /// The packages script services may name.
    pub packages: crate::packages::Packages,
}

impl Deployer {
    /// A deployer over `parts`, within `limits`.
    pub fn new(parts: DeployerParts, limits: DeployLimits) -> Self {
        Self {
            images_available: parts.kube.is_some(),
            runtimes_dir: parts.runtimes_dir,
            packages: parts.packages,
            runtime_modules: Default::default(),
            settings: parts.settings,
            registries: parts.registries,
            image_checks: Default::default(),
            registry: parts.registry,
            modules: parts.modules,
            storage: parts.storage,
            jobs: parts.jobs,
            kube: parts.kube,
            pollers: parts.pollers,
            limits,
            jobs_gate: tokio::sync::RwLock::new(()),
            deploy_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn validate(&self, value: Value) -> Result<Service, DeployError> {
        let service = Service::from_definition(value)?;
        if !self.limits.allow_local_endpoints {
            for (reference, provider) in &service.spec.storage.providers {
                if let Some(reason) = provider
                    .endpoint
                    .as_deref()
                    .and_then(crate::storage::spec::local_endpoint)
                {
                    return Err(DefinitionError::InvalidField {
                        field: "storage_providers",
                        reason: format!("{reference}: {reason}"),
                    }
                    .into());
                }
            }
        }
        // Image services run as Kubernetes Jobs: only with a cluster.
        if let crate::service::Backend::Image { image, .. } = &service.spec.backend {
            if !self.images_available {
                return Err(DefinitionError::ImageUnsupported.into());
            }
            self.settings.get().check_image(image).map_err(|reason| {
                DefinitionError::InvalidField {
                    field: "image",
                    reason,
                }
            })?;
        }
        if service.spec.storage.mount.is_some() {
            let refused = if service.spec.backend.module().is_none() {
                Err("an image service's Job gets no mount here (OSCAR mounts it with an rclone sidecar); give the Job's script the bucket through its input and output".to_string())
            } else {
                self.storage.check_mount(&service.spec.storage)
            };
            refused.map_err(|reason| DefinitionError::InvalidField {
                field: "mount",
                reason,
            })?;
        }
        if let Some(memory) = service.spec.memory_limit
            && memory > self.limits.max_memory
        {
            return Err(DefinitionError::InvalidField {
                field: "memory",
                reason: format!(
                    "{memory} bytes is above this server's limit of {} bytes",
                    self.limits.max_memory
                ),
            }
            .into());
        }
        if let Some(timeout) = service.spec.timeout
            && timeout > self.limits.max_timeout
        {
            return Err(DefinitionError::InvalidField {
                field: "timeout",
                reason: format!(
                    "{} s is above this server's limit of {} s",
                    timeout.as_secs_f64(),
                    self.limits.max_timeout.as_secs_f64()
                ),
            }
            .into());
        }
        Ok(service)
    }

    /// What is filled into a definition where it is silent.
    fn defaults(&self) -> oscar_definition::Defaults {
        let store = &self.storage.default_provider;
        oscar_definition::Defaults {
            memory: crate::quantity::format(self.limits.default_memory),
            store_endpoint: store.endpoint.clone(),
            store_verify: store.verify,
            store_region: store.region.clone(),
        }
    }

    async fn deploy(&self, service: Service) -> Result<Deployed, DeployError> {
        let ignored = oscar_definition::not_acted_on(
            &service.definition,
            service.spec.backend.module().is_none(),
        );
        if !ignored.is_empty() {
            tracing::warn!(service = %service.spec.name, fields = ?ignored, "the definition sets fields that OSCAR acts on and this runtime keeps but does not act on (see the README)");
        }
        self.storage
            .ensure_buckets(&service.spec.storage)
            .map_err(|e| DeployError::Internal(format!("creating the service's buckets: {e}")))?;
        let Some(&digest) = service.spec.backend.module() else {
            // An image service: its Jobs need nothing deployed here.
            return Ok(Deployed::new(
                service,
                None,
                self.limits.service_concurrency,
            ));
        };
        match self
            .modules
            .runnable(&digest)
            .await
            .map_err(DeployError::from)
        {
            Ok(runnable) => {
                // An HTTP service has no folders for a mount to join: refused, not ignored.
                if service.spec.storage.mount.is_some()
                    && let Ok(linked) = runnable.linked()
                    && matches!(*linked, crate::wasm::Linked::Http(_))
                {
                    return Err(DefinitionError::InvalidField {
                        field: "mount",
                        reason: "an HTTP service (a wasi:http/proxy component) gets no folders; mount is for file-processing services".into(),
                    }
                    .into());
                }
                Ok(Deployed::new(
                    service,
                    Some(runnable),
                    self.limits.service_concurrency,
                ))
            }
            Err(DeployError::Module(ModuleError::NotFound(d))) => {
                Err(DeployError::UnknownModule(d))
            }
            Err(e) => Err(e),
        }
    }

    /// POST /system/services.
    pub async fn create_service(
        &self,
        mut definition: Value,
    ) -> Result<Arc<Deployed>, DeployError> {
        if let Value::Object(map) = &mut definition {
            oscar_definition::normalize(map);
            oscar_definition::fill_defaults(map, &self.defaults());
            self.resolve_image(map).await?;
        }
        let service = self.validate(definition)?;
        let _guard = self.deploy_lock.lock().await;
        let deployed = self.deploy(service).await?;
        let deployed = self.registry.create(deployed).await?;
        self.sync_exposed(&deployed, false).await?;
        Ok(deployed)
    }

    /// An image service with `expose`: its Deployment and Service applied, as OSCAR does at
    /// create and update; an update that drops `expose` (`was_exposed`) removes them.
    async fn sync_exposed(
        &self,
        deployed: &Deployed,
        was_exposed: bool,
    ) -> Result<(), DeployError> {
        let (Some(kube), crate::service::Backend::Image { image, script, pod }) =
            (&self.kube, &deployed.service.spec.backend)
        else {
            return Ok(());
        };
        let spec = &deployed.service.spec;
        let text = |key: &str| {
            deployed
                .service
                .definition
                .get(key)
                .and_then(|v| v.as_str())
        };
        let result = match spec.expose.filter(|e| e.api_port > 0) {
            Some(expose) => {
                let exposed = crate::kube::exposed::ExposedImage {
                    service: &spec.name,
                    image,
                    script,
                    api_port: expose.api_port,
                    replicas: expose.min_scale,
                    default_command: expose.default_command,
                    memory: text("memory"),
                    cpu: text("cpu"),
                    pod,
                    env: &spec.env,
                };
                kube.apply_exposed(&exposed).await
            }
            None if was_exposed => kube.delete_exposed(&spec.name).await,
            None => Ok(()),
        };
        result.map_err(|e| DeployError::Cluster(e.to_string()))
    }

    /// PUT /system/services: replaces the definition; keeps the token when the new one has none.
    pub async fn update_service(
        &self,
        mut definition: Value,
    ) -> Result<Arc<Deployed>, DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let existing = definition
            .get("name")
            .and_then(Value::as_str)
            .and_then(|name| self.registry.get(name));
        if let Value::Object(map) = &mut definition {
            oscar_definition::normalize(map);
            if let Some(existing) = &existing {
                // OSCAR keeps the token when the new definition has none, or an empty one (as
                // oscar-cli sends on every apply).
                if map
                    .get("token")
                    .is_none_or(|t| t.is_null() || t.as_str() == Some(""))
                {
                    map.insert(
                        "token".into(),
                        Value::String(existing.service.spec.token.clone()),
                    );
                }
                // A definition read back with GET shows credentials as "hidden" and secrets
                // blank: keep the stored ones.
                crate::storage::spec::restore_hidden(map, &existing.service.definition);
                oscar_definition::restore_blank_secrets(map, &existing.service.definition);
            }
            oscar_definition::fill_defaults(map, &self.defaults());
            self.resolve_image(map).await?;
        }
        let service = self.validate(definition)?;
        // The update replaces the revision it was built from: a change that landed meanwhile
        // (on another server) makes it a conflict, never a mix of the two.
        let Some(existing) = existing.filter(|e| e.service.spec.name == service.spec.name) else {
            return Err(RegistryError::NotFound(service.spec.name).into());
        };
        let deployed = self.deploy(service).await?;
        let was_exposed = exposed_image(&existing);
        let deployed = self.registry.replace(deployed, existing.revision).await?;
        self.sync_exposed(&deployed, was_exposed).await?;
        Ok(deployed)
    }

    /// Applies a change another server made to the shared registry: deploys the definition
    /// here (its module compiled from the shared module store), or forgets a deleted
    /// service, its running jobs here stopped.
    pub async fn apply_remote(&self, change: crate::registry::ServiceChange) {
        use crate::registry::ServiceChange;
        match change {
            ServiceChange::Put(stored) => {
                if self
                    .registry
                    .get(&stored.name)
                    .is_some_and(|d| d.revision >= stored.revision)
                {
                    return;
                }
                let service = match self.registry.parse(&stored.bytes) {
                    Ok(service) => service,
                    Err(reason) => {
                        tracing::error!(service = %stored.name, %reason, "another server stored a definition this one cannot read; skipped");
                        return;
                    }
                };
                let runnable = match service.spec.backend.module().copied() {
                    None => None,
                    Some(digest) => match self.modules.runnable(&digest).await {
                        Ok(runnable) => Some(runnable),
                        Err(e) => {
                            tracing::error!(service = %stored.name, error = %e, "service module unavailable");
                            None
                        }
                    },
                };
                let mut deployed =
                    Deployed::new(service, runnable, self.limits.service_concurrency);
                deployed.revision = stored.revision;
                if self.registry.restore(deployed) {
                    tracing::info!(service = %stored.name, revision = stored.revision, "service changed on another server: applied");
                }
            }
            ServiceChange::Deleted { name, revision } => {
                if self.registry.forget(&name, revision).is_some() {
                    tracing::info!(service = %name, "service deleted on another server: removed");
                }
            }
        }
    }

    /// DELETE /system/services/{name}: the service, then its jobs (running ones stopped).
    pub async fn delete_service(&self, name: &str) -> Result<(), DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let _no_new_jobs = self.jobs_gate.write().await;
        let was_exposed = self.registry.get(name).is_some_and(|d| exposed_image(&d));
        self.registry.remove(name).await?;
        if let Some(kube) = &self.kube
            && let Err(e) = kube.delete_service_jobs(name).await
        {
            tracing::warn!(service = %name, error = %e, "could not delete the service's Jobs");
        }
        if let Some(kube) = self.kube.as_ref().filter(|_| was_exposed)
            && let Err(e) = kube.delete_exposed(name).await
        {
            tracing::warn!(service = %name, error = %e, "could not delete the service's Deployment");
        }
        self.jobs.remove_service(name).await;
        if let Err(e) = self.pollers.forget(name).await {
            tracing::warn!(service = %name, error = %e, "could not forget the service's poller state");
        }
        Ok(())
    }

    /// POST /system/modules: validates, compiles and stores a module.
    pub async fn put_module(&self, wasm: bytes::Bytes) -> Result<Stored, DeployError> {
        Ok(self.modules.put(wasm).await?)
    }

    /// PUT /system/services/{name}/module: stores a module and points the service at it.
    pub async fn attach_module(
        &self,
        name: &str,
        wasm: bytes::Bytes,
    ) -> Result<Stored, DeployError> {
        if self.registry.get(name).is_none() {
            return Err(RegistryError::NotFound(name.to_string()).into());
        }
        let stored = self.put_module(wasm).await?;
        let _guard = self.deploy_lock.lock().await;
        let existing = self
            .registry
            .get(name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let mut definition = existing.service.definition.clone();
        definition.insert("module".into(), Value::String(stored.digest.to_string()));
        let service = self.validate(Value::Object(definition))?;
        let deployed = self.deploy(service).await?;
        self.registry.replace(deployed, existing.revision).await?;
        Ok(stored)
    }

    /// DELETE /system/modules/{digest}: refused while a service uses it.
    pub async fn delete_module(&self, digest: Digest) -> Result<(), DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let services = self.registry.users_of(&digest);
        if !services.is_empty() {
            return Err(DeployError::ModuleInUse { digest, services });
        }
        Ok(self.modules.delete(&digest).await?)
    }

    /// Accepts a job for `service`: durable when this returns, or refused (no such service,
    /// pending limits, disk failure).
    pub async fn submit_job(
        &self,
        service: &str,
        input: JobInput,
    ) -> Result<JobRecord, CreateError> {
        self.submit_job_for(service, input, None).await
    }

    /// [`Deployer::submit_job`], accounted to `user` (an OIDC subject) rather than the
    /// service's owner.
    pub async fn submit_job_for(
        &self,
        service: &str,
        input: JobInput,
        user: Option<String>,
    ) -> Result<JobRecord, CreateError> {
        self.submit(service, input, user, crate::jobs::Admission::Limited)
            .await
    }

    /// The job of an object stored in a bucket (created in the embedded store, or found by a
    /// poller): kept whatever the pending limits (see [`crate::jobs::Admission::Always`]).
    pub async fn submit_stored_object(
        &self,
        service: &str,
        event: crate::storage::event::ObjectEvent,
    ) -> Result<JobRecord, CreateError> {
        self.submit(
            service,
            JobInput::Event(event),
            None,
            crate::jobs::Admission::Always,
        )
        .await
    }

    async fn submit(
        &self,
        service: &str,
        input: JobInput,
        user: Option<String>,
        admission: crate::jobs::Admission,
    ) -> Result<JobRecord, CreateError> {
        let _gate = self.jobs_gate.read().await;
        if self.registry.get(service).is_none()
            && images::Refresh::catch_up(self, service).await.is_none()
        {
            return Err(CreateError::NoService(service.to_string()));
        }
        self.jobs.accept_with(service, input, user, admission).await
    }
}
