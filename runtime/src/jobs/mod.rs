//! Asynchronous jobs (POST /job): accepted onto a persisted queue, run by a bounded pool of
//! workers, their logs and output files kept for GET /system/logs and /system/outputs.
//!
//! Durability: a job is on disk (input and record, fsynced) before POST /job answers 201, so a
//! crash (`kill -9` included) loses no accepted job. At start-up, jobs still Pending are queued
//! again, and jobs that were Running are set back to Pending with a log line and run again
//! (modules are expected to be re-runnable, as Kubernetes re-runs a Job's pod after a node
//! failure).
//!
//! Failed synchronous invocations are kept here too (origin `run`, a bounded number per
//! service), so that their logs can be read through the same API.

mod frames;
mod index;
mod legacy_folders;
pub mod local;
pub mod queue;
pub mod record;
pub mod store;

use crate::clock::to_ms;
use crate::faas::LogLine;
use crate::metrics::Metrics;
use crate::stores::StoreError;
use queue::{Delivery, JobQueue};
use record::{JobRecord, Origin, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
pub use store::{Admission, CreateError};
use store::{JobBackend, JobStore, Retention};
use tokio::sync::Notify;

type Key = (String, String);

/// What a new job runs on.
#[derive(Debug)]
pub enum JobInput {
    /// The decoded request body, kept as the job's input file.
    Body(Vec<u8>),
    /// The object a storage event names, downloaded when the job runs.
    Event(crate::storage::event::ObjectEvent),
}

/// How a job ended, as a worker records it.
#[derive(Debug)]
pub struct Ending {
    /// Succeeded or Failed.
    pub status: Status,
    /// How it ended.
    pub outcome: record::Outcome,
    /// Lines for its log, `(unix ms, text)`.
    pub lines: Vec<(u64, String)>,
    /// Its output files, kept for /system/outputs; `None` when it did not run.
    pub files: Option<Vec<crate::faas::OutputFile>>,
}

impl Ending {
    /// A job that could not run: `lines`, then `message`.
    pub fn error(mut lines: Vec<(u64, String)>, message: String) -> Self {
        lines.push((crate::clock::now_ms(), message));
        Self {
            status: Status::Failed,
            outcome: record::Outcome::Error,
            lines,
            files: None,
        }
    }
}

#[cfg(test)]
impl Jobs {
    /// A job store in `dir` for unit tests: one worker, room for 100 pending jobs.
    pub async fn for_tests(dir: &std::path::Path) -> Arc<Self> {
        let retention = Retention {
            max_jobs: 100,
            max_bytes: u64::MAX,
            max_failed_runs: 10,
            max_pending: 100,
            max_pending_total: 100,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Arc::new(Self::open(dir, retention, 1, metrics).await.unwrap())
    }
}

/// The job queue, its workers' shared state, and the job store.
pub struct Jobs {
    /// Records, logs and outputs.
    pub store: JobStore,
    queue: Box<dyn JobQueue>,
    /// Cancellation handles of running jobs.
    running: Mutex<HashMap<Key, Arc<Notify>>>,
    /// How many workers run jobs.
    pub workers: usize,
    metrics: Arc<Metrics>,
}

impl Jobs {
    #[cfg(test)]
    /// Opens the store in `data_dir` and queues every job that has yet to run.
    pub async fn open(
        data_dir: &std::path::Path,
        retention: Retention,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let backend = Box::new(local::LocalJobs::open(data_dir)?);
        let queue = Box::new(queue::LocalQueue::default());
        Self::with_parts(backend, queue, retention, workers, metrics).await
    }

    /// The jobs kept by `backend` and queued on `queue`.
    pub async fn with_parts(
        backend: Box<dyn JobBackend>,
        queue: Box<dyn JobQueue>,
        retention: Retention,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let (store, pending) = JobStore::with_backend(backend, retention).await?;
        queue.restore(&pending);
        let jobs = Self {
            store,
            queue,
            running: Mutex::default(),
            workers: workers.max(1),
            metrics,
        };
        jobs.refresh_gauge();
        Ok(jobs)
    }

    fn refresh_gauge(&self) {
        let counts = self.store.counts();
        for status in [
            Status::Pending,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
        ] {
            let count = counts.get(&status).copied().unwrap_or(0) as i64;
            if status == Status::Pending {
                self.metrics.jobs_pending.set(count);
            }
            self.metrics
                .jobs
                .with_label_values(&[status.name()])
                .set(count);
        }
    }

    /// Accepts a job: its body, or the storage event whose object is downloaded when it
    /// runs. It is stored (fsynced, or replicated) and queued before this returns.
    pub async fn accept(&self, service: &str, input: JobInput) -> Result<JobRecord, CreateError> {
        self.accept_for(service, input, None).await
    }

    /// [`Jobs::accept`], the job's run accounted to `user` (an OIDC subject) rather than the
    /// service's owner.
    pub async fn accept_for(
        &self,
        service: &str,
        input: JobInput,
        user: Option<String>,
    ) -> Result<JobRecord, CreateError> {
        self.accept_with(service, input, user, Admission::Limited)
            .await
    }

    /// [`Jobs::accept_for`], admitted as `admission` says.
    pub async fn accept_with(
        &self,
        service: &str,
        input: JobInput,
        user: Option<String>,
        admission: Admission,
    ) -> Result<JobRecord, CreateError> {
        let (body, trigger) = match input {
            JobInput::Body(bytes) => (Some(bytes), None),
            JobInput::Event(event) => (None, Some(event)),
        };
        let record = self
            .store
            .create_with(
                service,
                Origin::Job,
                (body.as_deref(), trigger),
                user,
                admission,
            )
            .await?;
        if let Err(e) = self.queue_new(&record).await {
            // Not queued: not accepted either, so nothing is left that would never run.
            self.store.remove(service, &record.name).await;
            return Err(e.into());
        }
        self.refresh_gauge();
        Ok(record)
    }

    async fn queue_new(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.queue.push(&record.service, &record.name).await
    }

    /// The next job to run; `None` once the queue is closed.
    pub async fn next(&self) -> Option<Delivery> {
        self.queue.next().await
    }

    /// Applies other servers' changes to the job records (a shared store's), stopping the jobs
    /// running here that another server deleted. Runs until the changes end.
    pub async fn follow(self: Arc<Self>) {
        let Some(mut changes) = self.store.follow() else {
            return;
        };
        while let Some(change) = changes.recv().await {
            let removed = match &change {
                store::RecordChange::Removed { service, job } => {
                    Some((service.clone(), job.clone()))
                }
                store::RecordChange::Put(_) => None,
            };
            // The record first, then the stop (see `remove`).
            self.store.apply(change);
            if let Some((service, job)) = removed {
                self.cancel(&service, &job);
            }
            self.refresh_gauge();
        }
    }

    /// Marks a job running, its attempt counted, durably; `false` if it was deleted.
    pub async fn start(&self, record: &mut JobRecord) -> Result<bool, StoreError> {
        record.status = Status::Running;
        record.started_ms = Some(crate::clock::now_ms());
        record.attempts += 1;
        let started = self.store.update(record).await?;
        self.refresh_gauge();
        Ok(started)
    }

    /// A job's stored input.
    pub async fn read_input(&self, service: &str, job: &str) -> Result<Vec<u8>, StoreError> {
        self.store.read_input(service, job).await
    }

    /// A job's record, asking the store's backend when this server has not seen it yet.
    pub async fn record(&self, service: &str, job: &str) -> Result<Option<JobRecord>, StoreError> {
        self.store.get_fresh(service, job).await
    }

    /// Sets a job that could not start back to Pending, its attempt not counted, with `reason`
    /// in its log; the queue delivers it again.
    pub async fn run_later(&self, mut record: JobRecord, reason: String) -> Result<(), StoreError> {
        let line = format!("{reason}; it will be tried again");
        self.store
            .append_log(
                &record.service,
                &record.name,
                &[(crate::clock::now_ms(), line)],
            )
            .await?;
        record.status = Status::Pending;
        record.started_ms = None;
        record.attempts = record.attempts.saturating_sub(1);
        self.store.update(&record).await?;
        self.refresh_gauge();
        Ok(())
    }

    /// Sets a job back to Pending (or Failed after too many attempts) after the server that
    /// ran it stopped, as the queue's redelivery says.
    pub async fn recover(&self, mut record: JobRecord) -> Result<JobRecord, StoreError> {
        self.store
            .recover_interrupted(
                &mut record,
                "The server running this job stopped before it finished",
            )
            .await?;
        self.refresh_gauge();
        Ok(record)
    }

    /// Runs `run` for a job, unless the job is deleted first: `None` then (dropping `run`
    /// stops the invocation).
    pub async fn cancellable<T>(
        &self,
        service: &str,
        job: &str,
        run: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let key = (service.to_string(), job.to_string());
        let cancel = Arc::new(Notify::new());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), cancel.clone());
        // Deleted before it could be stopped (a deletion removes the record, then stops what
        // runs): it does not start.
        if self.store.get(service, job).is_none() {
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return None;
        }
        let result = tokio::select! {
            result = run => Some(result),
            () = cancel.notified() => None,
        };
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        result
    }

    /// Records how a job ended: its output files, its log, then its record, in that order
    /// and in one step of the store, so that a record saying Succeeded always has its
    /// outputs. A job deleted meanwhile is left alone.
    pub async fn finish(&self, mut record: JobRecord, ending: Ending) -> Result<(), StoreError> {
        record.status = ending.status;
        record.outcome = Some(ending.outcome);
        record.finished_ms = Some(crate::clock::now_ms());
        let kept = self
            .store
            .finish(&mut record, ending.files.as_deref(), &ending.lines)
            .await?;
        if kept {
            self.store.enforce_retention(&record.service).await;
            self.refresh_gauge();
        }
        Ok(())
    }

    /// A job's log text (see [`JobStore::read_log`]); `None` for an unknown job.
    pub async fn log_text(
        &self,
        service: &str,
        job: &str,
        timestamps: bool,
    ) -> Result<Option<String>, StoreError> {
        self.store.read_log(service, job, timestamps).await
    }

    /// A job's kept output files, sorted by path.
    pub async fn output_files(
        &self,
        service: &str,
        job: &str,
    ) -> Result<Vec<crate::faas::OutputFile>, StoreError> {
        let mut files = self.store.output_files(service, job).await?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// One kept output file; `None` when there is no such regular file (a path that would
    /// leave the job's outputs included).
    pub async fn output_file(
        &self,
        service: &str,
        job: &str,
        relative: std::path::PathBuf,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.output_file(service, job, &relative).await
    }

    /// Keeps the log of a failed synchronous invocation, for GET /system/logs; a failure to
    /// keep it is only logged.
    pub async fn keep_failed_run(
        &self,
        service: &str,
        log: Vec<LogLine>,
        output: Vec<u8>,
        outcome: record::Outcome,
        started: u64,
    ) {
        if let Err(e) = self
            .record_failed_run(service, &log, &output, outcome, started)
            .await
        {
            tracing::warn!(service, error = %e, "could not keep the log of a failed invocation");
        }
    }

    async fn record_failed_run(
        &self,
        service: &str,
        log: &[LogLine],
        output: &[u8],
        outcome: record::Outcome,
        started: u64,
    ) -> Result<(), CreateError> {
        let mut record = self
            .store
            .create(service, Origin::Run, None, None, None)
            .await?;
        let mut lines: Vec<(u64, String)> =
            log.iter().map(|l| (to_ms(l.time), l.format())).collect();
        let finished = crate::clock::now_ms();
        if !output.is_empty() {
            lines.push((
                finished,
                String::from_utf8_lossy(output)
                    .trim_end_matches('\n')
                    .to_string(),
            ));
        }
        self.store.append_log(service, &record.name, &lines).await?;
        record.status = Status::Failed;
        record.started_ms = Some(started);
        record.finished_ms = Some(finished);
        record.attempts = 1;
        record.outcome = Some(outcome);
        record.bytes = self.store.measure(service, &record.name).await;
        self.store.update(&record).await?;
        self.store.enforce_retention(service).await;
        Ok(())
    }

    /// Deletes one job, stopping it if it runs; `false` if there was none.
    pub async fn remove(&self, service: &str, job: &str) -> bool {
        // The record first, then the stop: a run that starts in between sees it gone.
        let removed = self.store.remove(service, job).await.is_some();
        self.cancel(service, job);
        self.refresh_gauge();
        removed
    }

    /// Deletes a service's succeeded jobs, as OSCAR does, or all of them (stopping those that
    /// run); how many went.
    pub async fn remove_all(&self, service: &str, all: bool) -> usize {
        let doomed: Vec<String> = self
            .store
            .list(service)
            .into_iter()
            .filter(|r| all || r.status == Status::Succeeded)
            .map(|r| r.name)
            .collect();
        let mut removed = 0;
        for job in &doomed {
            if self.remove(service, job).await {
                removed += 1;
            }
        }
        removed
    }

    /// Deletes every job of a service that is being deleted.
    pub async fn remove_service(&self, service: &str) {
        let removed = self.store.remove_service(service).await;
        for record in removed {
            self.cancel(service, &record.name);
        }
        self.refresh_gauge();
    }

    fn cancel(&self, service: &str, job: &str) {
        let key = (service.to_string(), job.to_string());
        if let Some(notify) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            notify.notify_one();
        }
    }
}
