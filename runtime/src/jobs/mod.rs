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

pub mod local;
pub mod queue;
pub mod record;
pub mod store;

use crate::clock::to_ms;
use crate::faas::LogLine;
use crate::metrics::Metrics;
use queue::{Delivery, JobQueue};
use record::{JobRecord, Origin, Status};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
pub use store::CreateError;
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
    pub fn for_tests(dir: &Path) -> Arc<Self> {
        let retention = Retention {
            max_jobs: 100,
            max_bytes: u64::MAX,
            max_failed_runs: 10,
            max_pending: 100,
            max_pending_total: 100,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Arc::new(Self::open(dir, retention, 1, metrics).unwrap())
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
    /// Opens the store in `data_dir` and queues every job that has yet to run.
    pub fn open(
        data_dir: &Path,
        retention: Retention,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let backend = Box::new(local::LocalJobs::open(data_dir)?);
        let queue = Box::new(queue::LocalQueue::default());
        Self::with_parts(backend, queue, retention, workers, metrics)
    }

    /// The jobs kept by `backend` and queued on `queue`.
    pub fn with_parts(
        backend: Box<dyn JobBackend>,
        queue: Box<dyn JobQueue>,
        retention: Retention,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (store, pending) = JobStore::with_backend(backend, retention)?;
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

    /// Accepts a job; it is durable when this returns. Blocking I/O: call off the reactor.
    pub fn submit(&self, service: &str, input: &[u8]) -> Result<JobRecord, CreateError> {
        self.accept(service, Some(input), None)
    }

    /// Accepts a job triggered by a storage event: the object is downloaded when it runs. The
    /// event is on disk (fsynced) and queued before this returns. Blocking I/O.
    pub fn submit_event(
        &self,
        service: &str,
        event: crate::storage::event::ObjectEvent,
    ) -> Result<JobRecord, CreateError> {
        self.accept(service, None, Some(event))
    }

    fn accept(
        &self,
        service: &str,
        input: Option<&[u8]>,
        trigger: Option<crate::storage::event::ObjectEvent>,
    ) -> Result<JobRecord, CreateError> {
        let record = self.store.create(service, Origin::Job, input, trigger)?;
        let queued = self
            .store
            .append_log(
                service,
                &record.name,
                &[(record.created_ms, "Job accepted".into())],
            )
            .and_then(|()| self.queue.push(&record.service, &record.name));
        if let Err(e) = queued {
            // Not queued: not accepted either, so nothing is left that would never run.
            self.store.remove(service, &record.name);
            return Err(e.into());
        }
        self.refresh_gauge();
        Ok(record)
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
            if let store::RecordChange::Removed { service, job } = &change {
                self.cancel(service, job);
            }
            self.store.apply(change);
            self.refresh_gauge();
        }
    }

    /// Runs `f` on the store off the reactor: the one place where the workers' job I/O (file
    /// writes, fsyncs) leaves async code.
    async fn off_reactor<T, E>(
        self: &Arc<Self>,
        f: impl FnOnce(&Jobs) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<std::io::Error> + Send + 'static,
    {
        let jobs = self.clone();
        tokio::task::spawn_blocking(move || f(&jobs))
            .await
            .map_err(|e| E::from(std::io::Error::other(e)))?
    }

    /// Marks a job running, its attempt counted, durably; `false` if it was deleted.
    pub async fn start(self: &Arc<Self>, record: &mut JobRecord) -> std::io::Result<bool> {
        record.status = Status::Running;
        record.started_ms = Some(crate::clock::now_ms());
        record.attempts += 1;
        let saved = record.clone();
        let started = self
            .off_reactor(move |jobs| jobs.store.update(&saved))
            .await?;
        self.refresh_gauge();
        Ok(started)
    }

    /// A job's stored input.
    pub async fn read_input(
        self: &Arc<Self>,
        service: &str,
        job: &str,
    ) -> std::io::Result<Vec<u8>> {
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| jobs.store.read_input(&service, &job))
            .await
    }

    /// A job's record, asking the store's backend when this server has not seen it yet.
    pub async fn record(
        self: &Arc<Self>,
        service: &str,
        job: &str,
    ) -> std::io::Result<Option<JobRecord>> {
        if let Some(record) = self.store.get(service, job) {
            return Ok(Some(record));
        }
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| jobs.store.get_fresh(&service, &job))
            .await
    }

    /// Sets a job that could not start back to Pending, its attempt not counted, with `reason`
    /// in its log; the queue delivers it again.
    pub async fn run_later(
        self: &Arc<Self>,
        mut record: JobRecord,
        reason: String,
    ) -> std::io::Result<()> {
        self.off_reactor(move |jobs| {
            let line = format!("{reason}; it will be tried again");
            jobs.store.append_log(
                &record.service,
                &record.name,
                &[(crate::clock::now_ms(), line)],
            )?;
            record.status = Status::Pending;
            record.started_ms = None;
            record.attempts = record.attempts.saturating_sub(1);
            jobs.store.update(&record)?;
            jobs.refresh_gauge();
            Ok(())
        })
        .await
    }

    /// Sets a job back to Pending (or Failed after too many attempts) after the server that
    /// ran it stopped, as the queue's redelivery says; stored off the reactor.
    pub async fn recover(self: &Arc<Self>, record: JobRecord) -> std::io::Result<JobRecord> {
        self.off_reactor(move |jobs| {
            let mut record = record;
            jobs.store.recover_interrupted(
                &mut record,
                "The server running this job stopped before it finished",
            )?;
            jobs.refresh_gauge();
            Ok(record)
        })
        .await
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

    /// Records how a job ended: its output files (fsynced), its log, then its record, in that
    /// order, so that a record saying Succeeded always has its outputs. A job deleted meanwhile
    /// is left alone.
    pub async fn finish(
        self: &Arc<Self>,
        mut record: JobRecord,
        ending: Ending,
    ) -> std::io::Result<()> {
        self.off_reactor(move |jobs| {
            let (service, job) = (record.service.clone(), record.name.clone());
            let mut lines = ending.lines;
            if let Some(files) = &ending.files {
                match jobs.store.write_outputs(&service, &job, files) {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => lines.push((
                        crate::clock::now_ms(),
                        format!("Output files could not be kept: {e}"),
                    )),
                }
            }
            if jobs.store.get(&service, &job).is_none() {
                return Ok(());
            }
            jobs.store.append_log(&service, &job, &lines)?;
            record.status = ending.status;
            record.outcome = Some(ending.outcome);
            record.finished_ms = Some(crate::clock::now_ms());
            record.bytes = jobs.store.measure(&service, &job);
            jobs.store.update(&record)?;
            jobs.store.enforce_retention(&service);
            jobs.refresh_gauge();
            Ok(())
        })
        .await
    }

    /// A job's log text (see [`JobStore::read_log`]); `None` for an unknown job.
    pub async fn log_text(
        self: &Arc<Self>,
        service: &str,
        job: &str,
        timestamps: bool,
    ) -> std::io::Result<Option<String>> {
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| jobs.store.read_log(&service, &job, timestamps))
            .await
    }

    /// Deletes one job, stopping it if it runs; `false` if there was none.
    pub async fn remove(self: &Arc<Self>, service: &str, job: &str) -> std::io::Result<bool> {
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| Ok(jobs.delete(&service, &job)))
            .await
    }

    /// Deletes a service's succeeded jobs, or all of them; how many went.
    pub async fn remove_all(self: &Arc<Self>, service: &str, all: bool) -> std::io::Result<usize> {
        let service = service.to_string();
        self.off_reactor(move |jobs| Ok(jobs.delete_all(&service, all)))
            .await
    }

    /// A job's kept output files, sorted by path.
    pub async fn output_files(
        self: &Arc<Self>,
        service: &str,
        job: &str,
    ) -> std::io::Result<Vec<crate::faas::OutputFile>> {
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| {
            let mut files = jobs.store.output_files(&service, &job)?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    /// One kept output file; `None` when there is no such regular file (a path that would
    /// leave the job's outputs included).
    pub async fn output_file(
        self: &Arc<Self>,
        service: &str,
        job: &str,
        relative: std::path::PathBuf,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let (service, job) = (service.to_string(), job.to_string());
        self.off_reactor(move |jobs| jobs.store.output_file(&service, &job, &relative))
            .await
    }

    /// Keeps the log of a failed synchronous invocation, off the reactor.
    pub async fn keep_failed_run(
        self: &Arc<Self>,
        service: &str,
        log: Vec<LogLine>,
        output: Vec<u8>,
        outcome: record::Outcome,
        started: u64,
    ) {
        let service = service.to_string();
        let kept = self
            .off_reactor(move |jobs| {
                jobs.record_failed_run(&service, &log, &output, outcome, started);
                Ok::<_, std::io::Error>(())
            })
            .await;
        if let Err(e) = kept {
            tracing::warn!(error = %e, "could not keep the log of a failed invocation");
        }
    }

    /// Accepts a job off the reactor (see [`Jobs::submit`] and [`Jobs::submit_event`]).
    pub async fn accept_async(
        self: &Arc<Self>,
        service: &str,
        input: JobInput,
    ) -> Result<JobRecord, CreateError> {
        let service = service.to_string();
        self.off_reactor(move |jobs| match input {
            JobInput::Body(bytes) => jobs.submit(&service, &bytes),
            JobInput::Event(event) => jobs.submit_event(&service, event),
        })
        .await
    }

    /// Keeps the log of a failed synchronous invocation. Blocking I/O.
    pub fn record_failed_run(
        &self,
        service: &str,
        log: &[LogLine],
        output: &[u8],
        outcome: record::Outcome,
        started: u64,
    ) {
        let result = (|| {
            let mut record = self
                .store
                .create(service, Origin::Run, None, None)
                .map_err(std::io::Error::other)?;
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
            self.store.append_log(service, &record.name, &lines)?;
            record.status = Status::Failed;
            record.started_ms = Some(started);
            record.finished_ms = Some(finished);
            record.attempts = 1;
            record.outcome = Some(outcome);
            record.bytes = self.store.measure(service, &record.name);
            self.store.update(&record)?;
            self.store.enforce_retention(service);
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = result {
            tracing::warn!(service, error = %e, "could not keep the log of a failed invocation");
        }
    }

    /// Deletes one job, stopping it if it runs; `false` if there was none.
    pub fn delete(&self, service: &str, job: &str) -> bool {
        self.cancel(service, job);
        let removed = self.store.remove(service, job).is_some();
        self.refresh_gauge();
        removed
    }

    /// Deletes a service's succeeded jobs, as OSCAR does, or all of them (stopping those that
    /// run).
    pub fn delete_all(&self, service: &str, all: bool) -> usize {
        let doomed: Vec<String> = self
            .store
            .list(service)
            .into_iter()
            .filter(|r| all || r.status == Status::Succeeded)
            .map(|r| r.name)
            .collect();
        doomed
            .iter()
            .filter(|job| self.delete(service, job))
            .count()
    }

    /// Deletes every job of a service that is being deleted.
    pub fn delete_service(&self, service: &str) {
        for record in self.store.list(service) {
            self.cancel(service, &record.name);
        }
        self.store.remove_service(service);
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
