//! The server's background tasks (the job workers, the storage poller and the embedded S3
//! store), started with the narrow pieces each uses and owned by one handle that stops them at
//! shutdown.

use crate::app::App;
use crate::pipeline::job_worker::{self as worker, WorkerParts};
use crate::pipeline::poller::{self, PollerParts};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stop waits for the tasks (a worker finishing its current job) before it
/// abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running background tasks.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The embedded S3 store, ready to serve on its bound listener.
pub struct EmbeddedStore {
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
    hook: crate::storage::embedded::CreatedHook,
    limits: crate::listener::ConnectionLimits,
}

impl EmbeddedStore {
    /// Opens the store over `app`'s buckets, with its keys, reporting each created object to
    /// the deployer (which turns it into jobs).
    pub fn open(
        app: &App,
        listener: tokio::net::TcpListener,
        limits: crate::listener::ConnectionLimits,
    ) -> Result<Self, crate::app::StartError> {
        let minio = &app.buckets.storage.default_provider;
        let (records, registry) = (
            app.buckets.bucket_records.clone(),
            app.services.registry.clone(),
        );
        let access: crate::storage::embedded::BucketAccess = Arc::new(move |user, bucket| {
            crate::access::bucket_facts(&records, &registry, bucket).open_to(user)
        });
        let (records, registry, quotas) = (
            app.buckets.bucket_records.clone(),
            app.services.registry.clone(),
            app.operations.quotas.clone(),
        );
        let byte_limit: crate::storage::embedded::BucketByteLimit = Arc::new(move |bucket| {
            // Without any limit set, an upload costs no walk over the services.
            if !quotas.any_storage_limit() {
                return None;
            }
            let owner = crate::access::bucket_facts(&records, &registry, bucket)
                .record
                .owner;
            quotas.bucket_limits(&owner).storage_bytes()
        });
        let root = app.operations.data_dir.join("buckets");
        let service = crate::storage::embedded::service(
            &root,
            crate::storage::embedded::StoreAuth {
                access_key: minio.access_key.clone(),
                secret_key: minio.secret_key.clone(),
                users: app.users.store_users.clone(),
                access,
                byte_limit,
                sizes: Arc::new(crate::storage::bucket_sizes::BucketSizes::new(&root)),
            },
        )
        .map_err(|source| crate::app::StartError::Io {
            context: "opening the embedded S3 store".into(),
            source,
        })?;
        let (deployer, registry) = (app.services.deployer.clone(), app.services.registry.clone());
        let hook: crate::storage::embedded::CreatedHook = Arc::new(move |bucket, key| {
            let (deployer, registry) = (deployer.clone(), registry.clone());
            Box::pin(async move {
                crate::pipeline::bucket_events::object_created(&registry, &deployer, bucket, key)
                    .await
            })
        });
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("embedded S3 store (minio.default) serving on http://{addr}");
        }
        Ok(Self {
            listener,
            service,
            hook,
            limits,
        })
    }
}

impl Background {
    /// Starts the job workers and the poller of `app`, and the embedded store when there is
    /// one. Call inside the server's runtime.
    pub fn start(app: &Arc<App>, embedded: Option<EmbeddedStore>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = worker::start(
            Arc::new(WorkerParts {
                jobs: app.jobs.clone(),
                registry: app.services.registry.clone(),
                storage: app.buckets.storage.clone(),
                executor: app.invocations.executor.clone(),
                refresh: Some(app.services.deployer.clone()),
            }),
            stopped.clone(),
        );
        // The poller runs on one server of a cluster at a time: the lease holder's.
        let lead = Arc::new(AtomicBool::new(app.operations.cluster.is_none()));
        if let Some(cluster) = &app.operations.cluster {
            tasks.push(tokio::spawn(crate::cluster::lease::hold(
                cluster.clone(),
                "poller".into(),
                lead.clone(),
                stopped.clone(),
            )));
            tasks.push(tokio::spawn(crate::cluster::members::announce(
                cluster.clone(),
                cluster.members.clone(),
                stopped.clone(),
            )));
        }
        // The usage accounts, saved as they change, and other servers' taken in.
        tasks.push(tokio::spawn(
            app.operations.usage.clone().keep(stopped.clone()),
        ));
        // Other servers' changes to services and job records, when they are shared.
        if let Some(changes) = app.services.registry.follow() {
            let deployer = app.services.deployer.clone();
            tasks.push(tokio::spawn(follow(
                changes,
                stopped.clone(),
                move |change| {
                    let deployer = deployer.clone();
                    async move { deployer.apply_remote(change).await }
                },
            )));
        }
        if let Some(changes) = app.operations.documents.follow() {
            let app = app.clone();
            tasks.push(tokio::spawn(follow(
                changes,
                stopped.clone(),
                move |change| {
                    apply_document(&app, &change);
                    std::future::ready(())
                },
            )));
        }
        {
            let (jobs, mut stopped) = (app.jobs.clone(), stopped.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = jobs.follow() => {}
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
            }));
        }
        tasks.push(tokio::spawn(poller::run(
            PollerParts {
                lead,
                registry: app.services.registry.clone(),
                storage: app.buckets.storage.clone(),
                open_bucket: poller::s3_buckets(),
                submit: app.services.deployer.clone(),
                jobs: app.jobs.clone(),
                states: app.operations.pollers.clone(),
            },
            stopped.clone(),
        )));
        let (deployer, removals_stop) = (app.services.deployer.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            deployer.follow_removals(removals_stop).await
        }));
        if let Some(sync) = app.minio_sync() {
            tasks.push(tokio::spawn(crate::minio_sync::keep_policies(
                sync,
                stopped.clone(),
            )));
        }
        if let Some(store) = embedded {
            let mut stopped = stopped;
            tasks.push(tokio::spawn(crate::storage::embedded::serve(
                store.listener,
                store.service,
                store.hook,
                store.limits,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            )));
        }
        Self { stop, tasks }
    }

    /// Stops the tasks: no new job is started, the poller ends its round; a job still running
    /// after the grace period is abandoned (it runs again at the next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// Applies each of another server's changes with `apply`, one at a time, until the changes end
/// or `stop` turns true.
async fn follow<T, F>(
    mut changes: tokio::sync::mpsc::UnboundedReceiver<T>,
    mut stop: watch::Receiver<bool>,
    mut apply: impl FnMut(T) -> F,
) where
    F: std::future::Future<Output = ()>,
{
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let Some(change) = change else { break };
        apply(change).await;
    }
}

/// Applies another server's change to a state document.
fn apply_document(app: &App, change: &crate::documents::Changed) {
    let (bytes, revision) = (change.bytes.as_slice(), change.revision);
    match change.name.as_str() {
        crate::cluster_settings::DOCUMENT => {
            app.operations.settings.apply(bytes, revision);
        }
        crate::storage::bucket_records::DOCUMENT => {
            app.buckets.bucket_records.apply(bytes, revision);
        }
        crate::quotas::DOCUMENT => {
            app.operations.quotas.apply(bytes, revision);
        }
        crate::storage::store_users::DOCUMENT => {
            app.users.store_users.apply(bytes, revision);
        }
        other => tracing::debug!(document = other, "a document this server does not keep"),
    }
}
