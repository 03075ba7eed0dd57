//! The job workers: each takes the next job from the queue and runs it to completion: marks it
//! running (its attempt counted on disk first), fetches its input (the stored body, or the
//! object its storage event names), runs it through the executor, delivers its outputs, and
//! records how it ended. Workers get the narrow pieces they use ([`WorkerParts`]), so that they
//! can be tested without a server.

use super::Execute;
use crate::clock::now_ms;
use crate::executor::invocation::{Input, Kind, Request};
use crate::jobs::record::{JobRecord, Status};
use crate::jobs::{Ending, Jobs};
use crate::registry::{Deployed, Registry};
use crate::storage::Storage;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// The pieces the workers use.
pub struct WorkerParts<E> {
    /// The queue and the job store.
    pub jobs: Arc<Jobs>,
    /// Where a job's service is looked up when it runs.
    pub registry: Arc<Registry>,
    /// Downloads of storage-triggered jobs' inputs, uploads of outputs.
    pub storage: Arc<Storage>,
    /// Runs the invocations.
    pub executor: Arc<E>,
    /// Checks a wasm image's tag before each job, so a job runs the version the tag names.
    pub refresh: Option<Arc<dyn crate::deployer::Refresh>>,
}

/// Most jobs waiting for their user's quota apart from the workers, per server; past it a
/// worker waits with its job, as before there was parking.
pub const MAX_PARKED: usize = 10_000;

/// Starts the job workers; they stop taking jobs once `stop` turns true.
pub fn start<E: Execute>(
    parts: Arc<WorkerParts<E>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let parked = Arc::new(tokio::sync::Semaphore::new(MAX_PARKED));
    (0..parts.jobs.workers)
        .map(|_| {
            let (parts, parked) = (parts.clone(), parked.clone());
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let next = tokio::select! {
                        next = parts.jobs.next() => next,
                        _ = stop.wait_for(|stop| *stop) => None,
                    };
                    let Some(delivery) = next else { break };
                    take(&parts, delivery, &parked, &stop).await;
                }
            })
        })
        .collect()
}

/// What a worker's turn at a job came to.
enum Turn {
    /// Settled: `true` once its record is final, `false` when it must be delivered again.
    Done(bool),
    /// Its user's running invocations hold their quota: the job waits for room.
    Park {
        /// The job's service.
        deployed: Arc<Deployed>,
        /// Who it is accounted to (empty: the service's owner).
        user: String,
    },
}

/// Runs a delivered job, telling a shared queue that it still runs while it does, and that
/// it is done once its record is final (not when the record could not be stored: then it is
/// delivered again). A job whose user's quota is full waits in a task of its own ("parked",
/// still pending), so that one user's queued jobs never hold the workers every user shares.
async fn take<E: Execute>(
    parts: &Arc<WorkerParts<E>>,
    delivery: crate::jobs::queue::Delivery,
    parked: &Arc<tokio::sync::Semaphore>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let turn = with_progress(
        delivery.acker.as_deref(),
        run(
            parts,
            &delivery.service,
            &delivery.job,
            delivery.redelivered,
            true,
        ),
    )
    .await;
    let (deployed, user) = match turn {
        Turn::Done(settled) => return acked(&delivery, settled).await,
        Turn::Park { deployed, user } => (deployed, user),
    };
    let parts = parts.clone();
    let stop = stop.clone();
    let resume = async move {
        with_progress(
            delivery.acker.as_deref(),
            parts.executor.quota_room(&deployed, &user),
        )
        .await;
        // Stopping: it stays pending, restored at the next start (or redelivered).
        if *stop.borrow() {
            return;
        }
        let turn = with_progress(
            delivery.acker.as_deref(),
            run(
                &parts,
                &delivery.service,
                &delivery.job,
                delivery.redelivered,
                false,
            ),
        )
        .await;
        if let Turn::Done(settled) = turn {
            acked(&delivery, settled).await;
        }
    };
    match parked.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                let _permit = permit;
                resume.await;
            });
        }
        Err(_) => resume.await,
    }
}

/// `work`, telling a shared queue meanwhile that the delivery is still being worked on.
async fn with_progress<T>(
    acker: Option<&dyn crate::jobs::queue::Acker>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let Some(acker) = acker else {
        return work.await;
    };
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(acker.progress_every());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => acker.progress().await,
        }
    }
}

/// Acknowledges a settled delivery to a shared queue.
async fn acked(delivery: &crate::jobs::queue::Delivery, settled: bool) {
    if settled && let Some(acker) = &delivery.acker {
        acker.ack().await;
    }
}

