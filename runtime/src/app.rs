//! The shared handle behind every request: the service registry, the module store and the
//! invoker, and the operations that must keep them consistent with each other (a service never
//! names a module that is not stored; a module in use is never deleted).

use crate::auth::AdminCredentials;
use crate::config::ServeArgs;
use crate::executor::{Executor, ExecutorSettings};
use crate::invoke::{Invoker, InvokerSettings, OutputLimits, scratch::ScratchRoot};
use crate::jobs::Jobs;
use crate::jobs::store::Retention;
use crate::metrics::Metrics;
use crate::modules::{Digest, ModuleError, ModuleStore, Stored};
use crate::registry::{Deployed, Registry, RegistryError};
use crate::service::{DefinitionError, Service};
use crate::wasm::{EngineSettings, WasmEngine};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

/// Failures of start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another server holds the data folder.
    #[error("another oscar-wasm server is using the data folder {0}")]
    DataDirLocked(PathBuf),
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The wasm engine could not be built.
    #[error("could not start the WebAssembly engine: {0}")]
    Engine(String),
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// Everything a request handler needs; cheap to share behind an `Arc`.
pub struct App {
    /// Service definitions and their runnable modules.
    pub registry: Registry,
    /// Uploaded modules.
    pub modules: ModuleStore,
    /// Runs invocations on every backend.
    pub executor: Executor,
    /// The administrator's credentials.
    pub admin: AdminCredentials,
    /// Asynchronous jobs and kept logs.
    pub jobs: Jobs,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Storage providers' defaults and the staging folder for downloads.
    pub storage: crate::storage::Storage,
    /// The data folder (canonical).
    pub data_dir: PathBuf,
    /// Bounds on request bodies.
    pub requests: crate::config::RequestLimits,
    /// Held shared while a job is accepted and exclusively while a service is deleted, so that
    /// no job is stored for a service being deleted (it would outlive it, and show under a
    /// service created again with the same name).
    jobs_gate: tokio::sync::RwLock<()>,
    /// Serialises changes that touch both the registry and the module store.
    deploy_lock: tokio::sync::Mutex<()>,
    max_memory: u64,
    allow_local_endpoints: bool,
    max_timeout: std::time::Duration,
    service_concurrency: usize,
    _data_lock: std::fs::File,
}

impl App {
    /// Opens the data folder (creating it), loads services and their modules, and prepares the
    /// scratch root. Services whose module cannot be loaded stay registered and answer 503.
    pub fn open(args: &ServeArgs) -> Result<Arc<Self>, StartError> {
        Self::open_with(args, None, None)
    }

    /// [`App::open`], with the embedded store's bound address when it runs.
    pub fn open_with(
        args: &ServeArgs,
        embedded_store: Option<std::net::SocketAddr>,
        kube: Option<crate::kube::Kube>,
    ) -> Result<Arc<Self>, StartError> {
        let data_dir = &args.data_dir;
        // A new data folder is owner-only: it holds secrets and users' files. An existing one
        // is left as its owner set it; the folders inside are made owner-only below.
        if !data_dir.exists() {
            crate::fsutil::create_private_dir(data_dir)
                .map_err(io_context(format!("creating {}", data_dir.display())))?;
        }
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_context(format!("resolving {}", data_dir.display())))?;
        let data_lock = lock_data_dir(&data_dir)?;
        let default_timeout = args.default_timeout().map_err(StartError::Config)?;
        let max_timeout = std::time::Duration::try_from_secs_f64(args.max_timeout)
            .map_err(|e| StartError::Config(format!("--max-timeout: {e}")))?;
        let service_concurrency = args
            .max_service_concurrency
            .unwrap_or(args.max_concurrency)
            .max(1);
        if args.default_memory > args.max_memory {
            return Err(StartError::Config(
                "--default-memory is above --max-memory".into(),
            ));
        }

