//! The composition root: opens the data folder and builds every piece from the server's
//! settings (registry, module store, deployer, executor, jobs, storage), which request
//! handlers and background tasks then share. Nothing here runs requests itself.

use crate::auth::AdminCredentials;
use crate::config::ServeArgs;
use crate::deployer::{DeployLimits, Deployer, DeployerParts};
use crate::executor::wasm::{Invoker, InvokerSettings, scratch::ScratchRoot};
use crate::executor::{Executor, ExecutorSettings};
use crate::faas::outputs::OutputLimits;
use crate::jobs::Jobs;
use crate::jobs::store::Retention;
use crate::metrics::Metrics;
use crate::modules::ModuleStore;
use crate::registry::{Deployed, Registry};
use crate::wasm::{EngineSettings, WasmEngine};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// A state store failed, or is away.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The error.
        source: crate::stores::StoreError,
    },
}

fn store_context(
    context: impl Into<String>,
) -> impl FnOnce(crate::stores::StoreError) -> StartError {
    let context = context.into();
    move |source| StartError::Store { context, source }
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// Everything the server is made of, by concern; cheap to share behind an `Arc`. Routers and
/// handlers that need one concern take only it (`State<Services>`, `State<Buckets>`, ...:
/// axum's `FromRef`), the others the whole.
pub struct App {
    /// Services and their modules.
    pub services: Services,
    /// What runs invocations.
    pub invocations: Invocations,
    /// Asynchronous jobs and kept logs.
    pub jobs: Arc<Jobs>,
    /// Who may call.
    pub users: Users,
    /// Storage providers and buckets.
    pub buckets: Buckets,
    /// What operators see and set: metrics, settings, the cluster, the data folder.
    pub operations: Operations,
    _data_lock: std::fs::File,
}

/// Services and their modules: what the deployer changes.
#[derive(Clone)]
pub struct Services {
    /// Service definitions and their runnable modules.
    pub registry: Arc<Registry>,
    /// Uploaded modules.
    pub modules: Arc<ModuleStore>,
    /// Script services' packages.
    pub packages: crate::packages::Packages,
    /// Every change to services and modules.
    pub deployer: Arc<Deployer>,
}

/// What runs invocations, and what bounds and records the requests for them.
#[derive(Clone)]
pub struct Invocations {
    /// Runs invocations on every backend.
    pub executor: Arc<Executor>,
    /// The Kubernetes API, when image services run here (pods call back through /system/pods).
    pub kube: Option<Arc<crate::kube::Kube>>,
    /// Recent invocation requests, OSCAR's execution log.
    pub executions: Arc<crate::executions::Executions>,
    /// Bounds on request bodies.
    pub requests: crate::config::RequestLimits,
}

/// Who may call: the administrator, OIDC users and their store keys.
#[derive(Clone)]
pub struct Users {
    /// The administrator's credentials.
    pub admin: AdminCredentials,
    /// OIDC tokens from the trusted issuers.
    pub oidc: Arc<crate::oidc::Oidc>,
    /// OIDC users' own keys for the store.
    pub store_users: Arc<crate::storage::store_users::StoreUsers>,
    /// Those users as users of the external MinIO, with `--storage-minio-admin`.
    pub minio_users: Option<Arc<crate::storage::minio_users::MinioUsers>>,
}

/// Storage providers and the buckets of `minio.default`.
#[derive(Clone)]
pub struct Buckets {
    /// Storage providers' defaults and the staging folder for downloads.
    pub storage: Arc<crate::storage::Storage>,
    /// Bucket administration on `minio.default`, for /system/buckets.
    pub bucket_admin: crate::storage::buckets::BucketAdmin,
    /// Owners and visibility of the buckets created through /system/buckets.
    pub bucket_records: Arc<crate::storage::bucket_records::BucketRecords>,
}

/// What operators see and set.
#[derive(Clone)]
pub struct Operations {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What PUT /system/config changes.
    pub settings: Arc<crate::cluster_settings::ClusterSettings>,
    /// The cluster this server is a member of, with `--cluster`.
    pub cluster: Option<crate::cluster::Cluster>,
    /// When the server started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// The data folder (canonical).
    pub data_dir: PathBuf,
    /// What the storage pollers have seen.
    pub pollers: Arc<dyn crate::storage::poller_states::PollerStates>,
    /// Where the settings, bucket records and users' keys are kept.
    pub documents: Arc<dyn crate::documents::DocumentStore>,
    /// The usage accounts of /system/metrics.
    pub usage: Arc<crate::usage::Accounting>,
    /// The users' quotas of /system/quotas.
    pub quotas: Arc<crate::quotas::Quotas>,
}

macro_rules! part_of_app {
    ($($part:ident => $field:ident),* $(,)?) => {
        $(impl axum::extract::FromRef<Arc<App>> for $part {
            fn from_ref(app: &Arc<App>) -> Self {
                app.$field.clone()
            }
        })*
    };
}

part_of_app!(
    Services => services,
    Invocations => invocations,
    Users => users,
    Buckets => buckets,
    Operations => operations,
);

/// Where the shared state is kept: the data folder, or a cluster's NATS.
pub struct StateStores {
    /// Service definitions.
    pub services: Box<dyn crate::registry::ServiceStore>,
    /// Modules' bytes.
    pub modules: Arc<dyn crate::modules::ModuleBlobs>,
    /// Script services' packages, by digest.
    pub packages: Arc<dyn crate::modules::ModuleBlobs>,
    /// Job records and files.
    pub jobs: Box<dyn crate::jobs::store::JobBackend>,
    /// The job queue.
    pub queue: Box<dyn crate::jobs::queue::JobQueue>,
    /// What the storage pollers have seen.
    pub pollers: Arc<dyn crate::storage::poller_states::PollerStates>,
    /// The run-time settings, bucket records and users' store keys.
    pub documents: Arc<dyn crate::documents::DocumentStore>,
}

impl StateStores {
    /// The stores of a server alone, in its data folder.
    pub fn local(data_dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            services: Box::new(crate::registry::local::LocalServices::open(data_dir)?),
            modules: Arc::new(crate::modules::local::LocalModules::open(data_dir)?),
            packages: Arc::new(crate::modules::local::LocalModules::open_packages(
                data_dir,
            )?),
            jobs: Box::new(crate::jobs::local::LocalJobs::open(data_dir)?),
            queue: Box::new(crate::jobs::queue::LocalQueue::default()),
            pollers: Arc::new(crate::storage::poller_states::LocalPollerStates::new(
                data_dir,
            )),
            documents: Arc::new(crate::documents::LocalDocuments::new(data_dir)),
        })
    }

    /// The stores of a cluster member, in NATS JetStream.
    pub async fn cluster(
        cluster: &crate::cluster::Cluster,
    ) -> Result<Self, crate::cluster::ClusterError> {
        use crate::cluster::{documents, jobs, modules, pollers, queue, services};
        Ok(Self {
            services: Box::new(services::NatsServices::open(cluster).await?),
            modules: Arc::new(modules::NatsModules::open(cluster).await?),
            packages: Arc::new(modules::NatsModules::open_packages(cluster).await?),
            jobs: Box::new(jobs::NatsJobs::open(cluster).await?),
            queue: Box::new(queue::NatsQueue::open(cluster).await?),
            pollers: Arc::new(pollers::NatsPollerStates::open(cluster).await?),
            documents: Arc::new(documents::NatsDocuments::open(cluster).await?),
        })
    }
}