/// Runs one job, if it is still pending, and records its end (waiting for its user's quota
/// where needed).
pub async fn run_job<E: Execute>(parts: &WorkerParts<E>, service: &str, job: &str) {
    run(parts, service, job, false, false).await;
}

/// Runs one job if it is pending, or if it was running on a server that stopped
/// (`redelivered`); `Done(false)` when its state could not be stored, so it must run again.
/// With `may_park`, a job whose user's quota is full is handed back to wait for room.
async fn run<E: Execute>(
    parts: &WorkerParts<E>,
    service: &str,
    job: &str,
    redelivered: bool,
    may_park: bool,
) -> Turn {
    let mut record = match parts.jobs.record(service, job).await {
        Ok(Some(record)) => record,
        // Deleted.
        Ok(None) => return Turn::Done(true),
        Err(e) => {
            tracing::error!(service, job, error = %e, "the job's record could not be read");
            return Turn::Done(false);
        }
    };
    if record.status == Status::Running && redelivered {
        record = match parts.jobs.recover(record).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(service, job, error = %e, "an interrupted job could not be set back to pending");
                return Turn::Done(false);
            }
        };
    }
    if record.status != Status::Pending {
        return Turn::Done(true);
    }
    let mut notes = Vec::new();
    if let Some(refresh) = &parts.refresh {
        match refresh.refresh(service).await {
            Ok(None) => {}
            Ok(Some(line)) => notes.push((now_ms(), line)),
            Err(e) => notes.push((
                now_ms(),
                format!(
                    "The service's image could not be checked ({e}); running the version deployed"
                ),
            )),
        }
    }
    let deployed = match parts.registry.get(service) {
        Some(deployed) => Some(deployed),
        // Another server may have created it a moment ago.
        None => match &parts.refresh {
            Some(refresh) => refresh.catch_up(service).await,
            None => None,
        },
    };
    let ending = match deployed {
        None => Ending::error(notes, format!("Service {service} no longer exists")),
        Some(deployed) => {
            let user = record.user.clone().unwrap_or_default();
            if may_park && !parts.executor.quota_fits(&deployed, &user) {
                return Turn::Park { deployed, user };
            }
            match parts.jobs.start(&mut record).await {
                Ok(true) => {}
                // Deleted meanwhile.
                Ok(false) => return Turn::Done(true),
                Err(e) => {
                    tracing::error!(service, job, error = %e, "the job could not be marked running; it stays pending");
                    return Turn::Done(false);
                }
            }
            match execute(parts, deployed, &record, notes).await {
                Run::Ended(ending) => ending,
                // Deleted while it ran.
                Run::Deleted => return Turn::Done(true),
                Run::Again(reason) => {
                    if let Err(e) = parts.jobs.run_later(record, reason).await {
                        tracing::error!(service, job, error = %e, "the job could not be set back to pending; it runs again after the queue's ack wait");
                    }
                    return Turn::Done(false);
                }
            }
        }
    };
    if let Err(e) = parts.jobs.finish(record, ending).await {
        tracing::error!(service, job, error = %e, "the job's end could not be recorded; it runs again");
        return Turn::Done(false);
    }
    Turn::Done(true)
}

/// How a run went.
enum Run {
    /// To its end (succeeded or failed).
    Ended(Ending),
    /// The job was deleted meanwhile.
    Deleted,
    /// Not run: the job store did not answer in time (a NATS cluster electing a leader); the
    /// job is to run again later.
    Again(String),
}

