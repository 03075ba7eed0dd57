//! The optional poller, for external stores that cannot send notifications: a service with
//! `poll_interval` (seconds, an oscar-wasm field) has its input folders listed that often, and
//! each new object (or new version of one) enqueues one job.
//!
//! Exactly once, across restarts: what has been seen is kept per service in
//! `DATA_DIR/pollers/<service>.json` (written crash-safely after each round), and an object
//! whose job already exists (the crash window between enqueueing and saving) is not enqueued
//! again. The first round only takes note of what is already there, as a bucket notification
//! would not report objects created before it existed. Inputs on the embedded store are not
//! polled: its uploads trigger jobs directly.

use crate::deployer::Deployer;
use crate::jobs::record::JobRecord;
use crate::jobs::{CreateError, Jobs};
use crate::registry::Registry;
use crate::storage::Storage;
use crate::storage::event::ObjectEvent;
use crate::storage::poller_states::{PollerStates, Seen, load};
use crate::storage::spec::Provider;
use futures::StreamExt;
use object_store::ObjectStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a round of a service's poller failed (it is tried again at the next one).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The provider's client could not be built.
    #[error("{provider}: {source}")]
    Client {
        /// The provider.
        provider: String,
        /// Why.
        source: object_store::Error,
    },
    /// Listing an input folder failed.
    #[error("listing {provider} s3://{bucket}/{folder}: {source}")]
    List {
        /// The provider.
        provider: String,
        /// The bucket.
        bucket: String,
        /// The folder.
        folder: String,
        /// Why.
        source: object_store::Error,
    },
    /// A new object's job could not be stored.
    #[error("storing the job: {0}")]
    Enqueue(#[from] crate::jobs::CreateError),
    /// What the poller has seen could not be saved.
    #[error("saving the poller's state: {0}")]
    Save(#[from] crate::stores::StoreError),
}

/// Where new objects become jobs: the deployer, or a stand-in in tests.
pub trait Submit: Send + Sync + 'static {
    /// Accepts the job of an object found in `service`'s input, whatever the pending limits
    /// (the object is stored: see [`crate::jobs::Admission::Always`]).
    fn submit(
        &self,
        service: &str,
        event: ObjectEvent,
    ) -> impl std::future::Future<Output = Result<JobRecord, CreateError>> + Send;
}

impl Submit for Deployer {
    fn submit(
        &self,
        service: &str,
        event: ObjectEvent,
    ) -> impl std::future::Future<Output = Result<JobRecord, CreateError>> + Send {
        self.submit_stored_object(service, event)
    }
}

/// Opens a provider's bucket: S3 through object_store, or a stand-in in tests.
pub type OpenBucket =
    Arc<dyn Fn(&Provider, &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> + Send + Sync>;

/// A provider's bucket through object_store's S3 client.
pub fn s3_buckets() -> OpenBucket {
    Arc::new(|provider, bucket| {
        crate::storage::objects::bucket(provider, bucket)
            .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
    })
}

/// The pieces the poller uses.
pub struct PollerParts<S> {
    /// The services, with their `poll_interval` and inputs.
    pub registry: Arc<Registry>,
    /// The providers.
    pub storage: Arc<Storage>,
    /// How a provider's bucket is reached.
    pub open_bucket: OpenBucket,
    /// Where new objects become jobs.
    pub submit: Arc<S>,
    /// Where a job already enqueued for an object is found.
    pub jobs: Arc<Jobs>,
    /// Where the pollers keep what they have seen.
    pub states: Arc<dyn PollerStates>,
    /// Whether this server polls now: always alone, only while it holds the cluster's poller
    /// lease in a cluster.
    pub lead: Arc<std::sync::atomic::AtomicBool>,
}

/// How often the pollers look for work that is due.
const TICK: Duration = Duration::from_millis(250);

/// Runs the pollers of every service that asks for one, until `stop` turns true.
pub async fn run<S: Submit>(parts: PollerParts<S>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut next_due: HashMap<String, Instant> = HashMap::new();
    // What each poller has seen, read from disk once per deployment (a new definition, or a
    // service deleted and created again, reads it afresh) instead of every round.
    let mut states: HashMap<String, (u64, Seen)> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if !parts.lead.load(std::sync::atomic::Ordering::Relaxed) {
            // Another server polls; what this one saw is read again when it takes over.
            states.clear();
            continue;
        }
        let app = &parts;
        let now = Instant::now();
        let deployed_now = app.registry.list();
        states.retain(|name, _| deployed_now.iter().any(|d| &d.service.spec.name == name));
        for deployed in deployed_now {
            let spec = &deployed.service.spec;
            let Some(interval) = spec.poll_interval else {
                continue;
            };
            let due = next_due.entry(spec.name.clone()).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + interval;
            let identity = deployed.generation;
            let fresh = states.get(&spec.name).is_none_or(|(id, _)| *id != identity);
            if fresh {
                let seen = load(&*app.states, &spec.name).await;
                states.insert(spec.name.clone(), (identity, seen));
            }
            let Some((_, seen)) = states.get_mut(&spec.name) else {
                continue;
            };
            if let Err(e) = poll_service(app, &spec.name, &spec.storage, seen).await {
                tracing::warn!(service = %spec.name, error = %e, "storage poll failed");
            }
        }
    }
}