impl App {
    /// What keeping an external MinIO's users in step reads, when there is one to keep.
    pub fn minio_sync(&self) -> Option<crate::minio_sync::Parts> {
        let minio_users = self.users.minio_users.clone()?;
        Some(crate::minio_sync::Parts {
            bucket_admin: self.buckets.bucket_admin.clone(),
            bucket_records: self.buckets.bucket_records.clone(),
            registry: self.services.registry.clone(),
            store_users: self.users.store_users.clone(),
            minio_users,
        })
    }

    /// Opens the data folder (creating it), loads services and their modules, and prepares the
    /// scratch root. Services whose module cannot be loaded stay registered and answer 503.
    pub async fn open(args: &ServeArgs) -> Result<Arc<Self>, StartError> {
        Self::open_with(args, None, None, None).await
    }

    /// [`App::open`], with the embedded store's bound address when it runs, the Kubernetes
    /// client for image services, and the cluster whose NATS keeps the shared state.
    pub async fn open_with(
        args: &ServeArgs,
        embedded_store: Option<std::net::SocketAddr>,
        kube: Option<crate::kube::Kube>,
        cluster: Option<(crate::cluster::Cluster, StateStores)>,
    ) -> Result<Arc<Self>, StartError> {
        let (data_dir, data_lock) = open_data_dir(&args.data_dir)?;
        let (cluster, stores) = match cluster {
            Some((cluster, stores)) => (Some(cluster), stores),
            None => (
                None,
                StateStores::local(&data_dir).map_err(io_context("opening the data folder"))?,
            ),
        };
        let settings = Settings::check(args)?;
        let engine = open_engine(args)?;
        let metrics = Arc::new(Metrics::new());
        let modules = Arc::new(
            ModuleStore::with_blobs(&data_dir, stores.modules, engine.clone(), metrics.clone())
                .map_err(io_context("opening the module store"))?,
        );
        let sealer = open_sealer(args, &data_dir, cluster.is_some())?;
        let registry = Arc::new(
            restore_services(
                stores.services,
                sealer,
                &modules,
                settings.service_concurrency,
            )
            .await?,
        );
        let packages = crate::packages::Packages::new(stores.packages);
        let invoker = open_invoker(args, &data_dir, &settings, packages.clone(), &metrics)?;
        let jobs = Arc::new(open_jobs(args, stores.jobs, stores.queue, &metrics).await?);
        let scratch = invoker.scratch_root();
        let storage = Arc::new(open_storage(args, &data_dir, embedded_store, scratch)?);
        let (bucket_admin, bucket_records) = open_buckets(&storage, &stores.documents).await?;
        let (oidc, store_users) = open_users(args, &stores.documents).await?;
        let cluster_settings = open_cluster_settings(&stores.documents).await?;
        let kube = kube.map(Arc::new);
        let deployer = open_deployer(
            args,
            &settings,
            DeployerParts {
                registry: registry.clone(),
                modules: modules.clone(),
                storage: storage.clone(),
                jobs: jobs.clone(),
                kube: kube.clone(),
                pollers: stores.pollers.clone(),
                settings: cluster_settings.clone(),
                registries: Arc::new(crate::oci::Registries::new(
                    args.registry_settings().map_err(StartError::Config)?,
                )),
                runtimes_dir: args.runtimes_dir.clone(),
                packages: packages.clone(),
            },
        );
        let accounts = open_accounts(args, &data_dir, cluster.as_ref(), &stores.documents).await?;
        let executor = open_executor(args, &settings, invoker, kube.clone(), &metrics, &accounts);
        let minio_users = open_minio_users(args, &storage)?;
        Ok(Arc::new(Self {
            services: Services {
                registry,
                modules,
                packages,
                deployer: Arc::new(deployer),
            },
            invocations: Invocations {
                executor: Arc::new(executor),
                kube,
                executions: Default::default(),
                requests: args.request_limits(),
            },
            jobs,
            users: Users {
                admin: AdminCredentials::new(&args.user, args.password.as_deref()),
                oidc,
                store_users,
                minio_users,
            },
            buckets: Buckets {
                storage,
                bucket_admin,
                bucket_records,
            },
            operations: Operations {
                metrics,
                settings: cluster_settings,
                cluster,
                started_ms: crate::clock::now_ms(),
                data_dir,
                pollers: stores.pollers,
                documents: stores.documents,
                usage: accounts.usage,
                quotas: accounts.quotas,
            },
            _data_lock: data_lock,
        }))
    }
}