/// Fetches the input and runs the invocation.
async fn execute<E: Execute>(
    parts: &WorkerParts<E>,
    deployed: Arc<Deployed>,
    record: &JobRecord,
    mut lines: Vec<(u64, String)>,
) -> Run {
    if let Some((image, manifest)) = crate::service::wasm_image(&deployed.service.definition) {
        let module = deployed
            .service
            .spec
            .backend
            .module()
            .map(ToString::to_string);
        lines.push((
            now_ms(),
            format!(
                "Running module {} from {image} ({manifest})",
                module.unwrap_or_default()
            ),
        ));
    }
    let input = match fetch_input(parts, &deployed, record, &mut lines).await {
        Ok(input) => input,
        Err(Fetch::Again(message)) => return Run::Again(message),
        Err(Fetch::Failed(message)) => return Run::Ended(Ending::error(lines, message)),
    };
    let request = Request {
        kind: Kind::Job,
        id: record.name.clone(),
        user: record.user.clone().unwrap_or_default(),
        mount_copy: None,
    };
    // The job's own span, in the trace of the request that accepted it.
    let span = tracing::info_span!("job", service = %record.service, job = %record.name);
    crate::telemetry::continue_from(&span, record.traceparent.as_deref());
    let storage_spec = match &record.trigger {
        Some(event) => deployed.service.spec.storage.for_bucket(&event.bucket),
        None => std::borrow::Cow::Borrowed(&deployed.service.spec.storage),
    };
    let run = super::invoke(
        &*parts.executor,
        &parts.storage,
        deployed.clone(),
        input,
        request,
        &storage_spec,
    )
    .instrument(span);
    let Some(result) = parts
        .jobs
        .cancellable(&record.service, &record.name, run)
        .await
    else {
        return Run::Deleted;
    };
    Run::Ended(match result {
        Err(e) => Ending::error(lines, format!("The job could not run: {e}")),
        Ok(settled) => {
            // The service's log level filters the runtime's lines, as in OSCAR; errors show.
            lines.extend(settled.log_lines(deployed.service.spec.log_level));
            Ending {
                status: if settled.succeeded() {
                    Status::Succeeded
                } else {
                    Status::Failed
                },
                outcome: settled.outcome(),
                lines,
                files: Some(settled.completed.files),
            }
        }
    })
}

/// Why a job's input is missing.
enum Fetch {
    /// For good: the job fails with this message.
    Failed(String),
    /// For now: the job runs again later.
    Again(String),
}

