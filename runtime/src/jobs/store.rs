//! The job store: every job's record in an in-memory index that answers listings, admits new
//! jobs within the pending limits and enforces retention, over a [`JobBackend`] that keeps
//! records, inputs, logs and outputs: a folder on one machine ([`super::local`]), or NATS
//! (`crate::cluster::jobs`), where every server of a cluster reads them.

use super::index::Index;
use super::record::{JobRecord, Origin, Status};
use crate::clock::now_ms;
use crate::faas::OutputFile;
use crate::stores::StoreError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Runs a job may start: one more start after this many interrupted ones is not made.
pub const MAX_ATTEMPTS: u32 = 3;

/// How much is kept per service; the oldest finished records go first.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most jobs (records of POST /job) per service.
    pub max_jobs: usize,
    /// Most bytes of jobs per service.
    pub max_bytes: u64,
    /// Most failed synchronous runs kept per service.
    pub max_failed_runs: usize,
    /// Most unfinished jobs (pending or running) per service.
    pub max_pending: usize,
    /// Most unfinished jobs, all services together.
    pub max_pending_total: usize,
}

/// Whether a new job is held to the pending limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Refused past them (POST /job: its client is told to retry).
    Limited,
    /// Always kept: the job of an object already stored in a bucket. From the embedded
    /// store, no one would send it again (its uploader may be this server delivering another
    /// service's outputs, which must never wait on a worker it holds); from a poller, holding
    /// it back would pace a bulk upload at one pending limit per poll interval. The bucket
    /// itself is the backlog either way, as it is for OSCAR.
    Always,
}

/// Why a job cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The service has as many unfinished jobs, or bytes of them, as it may.
    #[error(
        "service {service} has {pending} unfinished jobs holding {bytes} bytes, its limit ({limit} jobs, {max_bytes} bytes); retry when some have finished"
    )]
    ServiceFull {
        /// The service.
        service: String,
        /// Its unfinished jobs.
        pending: usize,
        /// Their bytes on disk.
        bytes: u64,
        /// `--max-pending-jobs`.
        limit: usize,
        /// `--max-job-bytes`.
        max_bytes: u64,
    },
    /// The server has as many unfinished jobs as it may.
    #[error("the server has {0} unfinished jobs, its limit; retry later")]
    ServerFull(usize),
    /// The service does not exist (any more).
    #[error("service {0:?} not found")]
    NoService(String),
    /// The store failed, or is away for now.
    #[error("the job could not be stored: {0}")]
    Store(#[from] StoreError),
}

/// A change another server made to a shared backend's records.
#[derive(Debug, Clone)]
pub enum RecordChange {
    /// A record created or changed.
    Put(Box<JobRecord>),
    /// A job deleted.
    Removed {
        /// Its service.
        service: String,
        /// The job.
        job: String,
    },
}

/// Log lines (`(unix ms, text)`) as stored: `<unix ms> <text>` per line.
pub fn log_text(lines: &[(u64, String)]) -> String {
    let mut text = String::new();
    for (ms, line) in lines {
        for part in line.split('\n') {
            text.push_str(&format!("{ms} {part}\n"));
        }
    }
    text
}

/// The log line of a job whose output files could not be kept.
pub fn outputs_lost(e: &dyn std::fmt::Display) -> (u64, String) {
    (now_ms(), format!("Output files could not be kept: {e}"))
}