/// The executor over the wasm backend and, when a Kubernetes API answered, the image one.
fn open_executor(
    args: &ServeArgs,
    settings: &Settings,
    invoker: Invoker,
    kube: Option<Arc<crate::kube::Kube>>,
    metrics: &Arc<Metrics>,
    accounts: &Accounts,
) -> Executor {
    let mut backends: Vec<Arc<dyn crate::executor::backend::Backend>> = vec![Arc::new(invoker)];
    if let Some(kube) = kube {
        backends.push(Arc::new(crate::executor::image::ImageBackend::new(
            kube,
            settings.default_timeout,
        )));
    }
    let http = crate::executor::http::HttpInvoker::new(
        crate::executor::http::HttpSettings {
            default_timeout: settings.default_timeout,
            default_memory: args.default_memory,
            allow_local: args.allow_local_endpoints,
            max_outbound_response: args.max_body,
            max_log_bytes: usize::try_from(args.max_log).unwrap_or(usize::MAX),
        },
        metrics.clone(),
        accounts.usage.clone(),
    );
    Executor::new(
        backends,
        http,
        ExecutorSettings {
            max_concurrency: args.max_concurrency,
            max_queue: args.max_queue,
            default_memory: args.default_memory,
        },
        metrics.clone(),
        (accounts.usage.clone(), accounts.quotas.clone()),
    )
}