/// The job's input: the object its storage event names (downloaded now, from the provider
/// the service's current definition gives), else the stored body.
async fn fetch_input<E: Execute>(
    parts: &WorkerParts<E>,
    deployed: &Deployed,
    record: &JobRecord,
    lines: &mut Vec<(u64, String)>,
) -> Result<Input, Fetch> {
    let Some(event) = &record.trigger else {
        return parts
            .jobs
            .read_input(&record.service, &record.name)
            .await
            .map(Input::Body)
            .map_err(|e| {
                let message = format!("The job's input could not be read: {e}");
                if e.is_unavailable() {
                    Fetch::Again(message)
                } else {
                    Fetch::Failed(message)
                }
            });
    };
    let provider = parts
        .storage
        .source_for(
            &deployed.service.spec.storage.for_bucket(&event.bucket),
            event,
        )
        .map_err(|e| Fetch::Failed(format!("The job's object cannot be read: {e}")))?
        .clone();
    let (input, size) = parts
        .storage
        .stage(&provider, event)
        .await
        .map_err(|e| Fetch::Failed(format!("Input download failed: {e}")))?;
    lines.push((
        now_ms(),
        format!(
            "Downloaded s3://{}/{} from {} ({size} bytes)",
            event.bucket, event.key, provider.reference
        ),
    ));
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::invocation::{Completed, Exit, InvokeError};
    use crate::faas::OutputFile;
    use crate::jobs::JobInput;
    use std::time::Duration;

    /// Stands in for the executor: succeeds, fails, or waits until told to go on.
    enum Fake {
        Succeed,
        Fail,
        Wait(Arc<tokio::sync::Notify>),
    }

    impl Execute for Fake {
        async fn execute(
            &self,
            _deployed: Arc<Deployed>,
            input: Input,
            _request: Request,
        ) -> Result<Completed, InvokeError> {
            let Input::Body(bytes) = input else {
                return Err(InvokeError::Host("an object input".into()));
            };
            match self {
                Fake::Succeed => Ok(Completed {
                    exit: Exit::Success,
                    files: vec![OutputFile {
                        path: "out/upper.txt".into(),
                        bytes: bytes.to_ascii_uppercase(),
                    }],
                    output: b"module says hi\n".to_vec(),
                    log: Vec::new(),
                    meters: crate::executor::invocation::Meters {
                        wall: Duration::from_millis(1),
                        ..Default::default()
                    },
                }),
                Fake::Fail => Err(InvokeError::Host("the host broke".into())),
                Fake::Wait(go) => {
                    go.notified().await;
                    Err(InvokeError::Host("released".into()))
                }
            }
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        parts: WorkerParts<Fake>,
    }

    async fn setup(fake: Fake) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::for_tests(dir.path()).await;
        let (registry, _) = Registry::open(dir.path()).await.unwrap();
        let service = crate::service::Service::from_definition(serde_json::json!({
            "name": "svc", "module": format!("sha256:{}", "ab".repeat(32))
        }))
        .unwrap();
        registry.restore(Deployed::new(service, None, 1));
        let storage = Storage::for_tests(dir.path());
        Setup {
            parts: WorkerParts {
                jobs,
                registry: Arc::new(registry),
                storage: Arc::new(storage),
                executor: Arc::new(fake),
                refresh: None,
            },
            _dir: dir,
        }
    }

    fn record(parts: &WorkerParts<Fake>, job: &str) -> JobRecord {
        parts.jobs.store.get("svc", job).unwrap()
    }

    async fn log(parts: &WorkerParts<Fake>, job: &str) -> String {
        parts
            .jobs
            .store
            .read_log("svc", job, false)
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_job_runs_and_keeps_its_outputs_and_log() {
        let Setup { parts, _dir } = setup(Fake::Succeed).await;
        let job = parts
            .jobs
            .accept("svc", JobInput::Body(b"hello".to_vec()))
            .await
            .unwrap()
            .name;
        run_job(&parts, "svc", &job).await;
        let done = record(&parts, &job);
        assert_eq!(done.status, Status::Succeeded);
        assert_eq!(done.outcome, Some(crate::protocol::Outcome::Success));
        assert_eq!(done.attempts, 1);
        assert!(done.finished_ms.is_some() && done.bytes > 0);
        let kept = parts
            .jobs
            .output_file("svc", &job, "out/upper.txt".into())
            .await;
        assert_eq!(kept.unwrap().unwrap(), b"HELLO");
        assert!(log(&parts, &job).await.contains("module says hi"));
        // A job that is not pending any more is not run again.
        run_job(&parts, "svc", &job).await;
        assert_eq!(record(&parts, &job).attempts, 1);
    }

    #[tokio::test]
    async fn failures_end_the_job_failed_with_the_reason_in_its_log() {
        let Setup { parts, _dir } = setup(Fake::Fail).await;
        let job = parts
            .jobs
            .accept("svc", JobInput::Body(b"hello".to_vec()))
            .await
            .unwrap()
            .name;
        run_job(&parts, "svc", &job).await;
        let done = record(&parts, &job);
        assert_eq!(
            (done.status, done.outcome),
            (Status::Failed, Some(crate::protocol::Outcome::Error))
        );
        assert!(
            log(&parts, &job)
                .await
                .contains("The job could not run: invocation failed on the host: the host broke")
        );

        // A storage job of a service without inputs: its object is never read.
        let event = crate::storage::minio_event("other", "secret.txt");
        let job = parts
            .jobs
            .accept("svc", JobInput::Event(event))
            .await
            .unwrap()
            .name;
        run_job(&parts, "svc", &job).await;
        assert_eq!(record(&parts, &job).status, Status::Failed);
        assert!(
            log(&parts, &job)
                .await
                .contains("The job's object cannot be read")
        );

        // A job whose service is gone.
        let orphan = parts
            .jobs
            .accept("gone", JobInput::Body(b"x".to_vec()))
            .await
            .unwrap()
            .name;
        run_job(&parts, "gone", &orphan).await;
        let done = parts.jobs.store.get("gone", &orphan).unwrap();
        assert_eq!(done.status, Status::Failed);
        assert!(
            parts
                .jobs
                .store
                .read_log("gone", &orphan, false)
                .await
                .unwrap()
                .unwrap()
                .contains("Service gone no longer exists")
        );
    }

    #[tokio::test]
    async fn a_job_deleted_while_it_runs_is_stopped_and_stays_deleted() {
        let go = Arc::new(tokio::sync::Notify::new());
        let Setup { parts, _dir } = setup(Fake::Wait(go.clone())).await;
        let parts = Arc::new(parts);
        let job = parts
            .jobs
            .accept("svc", JobInput::Body(b"hello".to_vec()))
            .await
            .unwrap()
            .name;
        let running = {
            let (parts, job) = (parts.clone(), job.clone());
            tokio::spawn(async move { run_job(&parts, "svc", &job).await })
        };
        while parts.jobs.store.get("svc", &job).map(|r| r.status) != Some(Status::Running) {
            tokio::task::yield_now().await;
        }
        assert!(parts.jobs.remove("svc", &job).await);
        running.await.unwrap();
        assert!(parts.jobs.store.get("svc", &job).is_none());
        assert!(!_dir.path().join("jobs/svc").join(&job).exists());
    }
}