/// Where jobs are kept (see [`crate::stores`]). Job and service names are
/// validated before they get here.
#[async_trait::async_trait]
pub trait JobBackend: Send + Sync {
    /// Every stored record.
    async fn load(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// Whether this server is the only one running the backend's jobs, so that a job found
    /// Running at start-up was interrupted by this server's stop.
    fn exclusive(&self) -> bool;
    /// Stores a new job: its input and first `log` text, then its record, durably.
    async fn create(
        &self,
        record: &JobRecord,
        input: Option<&[u8]>,
        log: &str,
    ) -> Result<(), StoreError>;
    /// Saves a changed record.
    async fn save(&self, record: &JobRecord) -> Result<(), StoreError>;
    /// Appends text (whole lines) to the job's log: durable no later than the job's next
    /// record saved.
    async fn append_log(&self, service: &str, job: &str, text: &str) -> Result<(), StoreError>;
    /// The job's log as stored (lines `<unix ms> <text>`); empty when there is none.
    async fn read_log(&self, service: &str, job: &str) -> Result<String, StoreError>;
    /// The job's input.
    async fn read_input(&self, service: &str, job: &str) -> Result<Vec<u8>, StoreError>;
    /// Replaces the job's output files: durable no later than the job's next record saved.
    async fn write_outputs(
        &self,
        service: &str,
        job: &str,
        files: &[OutputFile],
    ) -> Result<(), StoreError>;
    /// The job's output files.
    async fn output_files(&self, service: &str, job: &str) -> Result<Vec<OutputFile>, StoreError>;
    /// One output file by its relative path; `None` when there is no such file.
    async fn output_file(
        &self,
        service: &str,
        job: &str,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes a job and everything kept for it.
    async fn remove(&self, service: &str, job: &str);
    /// Removes every job of a deleted service (`jobs` are the ones the index knows).
    async fn remove_service(&self, service: &str, jobs: &[JobRecord]) {
        for record in jobs {
            self.remove(service, &record.name).await;
        }
    }
    /// Bytes kept for a job.
    async fn measure(&self, service: &str, job: &str) -> u64;
    /// Records how a job ended: `outputs` (replacing an earlier attempt's; a failure to keep
    /// them becomes a line of its log instead), the `log` lines, then `record` with its
    /// `bytes` measured, durably. One step where the backend can take it in one.
    async fn finish(
        &self,
        record: &mut JobRecord,
        outputs: Option<&[OutputFile]>,
        log: &[(u64, String)],
    ) -> Result<(), StoreError> {
        let (service, job) = (record.service.clone(), record.name.clone());
        let mut log = log.to_vec();
        if let Some(files) = outputs
            && let Err(e) = self.write_outputs(&service, &job, files).await
        {
            log.push(outputs_lost(&e));
        }
        self.append_log(&service, &job, &log_text(&log)).await?;
        record.bytes = self.measure(&service, &job).await;
        self.save(record).await
    }
    /// A record as stored now, for one the index may not have seen yet (a shared backend's);
    /// `None` from a backend the index always knows in full.
    async fn fetch(&self, _service: &str, _job: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(None)
    }
    /// Changes other servers make, for a shared backend; `None` otherwise.
    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<RecordChange>> {
        None
    }
}

/// Every job of every service.
pub struct JobStore {
    backend: Box<dyn JobBackend>,
    index: Mutex<Index>,
    retention: Retention,
}

impl JobStore {
    /// Indexes every record of `backend`. On an exclusive backend, jobs that were running when
    /// the server stopped are set back to Pending, with a log line, to be run again. Returns
    /// the store and the pending jobs, oldest first.
    pub async fn with_backend(
        backend: Box<dyn JobBackend>,
        retention: Retention,
    ) -> Result<(Self, Vec<JobRecord>), StoreError> {
        let store = Self {
            backend,
            index: Mutex::default(),
            retention,
        };
        let mut pending = Vec::new();
        for mut record in store.backend.load().await? {
            if record.status == Status::Running && store.backend.exclusive() {
                store
                    .recover_interrupted(
                        &mut record,
                        "The server stopped while this job was running",
                    )
                    .await?;
            }
            if record.status == Status::Pending {
                pending.push(record.clone());
            }
            store.lock().put(record);
        }
        pending.sort_by_key(|r| (r.created_ms, r.name.clone()));
        Ok((store, pending))
    }

    /// A job whose run was interrupted (`why`): set back to Pending, to run again, unless it
    /// has been started [`MAX_ATTEMPTS`] times already (then Failed). The count is stored
    /// before each run starts, so a job whose module brings the process down (a host bug a
    /// module found) ends Failed instead of killing every restart.
    pub async fn recover_interrupted(
        &self,
        record: &mut JobRecord,
        why: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        if record.attempts >= MAX_ATTEMPTS {
            self.append_log(
                &record.service,
                &record.name,
                &[(
                    now,
                    format!("{why}, {} times; it is not run again", record.attempts),
                )],
            )
            .await?;
            record.status = Status::Failed;
            record.finished_ms = Some(now);
            record.outcome = Some(super::record::Outcome::Interrupted);
        } else {
            self.append_log(
                &record.service,
                &record.name,
                &[(now, format!("{why}; it will run again"))],
            )
            .await?;
            record.status = Status::Pending;
            record.started_ms = None;
        }
        self.backend.save(record).await?;
        self.remember(record.clone());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, record: JobRecord) {
        self.lock().put(record);
    }

    /// Applies another server's change to the index.
    pub fn apply(&self, change: RecordChange) {
        match change {
            RecordChange::Put(record) => self.remember(*record),
            RecordChange::Removed { service, job } => {
                self.lock().remove(&service, &job);
            }
        }
    }

    /// Changes other servers make, for a shared backend.
    pub fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<RecordChange>> {
        self.backend.follow()
    }

    /// Accepts a job: its input and record are stored (durably) before this returns.
    ///
    /// A job (origin `job`) is admitted only within the pending limits: it is counted in the
    /// index, under its lock, before its files are written, so concurrent submissions to one
    /// server cannot overshoot.
    pub async fn create(
        &self,
        service: &str,
        origin: Origin,
        input: Option<&[u8]>,
        trigger: Option<crate::storage::event::ObjectEvent>,
        user: Option<String>,
    ) -> Result<JobRecord, CreateError> {
        self.create_with(service, origin, (input, trigger), user, Admission::Limited)
            .await
    }

    /// [`JobStore::create`], admitted as `admission` says.
    pub async fn create_with(
        &self,
        service: &str,
        origin: Origin,
        (input, trigger): (Option<&[u8]>, Option<crate::storage::event::ObjectEvent>),
        user: Option<String>,
        admission: Admission,
    ) -> Result<JobRecord, CreateError> {
        let name = format!("{service}-{}", uuid::Uuid::new_v4());
        let record = JobRecord {
            name,
            service: service.to_string(),
            origin,
            status: Status::Pending,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
            attempts: 0,
            outcome: None,
            // Counted from the start, so that pending inputs count against the byte limit.
            bytes: input.map_or(0, |i| i.len() as u64),
            trigger,
            traceparent: crate::telemetry::current_traceparent(),
            user,
        };
        {
            let mut index = self.lock();
            if origin == Origin::Job && admission == Admission::Limited {
                self.admit(&index, &record)?;
            }
            index.put(record.clone());
        }
        // A job's log starts with its acceptance, written with it (one step, one sync).
        let log = match origin {
            Origin::Job => log_text(&[(record.created_ms, "Job accepted".into())]),
            Origin::Run => String::new(),
        };
        if let Err(e) = self.backend.create(&record, input, &log).await {
            self.lock().remove(service, &record.name);
            self.backend.remove(service, &record.name).await;
            return Err(e.into());
        }
        Ok(record)
    }

    /// Refuses `record` if its service or the server is at its pending limit (from the index's
    /// counts: no walk over the jobs).
    fn admit(&self, index: &Index, record: &JobRecord) -> Result<(), CreateError> {
        if index.unfinished_total() >= self.retention.max_pending_total {
            return Err(CreateError::ServerFull(self.retention.max_pending_total));
        }
        let (pending, bytes) = index
            .service(&record.service)
            .map_or((0, 0), |jobs| jobs.unfinished());
        if pending >= self.retention.max_pending
            || bytes.saturating_add(record.bytes) > self.retention.max_bytes
        {
            return Err(CreateError::ServiceFull {
                service: record.service.clone(),
                pending,
                bytes,
                limit: self.retention.max_pending,
                max_bytes: self.retention.max_bytes,
            });
        }
        Ok(())
    }

    /// Saves a changed record, unless the job was deleted meanwhile (then `false`).
    ///
    /// The index is not locked while the backend works (a shared backend's writes wait on the
    /// network, and request handlers read the index on the async workers); a deletion that
    /// falls between the check and the save is carried out again after it.
    pub async fn update(&self, record: &JobRecord) -> Result<bool, StoreError> {
        if self.get(&record.service, &record.name).is_none() {
            return Ok(false);
        }
        self.backend.save(record).await?;
        Ok(self.saved(record).await)
    }

    /// Puts a record just saved into the index, unless its job was deleted meanwhile: then
    /// its stored files are removed again, and `false`.
    async fn saved(&self, record: &JobRecord) -> bool {
        let gone = {
            let mut index = self.lock();
            let known = index.get(&record.service, &record.name).is_some();
            if known {
                index.put(record.clone());
            }
            !known
        };
        if gone {
            self.backend.remove(&record.service, &record.name).await;
            return false;
        }
        true
    }

    /// Appends lines (`(unix ms, text)`) to the job's log.
    pub async fn append_log(
        &self,
        service: &str,
        job: &str,
        lines: &[(u64, String)],
    ) -> Result<(), StoreError> {
        self.backend
            .append_log(service, job, &log_text(lines))
            .await
    }

    /// Records how a job ended (see [`JobBackend::finish`]); `false` when the job was
    /// deleted meanwhile.
    pub async fn finish(
        &self,
        record: &mut JobRecord,
        outputs: Option<&[OutputFile]>,
        log: &[(u64, String)],
    ) -> Result<bool, StoreError> {
        if self.get(&record.service, &record.name).is_none() {
            return Ok(false);
        }
        self.backend.finish(record, outputs, log).await?;
        Ok(self.saved(record).await)
    }

    /// The job's log text; with `timestamps`, each line starts with its RFC 3339 time.
    pub async fn read_log(
        &self,
        service: &str,
        job: &str,
        timestamps: bool,
    ) -> Result<Option<String>, StoreError> {
        if self.get(service, job).is_none() {
            return Ok(None);
        }
        // A store that cannot be read says so: an empty log would claim the job said nothing.
        let raw = self.backend.read_log(service, job).await?;
        let mut out = String::with_capacity(raw.len());
        for line in raw.lines() {
            let (ms, text) = line.split_once(' ').unwrap_or(("0", line));
            if timestamps {
                out.push_str(&crate::clock::rfc3339_ms(ms.parse().unwrap_or(0)));
                out.push(' ');
            }
            out.push_str(text);
            out.push('\n');
        }
        Ok(Some(out))
    }

    /// The job's input.
    pub async fn read_input(&self, service: &str, job: &str) -> Result<Vec<u8>, StoreError> {
        self.backend.read_input(service, job).await
    }

    /// Writes a job's output files (replacing an earlier attempt's); `false` when the job was
    /// deleted meanwhile.
    pub async fn write_outputs(
        &self,
        service: &str,
        job: &str,
        files: &[OutputFile],
    ) -> Result<bool, StoreError> {
        if self.get(service, job).is_none() {
            return Ok(false);
        }
        self.backend.write_outputs(service, job, files).await?;
        Ok(true)
    }

    /// A job's kept output files; empty for an unknown job.
    pub async fn output_files(
        &self,
        service: &str,
        job: &str,
    ) -> Result<Vec<OutputFile>, StoreError> {
        if self.get(service, job).is_none() {
            return Ok(Vec::new());
        }
        self.backend.output_files(service, job).await
    }

    /// One kept output file; `None` when there is no such file.
    pub async fn output_file(
        &self,
        service: &str,
        job: &str,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if self.get(service, job).is_none() {
            return Ok(None);
        }
        self.backend.output_file(service, job, path).await
    }

    /// One record.
    pub fn get(&self, service: &str, job: &str) -> Option<JobRecord> {
        self.lock().get(service, job).cloned()
    }

    /// One record, asking the backend when the index has not seen it yet (a job another
    /// server accepted a moment ago).
    pub async fn get_fresh(
        &self,
        service: &str,
        job: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        if let Some(record) = self.get(service, job) {
            return Ok(Some(record));
        }
        let fetched = self.backend.fetch(service, job).await?;
        if let Some(record) = &fetched {
            self.remember(record.clone());
        }
        Ok(fetched)
    }

    /// A service's records, oldest first.
    pub fn list(&self, service: &str) -> Vec<JobRecord> {
        self.lock().list(service)
    }

    /// Whether `service` has a job made for this version of `bucket/key` (by the poller).
    pub fn has_version(&self, service: &str, bucket: &str, key: &str, version: &str) -> bool {
        self.lock()
            .service(service)
            .is_some_and(|jobs| jobs.has_version(bucket, key, version))
    }

    /// Jobs (failed synchronous runs not counted) by status, all services together.
    pub fn counts(&self) -> HashMap<Status, usize> {
        self.lock().counts().clone()
    }

    /// Removes a job; `None` if there was none.
    pub async fn remove(&self, service: &str, job: &str) -> Option<JobRecord> {
        let record = self.lock().remove(service, job)?;
        self.backend.remove(service, job).await;
        Some(record)
    }

    /// Removes every job of a deleted service.
    pub async fn remove_service(&self, service: &str) -> Vec<JobRecord> {
        let records = self.lock().remove_service(service);
        self.backend.remove_service(service, &records).await;
        records
    }

    /// Bytes a job keeps.
    pub async fn measure(&self, service: &str, job: &str) -> u64 {
        self.backend.measure(service, job).await
    }

    /// Enforces the retention limits of `service`: removes its oldest finished records.
    pub async fn enforce_retention(&self, service: &str) -> Vec<String> {
        let doomed = self.lock().service(service).map_or_else(Vec::new, |jobs| {
            jobs.over_retention(
                self.retention.max_failed_runs,
                self.retention.max_jobs,
                self.retention.max_bytes,
            )
        });
        for name in &doomed {
            self.remove(service, name).await;
        }
        doomed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in `data_dir/jobs` on the local backend.
    async fn open_store(
        data_dir: &Path,
        retention: Retention,
    ) -> Result<(JobStore, Vec<JobRecord>), StoreError> {
        JobStore::with_backend(
            Box::new(crate::jobs::local::LocalJobs::open(data_dir)?),
            retention,
        )
        .await
    }

    const KEEP: Retention = Retention {
        max_jobs: 3,
        max_bytes: u64::MAX,
        max_failed_runs: 1,
        max_pending: 100,
        max_pending_total: 1000,
    };

    #[tokio::test]
    async fn a_job_interrupted_too_often_ends_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_store(dir.path(), KEEP).await.unwrap();
        let mut job = store
            .create("svc", Origin::Job, Some(b"in"), None, None)
            .await
            .unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            // What the worker writes before each run.
            job.status = Status::Running;
            job.attempts = attempt;
            store.update(&job).await.unwrap();
            drop(store_reopened_pending(dir.path(), &job.name, attempt < MAX_ATTEMPTS).await);
        }
        let (store, pending) = open_store(dir.path(), KEEP).await.unwrap();
        assert!(pending.is_empty());
        let record = store.get("svc", &job.name).unwrap();
        assert_eq!(record.status, Status::Failed);
        assert_eq!(
            record.outcome,
            Some(super::super::record::Outcome::Interrupted)
        );
        assert!(
            store
                .read_log("svc", &job.name, false)
                .await
                .unwrap()
                .unwrap()
                .contains("3 times; it is not run again")
        );
    }

    /// Reopens the store (a restart) and checks whether `job` was queued again.
    async fn store_reopened_pending(dir: &Path, job: &str, expected: bool) -> JobStore {
        let (store, pending) = open_store(dir, KEEP).await.unwrap();
        assert_eq!(pending.iter().any(|r| r.name == job), expected);
        store
    }

    #[tokio::test]
    async fn pending_jobs_are_bounded_per_service_by_count_and_bytes_and_overall() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Retention {
            max_pending: 2,
            max_pending_total: 3,
            max_bytes: 10,
            ..KEEP
        };
        let (store, _) = open_store(dir.path(), limits).await.unwrap();
        store
            .create("a", Origin::Job, Some(b"1"), None, None)
            .await
            .unwrap();
        let mut second = store
            .create("a", Origin::Job, Some(b"2"), None, None)
            .await
            .unwrap();
        assert!(matches!(
            store.create("a", Origin::Job, Some(b"3"), None, None).await,
            Err(CreateError::ServiceFull { pending: 2, .. })
        ));
        // Failed synchronous runs are not jobs: never refused.
        store
            .create("a", Origin::Run, None, None, None)
            .await
            .unwrap();
        assert!(matches!(
            store
                .create("b", Origin::Job, Some(&[0; 11]), None, None)
                .await,
            Err(CreateError::ServiceFull { pending: 0, .. })
        ));
        store
            .create("b", Origin::Job, Some(b"1"), None, None)
            .await
            .unwrap();
        assert!(matches!(
            store.create("c", Origin::Job, None, None, None).await,
            Err(CreateError::ServerFull(3))
        ));
        finish(&store, &mut second).await;
        store
            .create("a", Origin::Job, Some(b"3"), None, None)
            .await
            .unwrap();
        // Refused jobs left nothing on disk.
        let on_disk = std::fs::read_dir(dir.path().join("jobs/a"))
            .unwrap()
            .count();
        assert_eq!(on_disk, 4);
        // The job of an object already stored is kept past every limit.
        store
            .create_with("c", Origin::Job, (None, None), None, Admission::Always)
            .await
            .unwrap();
        assert!(matches!(
            store.create("c", Origin::Job, None, None, None).await,
            Err(CreateError::ServerFull(_))
        ));
    }