/// The usage accounts: files in the data folder, or the cluster's bucket.
/// What users use and may use: the usage accounts and the quotas.
struct Accounts {
    usage: Arc<crate::usage::Accounting>,
    quotas: Arc<crate::quotas::Quotas>,
}

/// The usage accounts and the quotas (kept as a document of `documents`).
async fn open_accounts(
    args: &ServeArgs,
    data_dir: &Path,
    cluster: Option<&crate::cluster::Cluster>,
    documents: &Arc<dyn crate::documents::DocumentStore>,
) -> Result<Accounts, StartError> {
    let defaults = crate::quotas::Limits {
        cpu: args.quota_cpu,
        memory: args.quota_memory,
        invocations: args.quota_invocations,
    };
    let quotas = crate::quotas::Quotas::open(documents.clone(), defaults)
        .await
        .map_err(store_context("loading the user quotas"))?;
    Ok(Accounts {
        usage: open_usage(args, data_dir, cluster).await?,
        quotas,
    })
}

async fn open_usage(
    args: &ServeArgs,
    data_dir: &Path,
    cluster: Option<&crate::cluster::Cluster>,
) -> Result<Arc<crate::usage::Accounting>, StartError> {
    let retention = std::time::Duration::from_secs(u64::from(args.usage_retention_days) * 86_400);
    let store: Arc<dyn crate::usage::store::UsageStore> = match cluster {
        Some(cluster) => Arc::new(
            crate::cluster::usage::NatsUsage::open(cluster, retention)
                .await
                .map_err(|e| StartError::Config(format!("opening the usage accounts: {e}")))?,
        ),
        None => Arc::new(
            crate::usage::store::LocalUsage::open(data_dir)
                .map_err(io_context("opening the usage accounts"))?,
        ),
    };
    crate::usage::Accounting::open(store, retention)
        .await
        .map_err(store_context("loading the usage accounts"))
}

/// The wasm engine, sized by the flags.
fn open_engine(args: &ServeArgs) -> Result<Arc<WasmEngine>, StartError> {
    WasmEngine::new(&EngineSettings {
        max_instances: u32::try_from(args.max_concurrency).unwrap_or(u32::MAX),
        max_memory: args.max_memory,
        baseline: !args.no_baseline_compiler,
    })
    .map_err(|e| StartError::Engine(format!("{e:#}")))
}

/// The deployer over `parts`, within the limits the flags set.
fn open_deployer(args: &ServeArgs, settings: &Settings, parts: DeployerParts) -> Deployer {
    Deployer::new(
        parts,
        DeployLimits {
            max_memory: args.max_memory,
            max_timeout: settings.max_timeout,
            service_concurrency: settings.service_concurrency,
            allow_local_endpoints: args.allow_local_endpoints,
            default_memory: args.default_memory,
            image_refresh: std::time::Duration::from_secs(args.image_refresh),
        },
    )
}

/// The settings that need checking beyond what the flags' parsers check.
struct Settings {
    default_timeout: std::time::Duration,
    max_timeout: std::time::Duration,
    service_concurrency: usize,
}