async fn poll_service<S: Submit>(
    app: &PollerParts<S>,
    service: &str,
    spec: &crate::storage::spec::StorageSpec,
    seen: &mut Seen,
) -> Result<(), PollError> {
    let mut changed = false;
    for input in &spec.inputs {
        if input.provider == crate::storage::spec::DEFAULT_PROVIDER
            && app.storage.embedded_buckets.is_some()
        {
            continue;
        }
        let Some(provider) = app.storage.provider(spec, &input.provider) else {
            continue;
        };
        changed |= poll_input(app, service, provider, input, seen).await?;
    }
    if !seen.baseline || changed {
        if !seen.baseline {
            tracing::info!(
                service,
                objects = seen.objects.len(),
                "poller: first round, took note of the objects already there"
            );
        }
        seen.baseline = true;
        let bytes = serde_json::to_vec(&*seen)
            .map_err(|e| crate::stores::StoreError::Io(std::io::Error::other(e)))?;
        app.states.save(service, &bytes).await?;
    }
    Ok(())
}

/// New objects whose jobs are stored at once: enough to keep the job store's group commits
/// full (one fsync covers them all), few enough to bound the poller's memory.
const SUBMITS: usize = 64;

/// A new object found by listing: its job's event, its `bucket/key` and its version.
type Found = (ObjectEvent, String, String);

/// Lists one input folder: each new object (or new version) becomes a job, and what the
/// folder no longer holds is forgotten (so that the state tracks the folder, not every object
/// it ever held, and an object deleted and written again is new). Whether `seen` changed.
async fn poll_input<S: Submit>(
    app: &PollerParts<S>,
    service: &str,
    provider: &Provider,
    input: &crate::storage::spec::StoragePath,
    seen: &mut Seen,
) -> Result<bool, PollError> {
    let store = (app.open_bucket)(provider, &input.bucket).map_err(|source| PollError::Client {
        provider: provider.reference.clone(),
        source,
    })?;
    let prefix =
        (!input.folder.is_empty()).then(|| object_store::path::Path::from(input.folder.as_str()));
    let mut listing = store.list(prefix.as_ref());
    let mut changed = false;
    let mut listed = std::collections::HashSet::new();
    let mut found: Vec<Found> = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|source| PollError::List {
            provider: provider.reference.clone(),
            bucket: input.bucket.clone(),
            folder: input.folder.clone(),
            source,
        })?;
        let key = meta.location.to_string();
        let version = meta
            .e_tag
            .clone()
            .unwrap_or_else(|| meta.last_modified.to_rfc3339());
        let id = format!("{}/{key}", input.bucket);
        listed.insert(id.clone());
        if seen.objects.get(&id) == Some(&version) {
            continue;
        }
        changed = true;
        if seen.baseline && !already_queued(app, service, &input.bucket, &key, &version) {
            let mut event = crate::storage::minio_event(&input.bucket, &key);
            event.time = meta.last_modified.to_rfc3339();
            found.push((event, id, version));
            if found.len() == SUBMITS {
                enqueue_all(app, service, &mut found, seen).await?;
            }
        } else {
            seen.objects.insert(id, version);
        }
    }
    enqueue_all(app, service, &mut found, seen).await?;
    let folder = match input.folder.as_str() {
        "" => format!("{}/", input.bucket),
        folder => format!("{}/{}/", input.bucket, folder.trim_end_matches('/')),
    };
    let gone: Vec<String> = seen
        .objects
        .range(folder.clone()..)
        .map(|(id, _)| id)
        .take_while(|id| id.starts_with(&folder))
        .filter(|id| !listed.contains(*id))
        .cloned()
        .collect();
    for id in &gone {
        seen.objects.remove(id);
    }
    Ok(changed || !gone.is_empty())
}