    async fn finish(store: &JobStore, record: &mut JobRecord) {
        record.status = Status::Succeeded;
        store.update(record).await.unwrap();
    }

    #[tokio::test]
    async fn running_jobs_are_requeued_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_store(dir.path(), KEEP).await.unwrap();
        let mut running = store
            .create("svc", Origin::Job, Some(b"in"), None, None)
            .await
            .unwrap();
        running.status = Status::Running;
        store.update(&running).await.unwrap();
        let queued = store
            .create("svc", Origin::Job, Some(b"in"), None, None)
            .await
            .unwrap();
        let mut done = store
            .create("svc", Origin::Job, Some(b"in"), None, None)
            .await
            .unwrap();
        finish(&store, &mut done).await;
        drop(store);
        let (store, pending) = open_store(dir.path(), KEEP).await.unwrap();
        let names: Vec<_> = pending.iter().map(|r| r.name.clone()).collect();
        assert!(names.contains(&running.name) && names.contains(&queued.name) && names.len() == 2);
        assert!(
            store
                .read_log("svc", &running.name, false)
                .await
                .unwrap()
                .unwrap()
                .contains("will run again")
        );
        assert_eq!(
            store.get("svc", &done.name).unwrap().status,
            Status::Succeeded
        );
    }

    #[tokio::test]
    async fn retention_removes_the_oldest_finished_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_store(dir.path(), KEEP).await.unwrap();
        let mut names = Vec::new();
        for _ in 0..5 {
            let mut r = store
                .create("svc", Origin::Job, Some(b"x"), None, None)
                .await
                .unwrap();
            finish(&store, &mut r).await;
            names.push(r.name);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let removed = store.enforce_retention("svc").await;
        assert_eq!(removed, names[..2].to_vec());
        assert!(!dir.path().join("jobs/svc").join(&names[0]).exists());
        assert_eq!(store.list("svc").len(), 3);
    }

    #[tokio::test]
    async fn logs_keep_lines_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = open_store(dir.path(), KEEP).await.unwrap();
        // A run: a job's log would start with its acceptance.
        let r = store
            .create("svc", Origin::Run, None, None, None)
            .await
            .unwrap();
        store
            .append_log("svc", &r.name, &[(1_700_000_000_123, "one\ntwo".into())])
            .await
            .unwrap();
        assert_eq!(
            store
                .read_log("svc", &r.name, false)
                .await
                .unwrap()
                .unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(
            store.read_log("svc", &r.name, true).await.unwrap().unwrap(),
            "2023-11-14T22:13:20.123Z one\n2023-11-14T22:13:20.123Z two\n"
        );
        assert!(store.remove("svc", &r.name).await.is_some());
        assert!(
            store
                .read_log("svc", &r.name, false)
                .await
                .unwrap()
                .is_none()
        );
    }
}