impl Settings {
    fn check(args: &ServeArgs) -> Result<Self, StartError> {
        if args.default_memory > args.max_memory {
            return Err(StartError::Config(
                "--default-memory is above --max-memory".into(),
            ));
        }
        Ok(Self {
            default_timeout: args.default_timeout().map_err(StartError::Config)?,
            max_timeout: std::time::Duration::try_from_secs_f64(args.max_timeout)
                .map_err(|e| StartError::Config(format!("--max-timeout: {e}")))?,
            service_concurrency: args
                .max_service_concurrency
                .unwrap_or(args.max_concurrency)
                .max(1),
        })
    }
}

/// The data folder, canonical, and its lock. A new data folder is owner-only: it holds secrets
/// and users' files. An existing one is left as its owner set it; the folders inside are made
/// owner-only by the stores that own them.
fn open_data_dir(data_dir: &Path) -> Result<(PathBuf, std::fs::File), StartError> {
    if !data_dir.exists() {
        crate::fsutil::create_private_dir(data_dir)
            .map_err(io_context(format!("creating {}", data_dir.display())))?;
    }
    let data_dir = data_dir
        .canonicalize()
        .map_err(io_context(format!("resolving {}", data_dir.display())))?;
    let lock = lock_data_dir(&data_dir)?;
    Ok((data_dir, lock))
}

/// The settings PUT /system/config changes, from the documents store.
async fn open_cluster_settings(
    documents: &Arc<dyn crate::documents::DocumentStore>,
) -> Result<Arc<crate::cluster_settings::ClusterSettings>, StartError> {
    Ok(Arc::new(
        crate::cluster_settings::ClusterSettings::open_in(documents.clone())
            .await
            .map_err(store_context("reading the cluster settings"))?,
    ))
}

/// What seals services' secrets: `--secrets-key-file`, else on one machine the data folder's
/// own key (made on first start); a cluster member without a shared key seals nothing.
fn open_sealer(
    args: &ServeArgs,
    data_dir: &Path,
    cluster: bool,
) -> Result<crate::secrets::Sealer, StartError> {
    match &args.secrets_key_file {
        Some(path) => crate::secrets::Sealer::from_file(path).map_err(io_context(format!(
            "reading the secrets key {}",
            path.display()
        ))),
        None if cluster => {
            tracing::warn!(
                "services' secrets are stored unsealed in NATS: give every member the same --secrets-key-file to seal them"
            );
            Ok(crate::secrets::Sealer::none())
        }
        None => crate::secrets::Sealer::load_or_create(&data_dir.join("secrets.key"))
            .map_err(io_context("making the secrets key")),
    }
}

/// The registry with every stored service; a service whose module cannot be loaded stays
/// registered and answers 503.
async fn restore_services(
    store: Box<dyn crate::registry::ServiceStore>,
    sealer: crate::secrets::Sealer,
    modules: &ModuleStore,
    service_concurrency: usize,
) -> Result<Registry, StartError> {
    let (registry, stored) = Registry::with_store(store, sealer)
        .await
        .map_err(store_context("opening the service registry"))?;
    for (service, revision) in stored {
        let runnable = match service.spec.backend.module() {
            Some(digest) => match modules.runnable(digest).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(service = %service.spec.name, error = %e, "service module unavailable");
                    None
                }
            },
            None => None,
        };
        let mut deployed = Deployed::new(service, runnable, service_concurrency);
        deployed.revision = revision;
        registry.restore(deployed);
    }
    Ok(registry)
}

/// The wasm invoker over a freshly prepared scratch root.
fn open_invoker(
    args: &ServeArgs,
    data_dir: &Path,
    settings: &Settings,
    packages: crate::packages::Packages,
    metrics: &Metrics,
) -> Result<Invoker, StartError> {
    let scratch_path = args.scratch_root(data_dir);
    let scratch = ScratchRoot::prepare(scratch_path.clone()).map_err(io_context(format!(
        "preparing scratch folder {}",
        scratch_path.display()
    )))?;
    Ok(Invoker::new(
        scratch,
        InvokerSettings {
            default_timeout: settings.default_timeout,
            default_memory: args.default_memory,
            output_limits: OutputLimits {
                max_files: args.max_output_files,
                max_bytes: args.max_output,
            },
            max_log_bytes: usize::try_from(args.max_log).unwrap_or(usize::MAX),
            apps_root: data_dir.join("apps"),
            allow_local: args.allow_local_endpoints,
            max_outbound_response: args.max_body,
            // Where the embedded store keeps buckets (a mount elsewhere is refused at deploy).
            mount_root: data_dir.join("buckets"),
        },
        packages,
        metrics,
    ))
}