/// Stores the jobs of `found` concurrently and notes each stored one as seen; the first
/// failure is returned once the others are done (the objects it left out are found again
/// next round).
async fn enqueue_all<S: Submit>(
    app: &PollerParts<S>,
    service: &str,
    found: &mut Vec<Found>,
    seen: &mut Seen,
) -> Result<(), PollError> {
    let results: Vec<Result<(String, String), PollError>> = futures::stream::iter(found.drain(..))
        .map(|(event, id, version)| async move {
            enqueue(app, service, event, &version).await?;
            Ok((id, version))
        })
        .buffer_unordered(SUBMITS)
        .collect()
        .await;
    let mut failure = None;
    for result in results {
        match result {
            Ok((id, version)) => {
                seen.objects.insert(id, version);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Whether a job for this version of the object exists (enqueued just before a crash).
fn already_queued<S>(
    app: &PollerParts<S>,
    service: &str,
    bucket: &str,
    key: &str,
    version: &str,
) -> bool {
    app.jobs.store.has_version(service, bucket, key, version)
}

async fn enqueue<S: Submit>(
    app: &PollerParts<S>,
    service: &str,
    mut event: ObjectEvent,
    version: &str,
) -> Result<(), PollError> {
    event.version = Some(version.to_string());
    let record = app.submit.submit(service, event).await?;
    tracing::info!(service = %service, job = %record.name, "new object found by polling: job accepted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// Stores jobs as the deployer would, without a deployer.
    struct Store(Arc<Jobs>);

    impl Submit for Store {
        async fn submit(
            &self,
            service: &str,
            event: ObjectEvent,
        ) -> Result<JobRecord, CreateError> {
            let input = crate::jobs::JobInput::Event(event);
            let always = crate::jobs::Admission::Always;
            self.0.accept_with(service, input, None, always).await
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        bucket: Arc<InMemory>,
        parts: PollerParts<Store>,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::for_tests(dir.path()).await;
        let (registry, _) = Registry::open(dir.path()).await.unwrap();
        let bucket = Arc::new(InMemory::new());
        let opened = bucket.clone();
        let storage = Storage::for_tests(dir.path());
        Setup {
            parts: PollerParts {
                registry: Arc::new(registry),
                storage: Arc::new(storage),
                open_bucket: Arc::new(move |_, _| Ok(opened.clone() as Arc<dyn ObjectStore>)),
                submit: Arc::new(Store(jobs.clone())),
                jobs,
                states: Arc::new(crate::storage::poller_states::LocalPollerStates::new(
                    dir.path(),
                )),
                lead: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            },
            bucket,
            dir,
        }
    }

    fn spec() -> crate::storage::spec::StorageSpec {
        let definition = serde_json::json!({
            "name": "poll", "module": format!("sha256:{}", "ab".repeat(32)), "poll_interval": 1,
            "input": [{"storage_provider": "minio", "path": "inbox/in"}]
        });
        crate::service::Service::from_definition(definition)
            .unwrap()
            .spec
            .storage
    }

    async fn put(bucket: &InMemory, key: &str, bytes: &'static [u8]) {
        bucket
            .put(&object_store::path::Path::from(key), bytes.into())
            .await
            .unwrap();
    }

    fn keys(parts: &PollerParts<Store>) -> Vec<String> {
        let mut keys: Vec<String> = parts
            .jobs
            .store
            .list("poll")
            .into_iter()
            .filter_map(|r| r.trigger.map(|t| t.key))
            .collect();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn each_new_object_or_version_is_one_job_across_restarts() {
        let Setup {
            dir: _dir,
            bucket,
            parts,
        } = setup().await;
        let spec = spec();
        let round = async |seen: &mut Seen| {
            poll_service(&parts, "poll", &spec, seen).await.unwrap();
        };
        put(&bucket, "in/before.txt", b"old").await;
        let mut seen = Seen::default();
        round(&mut seen).await;
        assert!(keys(&parts).is_empty(), "the first round only takes note");

        put(&bucket, "in/after.txt", b"new").await;
        round(&mut seen).await;
        round(&mut seen).await;
        assert_eq!(keys(&parts), ["in/after.txt"]);

        // A restart reads what was seen from disk: nothing is enqueued again.
        let mut seen = load(&*parts.states, "poll").await;
        put(&bucket, "in/third.txt", b"3").await;
        round(&mut seen).await;
        assert_eq!(keys(&parts), ["in/after.txt", "in/third.txt"]);

        // A new version of an object is a new object; a crash between enqueueing and saving
        // does not enqueue it twice.
        put(&bucket, "in/after.txt", b"changed").await;
        let mut unsaved = seen_copy(&seen);
        round(&mut seen).await;
        round(&mut unsaved).await;
        assert_eq!(
            keys(&parts),
            ["in/after.txt", "in/after.txt", "in/third.txt"]
        );
    }

    #[tokio::test]
    async fn a_round_enqueues_every_new_object_and_forgets_deleted_ones() {
        let Setup {
            dir: _dir,
            bucket,
            parts,
        } = setup().await;
        let spec = spec();
        let mut seen = Seen::default();
        put(&bucket, "elsewhere/kept.txt", b"not an input").await;
        poll_service(&parts, "poll", &spec, &mut seen)
            .await
            .unwrap();
        // More new objects than are stored at once.
        let n = SUBMITS * 3 + 5;
        for i in 0..n {
            put(&bucket, &format!("in/f{i:04}.txt"), b"x").await;
        }
        poll_service(&parts, "poll", &spec, &mut seen)
            .await
            .unwrap();
        assert_eq!(keys(&parts).len(), n);
        assert_eq!(seen.objects.len(), n);
        bucket
            .delete(&object_store::path::Path::from("in/f0000.txt"))
            .await
            .unwrap();
        poll_service(&parts, "poll", &spec, &mut seen)
            .await
            .unwrap();
        assert_eq!(seen.objects.len(), n - 1, "a deleted object is forgotten");
        assert!(!seen.objects.contains_key("inbox/in/f0000.txt"));
        assert_eq!(keys(&parts).len(), n, "and nothing enqueued again");
    }

    fn seen_copy(seen: &Seen) -> Seen {
        Seen {
            objects: seen.objects.clone(),
            baseline: seen.baseline,
        }
    }
}