        let engine = WasmEngine::new(&EngineSettings {
            max_instances: u32::try_from(args.max_concurrency).unwrap_or(u32::MAX),
            max_memory: args.max_memory,
        })
        .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let metrics = Arc::new(Metrics::new());
        let modules = ModuleStore::open(&data_dir, engine.clone(), metrics.clone())
            .map_err(io_context("opening the module store"))?;
        let (registry, stored) =
            Registry::open(&data_dir).map_err(io_context("opening the service registry"))?;
        for service in stored {
            let runnable = match service.spec.backend.module().map(|m| modules.runnable(m)) {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    tracing::error!(service = %service.spec.name, error = %e, "service module unavailable");
                    None
                }
                None => None,
            };
            registry.restore(Deployed::new(service, runnable, service_concurrency));
        }

        let scratch_path = args.scratch_root(&data_dir);
        let scratch = ScratchRoot::prepare(scratch_path.clone()).map_err(io_context(format!(
            "preparing scratch folder {}",
            scratch_path.display()
        )))?;
        let invoker = Invoker::new(
            engine,
            scratch,
            InvokerSettings {
                default_timeout,
                default_memory: args.default_memory,
                output_limits: OutputLimits {
                    max_files: args.max_output_files,
                    max_bytes: args.max_output,
                },
                max_log_bytes: usize::try_from(args.max_log).unwrap_or(usize::MAX),
            },
            &metrics,
        );
        let jobs = Jobs::open(
            &data_dir,
            Retention {
                max_jobs: args.max_jobs,
                max_bytes: args.max_job_bytes,
                max_failed_runs: args.max_failed_runs,
                max_pending: args.max_pending_jobs.max(1),
                max_pending_total: args.max_pending_total.max(1),
            },
            args.job_workers,
            metrics.clone(),
        )
        .map_err(io_context("opening the job store"))?;
        let storage = crate::storage::Storage {
            default_provider: args.default_provider(
                embedded_store,
                args.embedded_store_keys(&data_dir)
                    .map_err(io_context("reading the embedded store's keys"))?,
            ),
            staging: invoker.scratch_root().join(".staging"),
            embedded_buckets: embedded_store.map(|_| data_dir.join("buckets")),
        };
        storage.clean_staging();
        let executor = Executor::new(
            invoker,
            kube.map(Arc::new),
            ExecutorSettings {
                max_concurrency: args.max_concurrency,
                max_queue: args.max_queue,
                default_timeout,
            },
            metrics.clone(),
        );
        Ok(Arc::new(Self {
            executor,
            data_dir: data_dir.clone(),
            storage,
            registry,
            modules,
            admin: AdminCredentials::new(&args.user, args.password.as_deref()),
            jobs,
            metrics,
            requests: args.request_limits(),
            jobs_gate: tokio::sync::RwLock::new(()),
            deploy_lock: tokio::sync::Mutex::new(()),
            max_memory: args.max_memory,
            allow_local_endpoints: args.allow_local_endpoints,
            max_timeout,
            service_concurrency,
            _data_lock: data_lock,
        }))
    }

    fn validate(&self, value: Value) -> Result<Service, DeployError> {
        let service = Service::from_definition(value)?;
        if !self.allow_local_endpoints {
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
        if service.spec.backend.module().is_none() && self.executor.kube().is_none() {
            return Err(DefinitionError::ImageUnsupported.into());
        }
        if let Some(memory) = service.spec.memory_limit
            && memory > self.max_memory
        {
            return Err(DefinitionError::InvalidField {
                field: "memory",
                reason: format!(
                    "{memory} bytes is above this server's limit of {} bytes",
                    self.max_memory
                ),
            }
            .into());
        }
        if let Some(timeout) = service.spec.timeout
            && timeout > self.max_timeout
        {
            return Err(DefinitionError::InvalidField {
                field: "timeout",
                reason: format!(
                    "{} s is above this server's limit of {} s",
                    timeout.as_secs_f64(),
                    self.max_timeout.as_secs_f64()
                ),
            }
            .into());
        }
        Ok(service)
    }

    async fn deploy(self: &Arc<Self>, service: Service) -> Result<Deployed, DeployError> {
        self.storage
            .ensure_buckets(&service.spec.storage)
            .map_err(|e| DeployError::Internal(format!("creating the service's buckets: {e}")))?;
        let Some(&digest) = service.spec.backend.module() else {
            // An image service: its Jobs need nothing deployed here.
            return Ok(Deployed::new(service, None, self.service_concurrency));
        };
        let runnable = self
            .blocking(move |app| app.modules.runnable(&digest))
            .await;
        match runnable {
            Ok(runnable) => Ok(Deployed::new(
                service,
                Some(runnable),
                self.service_concurrency,
            )),
            Err(DeployError::Module(ModuleError::NotFound(d))) => {
                Err(DeployError::UnknownModule(d))
            }
            Err(e) => Err(e),
        }
    }

    /// POST /system/services.
    pub async fn create_service(
        self: &Arc<Self>,
        definition: Value,
    ) -> Result<Arc<Deployed>, DeployError> {
        let service = self.validate(definition)?;
        let _guard = self.deploy_lock.lock().await;
        let deployed = self.deploy(service).await?;
        Ok(self.registry.create(deployed)?)
    }

    /// PUT /system/services: replaces the definition; keeps the token when the new one has none.
    pub async fn update_service(
        self: &Arc<Self>,
        mut definition: Value,
    ) -> Result<Arc<Deployed>, DeployError> {
        let _guard = self.deploy_lock.lock().await;
        if let Value::Object(map) = &mut definition
            && let Some(Value::String(name)) = map.get("name")
            && let Some(existing) = self.registry.get(name)
            && matches!(map.get("token"), None | Some(Value::Null))
        {
            map.insert(
                "token".into(),
                Value::String(existing.service.spec.token.clone()),
            );
        }
        // A definition read back with GET shows credentials as "hidden": keep the stored ones.
        if let Value::Object(map) = &mut definition
            && let Some(Value::String(name)) = map.get("name")
            && let Some(existing) = self.registry.get(name)
        {
            crate::storage::spec::restore_hidden(map, &existing.service.definition);
        }
        let service = self.validate(definition)?;
        if self.registry.get(&service.spec.name).is_none() {
            return Err(RegistryError::NotFound(service.spec.name).into());
        }
        let deployed = self.deploy(service).await?;
        Ok(self.registry.replace(deployed)?)
    }

    /// DELETE /system/services/{name}: the service, then its jobs (running ones stopped).
    pub async fn delete_service(self: &Arc<Self>, name: &str) -> Result<(), DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let _no_new_jobs = self.jobs_gate.write().await;
        self.registry.remove(name)?;
        if let Some(kube) = self.executor.kube()
            && let Err(e) = kube.delete_service_jobs(name).await
        {
            tracing::warn!(service = %name, error = %e, "could not delete the service's Jobs");
        }
        let name = name.to_string();
        self.blocking(move |app| {
            app.jobs.delete_service(&name);
            crate::storage::poller::forget(&app.data_dir, &name);
            Ok::<_, DeployError>(())
        })
        .await
    }

    /// POST /system/modules: validates, compiles and stores a module.
    pub async fn put_module(self: &Arc<Self>, wasm: bytes::Bytes) -> Result<Stored, DeployError> {
        self.blocking(move |app| app.modules.put(&wasm)).await
    }

    /// PUT /system/services/{name}/module: stores a module and points the service at it.
    pub async fn attach_module(
        self: &Arc<Self>,
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
        self.registry.replace(deployed)?;
        Ok(stored)
    }

    /// DELETE /system/modules/{digest}: refused while a service uses it.
    pub async fn delete_module(self: &Arc<Self>, digest: Digest) -> Result<(), DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let services = self.registry.users_of(&digest);
        if !services.is_empty() {
            return Err(DeployError::ModuleInUse { digest, services });
        }
        self.blocking(move |app| app.modules.delete(&digest)).await
    }

    /// Runs store work (compiling, disk I/O) off the async reactor.
    async fn blocking<T, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&App) -> Result<T, E> + Send + 'static,
    ) -> Result<T, DeployError>
    where
        T: Send + 'static,
        E: Into<DeployError> + Send + 'static,
    {
        let app = self.clone();
        tokio::task::spawn_blocking(move || f(&app).map_err(Into::into))
            .await
            .map_err(|e| DeployError::Internal(e.to_string()))?
    }
}