/// The job store and queue, within the retention and pending limits.
async fn open_jobs(
    args: &ServeArgs,
    backend: Box<dyn crate::jobs::store::JobBackend>,
    queue: Box<dyn crate::jobs::queue::JobQueue>,
    metrics: &Arc<Metrics>,
) -> Result<Jobs, StartError> {
    Jobs::with_parts(
        backend,
        queue,
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
    .await
    .map_err(store_context("opening the job store"))
}

/// The storage settings: `minio.default` (the embedded store at `embedded_store`, or the
/// external one), and a clean staging folder beside the scratch folders.
/// Bucket administration on `minio.default` and the records of buckets made through the API.
async fn open_buckets(
    storage: &crate::storage::Storage,
    documents: &Arc<dyn crate::documents::DocumentStore>,
) -> Result<
    (
        crate::storage::buckets::BucketAdmin,
        Arc<crate::storage::bucket_records::BucketRecords>,
    ),
    StartError,
> {
    let admin = crate::storage::buckets::BucketAdmin::new(&storage.default_provider)
        .map_err(StartError::Config)?;
    let records = crate::storage::bucket_records::BucketRecords::open_in(documents.clone())
        .await
        .map_err(store_context("reading the bucket records"))?;
    Ok((admin, Arc::new(records)))
}

/// The external MinIO's users, when its admin API is to be used.
fn open_minio_users(
    args: &ServeArgs,
    storage: &crate::storage::Storage,
) -> Result<Option<Arc<crate::storage::minio_users::MinioUsers>>, StartError> {
    if !args.storage_minio_admin {
        return Ok(None);
    }
    let provider = &storage.default_provider;
    let admin = crate::storage::minio_admin::MinioAdmin::new(
        provider.endpoint.as_deref().unwrap_or_default(),
        &provider.access_key,
        &provider.secret_key,
        &provider.region,
        provider.verify,
    )
    .map_err(|e| StartError::Config(e.to_string()))?;
    Ok(Some(Arc::new(
        crate::storage::minio_users::MinioUsers::new(admin),
    )))
}

/// The OIDC verifier and the users' store keys. Trusting issuers needs an administrator
/// password: without one every request without a token is the administrator's.
async fn open_users(
    args: &ServeArgs,
    documents: &Arc<dyn crate::documents::DocumentStore>,
) -> Result<
    (
        Arc<crate::oidc::Oidc>,
        Arc<crate::storage::store_users::StoreUsers>,
    ),
    StartError,
> {
    let settings = args.oidc_settings();
    settings.check().map_err(StartError::Config)?;
    if !settings.issuers.is_empty() && args.password.as_deref().is_none_or(str::is_empty) {
        return Err(StartError::Config(
            "--oidc-issuer needs --password: without one every request is the administrator's, and users' limits would mean nothing".into(),
        ));
    }
    let oidc = crate::oidc::Oidc::new(settings).map_err(StartError::Config)?;
    let users = crate::storage::store_users::StoreUsers::open_in(documents.clone())
        .await
        .map_err(store_context("reading the store users"))?;
    Ok((Arc::new(oidc), Arc::new(users)))
}

fn open_storage(
    args: &ServeArgs,
    data_dir: &Path,
    embedded_store: Option<std::net::SocketAddr>,
    scratch_root: &Path,
) -> Result<crate::storage::Storage, StartError> {
    let keys = args
        .embedded_store_keys(data_dir)
        .map_err(io_context("reading the embedded store's keys"))?;
    let storage = crate::storage::Storage {
        default_provider: args.default_provider(embedded_store, keys),
        staging: scratch_root.join(".staging"),
        embedded_buckets: embedded_store.map(|_| data_dir.join("buckets")),
        mirrors: std::sync::Arc::new(crate::storage::mount_mirror::Mirrors::new(
            &scratch_root.join(".mounts"),
        )),
    };
    storage.clean_staging();
    Ok(storage)
}

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