/// One server per data folder: a second one would race on every file.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_context(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StartError::DataDirLocked(data_dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(io_context(format!("locking {}", path.display()))(e))
        }
    }
}

impl App {
    /// Accepts a job for `service`: durable when this returns, or refused (no such service,
    /// pending limits, disk failure).
    pub async fn submit_job(
        self: &Arc<Self>,
        service: &str,
        input: crate::jobs::JobInput,
    ) -> Result<crate::jobs::record::JobRecord, crate::jobs::CreateError> {
        let _gate = self.jobs_gate.read().await;
        if self.registry.get(service).is_none() {
            return Err(crate::jobs::CreateError::NoService(service.to_string()));
        }
        let app = self.clone();
        let service = service.to_string();
        tokio::task::spawn_blocking(move || match input {
            crate::jobs::JobInput::Body(bytes) => app.jobs.submit(&service, &bytes),
            crate::jobs::JobInput::Event(event) => app.jobs.submit_event(&service, event),
        })
        .await
        .map_err(|e| std::io::Error::other(format!("the job could not be stored: {e}")))?
    }

    /// An object was created in the embedded store: each service whose `minio.default` input
    /// folder holds it gets one job, on disk before this returns (so before the uploader is
    /// told its upload succeeded).
    pub async fn object_created(self: &Arc<Self>, bucket: String, key: String) {
        let targets: Vec<String> = self
            .registry
            .list()
            .iter()
            .filter(|d| {
                d.service.spec.storage.inputs.iter().any(|input| {
                    input.provider == crate::storage::spec::DEFAULT_PROVIDER
                        && input.holds(&bucket, &key)
                })
            })
            .map(|d| d.service.spec.name.clone())
            .collect();
        for service in targets {
            let event = crate::storage::minio_event(&bucket, &key);
            match self
                .submit_job(&service, crate::jobs::JobInput::Event(event))
                .await
            {
                Ok(record) => {
                    tracing::info!(service = %service, job = %record.name, bucket = %bucket, key = %key, "object created: job accepted");
                }
                Err(e) => {
                    tracing::error!(service = %service, bucket = %bucket, key = %key, error = %e, "object created: the job could not be stored");
                }
            }
        }
    }
}
