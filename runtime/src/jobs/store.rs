//! Jobs on disk, one folder each: `jobs/<service>/<job>/` holding `job.json` (the record,
//! written atomically), `input` (the decoded input, fsynced before the job is accepted),
//! `log.txt` (lines `<unix ms> <text>`) and `outputs/` (the module's output files).
//! An in-memory index answers listings without touching the disk.

use super::record::{JobRecord, Origin, Status, now_ms};
use crate::faas::OutputFile;
use crate::fsutil;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
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
    /// The disk failed.
    #[error("the job could not be stored: {0}")]
    Io(#[from] io::Error),
}

/// Every job of every service.
pub struct JobStore {
    root: PathBuf,
    index: Mutex<HashMap<String, BTreeMap<String, JobRecord>>>,
    retention: Retention,
}

impl JobStore {
    /// Opens (creating) `data_dir/jobs` and indexes every record. Jobs that were running when
    /// the server stopped are set back to Pending, with a log line, to be run again.
    /// Returns the store and the jobs to queue, oldest first.
    pub fn open(data_dir: &Path, retention: Retention) -> io::Result<(Self, Vec<JobRecord>)> {
        let root = data_dir.join("jobs");
        // Owner-only: job folders hold users' inputs, outputs and logs.
        fsutil::create_private_dir(&root)?;
        let store = Self {
            root,
            index: Mutex::default(),
            retention,
        };
        let mut pending = Vec::new();
        for service in std::fs::read_dir(&store.root)? {
            let service = service?;
            if !service.file_type()?.is_dir() {
                continue;
            }
            for job in std::fs::read_dir(service.path())? {
                let job_dir = job?.path();
                let record: JobRecord = match std::fs::read(job_dir.join("job.json"))
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(r) => r,
                    Err(reason) => {
                        // A job folder without a complete record was never accepted.
                        tracing::warn!(dir = %job_dir.display(), %reason, "removing an incomplete job folder");
                        let _ = std::fs::remove_dir_all(&job_dir);
                        continue;
                    }
                };
                let mut record = record;
                if record.status == Status::Running {
                    store.recover_interrupted(&mut record)?;
                }
                if record.status == Status::Pending {
                    pending.push(record.clone());
                }
                store
                    .lock()
                    .entry(record.service.clone())
                    .or_default()
                    .insert(record.name.clone(), record);
            }
        }
        pending.sort_by_key(|r| (r.created_ms, r.name.clone()));
        Ok((store, pending))
    }

    /// A job that was running when the server stopped: run again, unless it has been started
    /// [`MAX_ATTEMPTS`] times already. The count is on disk before each run starts, so a job
    /// whose module brings the process down (a host bug a module found) ends Failed instead of
    /// killing every restart.
    fn recover_interrupted(&self, record: &mut JobRecord) -> io::Result<()> {
        let now = now_ms();
        if record.attempts >= MAX_ATTEMPTS {
            self.append_log(
                &record.service,
                &record.name,
                &[(
                    now,
                    format!(
                        "The server stopped while this job was running, {} times; it is not run again",
                        record.attempts
                    ),
                )],
            )?;
            record.status = Status::Failed;
            record.finished_ms = Some(now);
            record.outcome = Some(super::record::Outcome::Interrupted);
        } else {
            self.append_log(
                &record.service,
                &record.name,
                &[(
                    now,
                    "The server stopped while this job was running; it will run again".into(),
                )],
            )?;
            record.status = Status::Pending;
            record.started_ms = None;
        }
        self.persist(record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, JobRecord>>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's folder. Names are validated before they get here.
    pub fn dir(&self, service: &str, job: &str) -> PathBuf {
        self.root.join(service).join(job)
    }

    /// The input file of a job.
    pub fn input_path(&self, service: &str, job: &str) -> PathBuf {
        self.dir(service, job).join("input")
    }

    /// The output folder of a job.
    pub fn outputs_dir(&self, service: &str, job: &str) -> PathBuf {
        self.dir(service, job).join("outputs")
    }

    fn persist(&self, record: &JobRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        fsutil::atomic_write(
            &self.dir(&record.service, &record.name).join("job.json"),
            &bytes,
        )
    }

    /// Accepts a job: its input and record are on disk (fsynced) before this returns.
    ///
    /// A job (origin `job`) is admitted only within the pending limits: it is counted in the
    /// index, under its lock, before its files are written, so concurrent submissions cannot
    /// overshoot.
    pub fn create(
        &self,
        service: &str,
        origin: Origin,
        input: Option<&[u8]>,
        trigger: Option<crate::storage::event::ObjectEvent>,
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
        };
        {
            let mut index = self.lock();
            if origin == Origin::Job {
                self.admit(&index, &record)?;
            }
            index
                .entry(service.to_string())
                .or_default()
                .insert(record.name.clone(), record.clone());
        }
        let written = self.write_new(&record, input);
        if let Err(e) = written {
            if let Some(jobs) = self.lock().get_mut(service) {
                jobs.remove(&record.name);
            }
            let _ = std::fs::remove_dir_all(self.dir(service, &record.name));
            return Err(e.into());
        }
        Ok(record)
    }

    /// Refuses `record` if its service or the server is at its pending limit.
    fn admit(
        &self,
        index: &HashMap<String, BTreeMap<String, JobRecord>>,
        record: &JobRecord,
    ) -> Result<(), CreateError> {
        let unfinished = |r: &&JobRecord| r.origin == Origin::Job && !r.status.is_finished();
        let total = index
            .values()
            .flat_map(|j| j.values())
            .filter(unfinished)
            .count();
        if total >= self.retention.max_pending_total {
            return Err(CreateError::ServerFull(self.retention.max_pending_total));
        }
        let own: Vec<&JobRecord> = index
            .get(&record.service)
            .map(|j| j.values().filter(unfinished).collect())
            .unwrap_or_default();
        let bytes: u64 = own.iter().map(|r| r.bytes).sum();
        if own.len() >= self.retention.max_pending
            || bytes.saturating_add(record.bytes) > self.retention.max_bytes
        {
            return Err(CreateError::ServiceFull {
                service: record.service.clone(),
                pending: own.len(),
                bytes,
                limit: self.retention.max_pending,
                max_bytes: self.retention.max_bytes,
            });
        }
        Ok(())
    }

    fn write_new(&self, record: &JobRecord, input: Option<&[u8]>) -> io::Result<()> {
        let dir = self.dir(&record.service, &record.name);
        fsutil::create_private_dir(&self.root.join(&record.service))?;
        std::fs::create_dir(&dir)?;
        if let Some(input) = input {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(dir.join("input"))?;
            file.write_all(input)?;
            file.sync_all()?;
        }
        self.persist(record)?;
        fsutil::sync_dir(&self.root.join(&record.service))
    }

    /// Saves a changed record, unless the job was deleted meanwhile (then `false`).
    pub fn update(&self, record: &JobRecord) -> io::Result<bool> {
        let mut index = self.lock();
        let Some(slot) = index
            .get_mut(&record.service)
            .and_then(|jobs| jobs.get_mut(&record.name))
        else {
            return Ok(false);
        };
        self.persist(record)?;
        *slot = record.clone();
        Ok(true)
    }

    /// Appends lines (`(unix ms, text)`) to the job's log.
    pub fn append_log(&self, service: &str, job: &str, lines: &[(u64, String)]) -> io::Result<()> {
        let mut text = String::new();
        for (ms, line) in lines {
            for part in line.split('\n') {
                text.push_str(&format!("{ms} {part}\n"));
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(self.dir(service, job).join("log.txt"))?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }

    /// The job's log text; with `timestamps`, each line starts with its RFC 3339 time.
    pub fn read_log(&self, service: &str, job: &str, timestamps: bool) -> Option<String> {
        self.get(service, job)?;
        let raw =
            std::fs::read_to_string(self.dir(service, job).join("log.txt")).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        for line in raw.lines() {
            let (ms, text) = line.split_once(' ').unwrap_or(("0", line));
            if timestamps {
                out.push_str(&super::record::rfc3339_ms(ms.parse().unwrap_or(0)));
                out.push(' ');
            }
            out.push_str(text);
            out.push('\n');
        }
        Some(out)
    }

    /// Writes a job's output files; `false` when the job was deleted meanwhile.
    pub fn write_outputs(
        &self,
        service: &str,
        job: &str,
        files: &[OutputFile],
    ) -> io::Result<bool> {
        let dir = self.outputs_dir(service, job);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A previous attempt's outputs: replaced by this attempt's.
                std::fs::remove_dir_all(&dir)?;
                std::fs::create_dir(&dir)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut folders = std::collections::BTreeSet::new();
        for file in files {
            // Paths come from our own walk of the output folder: relative, no `..`.
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
                folders.insert(parent.to_path_buf());
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&path)?;
            out.write_all(&file.bytes)?;
            // Durable before the job is marked Succeeded.
            out.sync_all()?;
        }
        // The new names too: deepest folders first, then the job's folder that holds them.
        for folder in folders.iter().rev() {
            fsutil::sync_dir(folder)?;
        }
        fsutil::sync_dir(&self.dir(service, job))?;
        Ok(true)
    }

    /// One record.
    pub fn get(&self, service: &str, job: &str) -> Option<JobRecord> {
        self.lock().get(service)?.get(job).cloned()
    }

    /// A service's records, oldest first.
    pub fn list(&self, service: &str) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self
            .lock()
            .get(service)
            .map(|j| j.values().cloned().collect())
            .unwrap_or_default();
        jobs.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        jobs
    }

    /// Jobs not yet started, all services together.
    pub fn pending_count(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|j| j.values())
            .filter(|r| r.status == Status::Pending)
            .count()
    }

    /// Removes a job from the index and the disk; `None` if there was none.
    pub fn remove(&self, service: &str, job: &str) -> Option<JobRecord> {
        let record = self.lock().get_mut(service)?.remove(job)?;
        remove_dir_retrying(&self.dir(service, job));
        Some(record)
    }

    /// Removes every job of a deleted service.
    pub fn remove_service(&self, service: &str) -> Vec<JobRecord> {
        let records: Vec<JobRecord> = self
            .lock()
            .remove(service)
            .map(|j| j.into_values().collect())
            .unwrap_or_default();
        remove_dir_retrying(&self.root.join(service));
        records
    }

    /// Bytes a finished job keeps on disk.
    pub fn measure(&self, service: &str, job: &str) -> u64 {
        fn size(path: &Path) -> u64 {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => std::fs::read_dir(path)
                    .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                    .unwrap_or(0),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        }
        size(&self.dir(service, job))
    }

    /// Enforces the retention limits of `service`: removes its oldest finished records.
    pub fn enforce_retention(&self, service: &str) -> Vec<String> {
        let jobs = self.list(service);
        let mut doomed = Vec::new();
        let finished = |origin| {
            jobs.iter()
                .filter(move |r| r.origin == origin && r.status.is_finished())
        };

        let runs: Vec<&JobRecord> = finished(Origin::Run).collect();
        let excess_runs = runs.len().saturating_sub(self.retention.max_failed_runs);
        doomed.extend(runs.iter().take(excess_runs).map(|r| r.name.clone()));

        let all_jobs = jobs.iter().filter(|r| r.origin == Origin::Job).count();
        let mut excess_jobs = all_jobs.saturating_sub(self.retention.max_jobs);
        let mut bytes: u64 = jobs
            .iter()
            .filter(|r| r.origin == Origin::Job)
            .map(|r| r.bytes)
            .sum();
        for record in finished(Origin::Job) {
            if excess_jobs == 0 && bytes <= self.retention.max_bytes {
                break;
            }
            excess_jobs = excess_jobs.saturating_sub(1);
            bytes = bytes.saturating_sub(record.bytes);
            doomed.push(record.name.clone());
        }
        for name in &doomed {
            self.remove(service, name);
        }
        doomed
    }
}

/// `remove_dir_all`, retried: a worker may be finishing a file in it at that moment.
fn remove_dir_retrying(dir: &Path) {
    for _ in 0..5 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    tracing::warn!(dir = %dir.display(), "could not remove a job folder");
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Retention = Retention {
        max_jobs: 3,
        max_bytes: u64::MAX,
        max_failed_runs: 1,
        max_pending: 100,
        max_pending_total: 1000,
    };

    #[test]
    fn a_job_interrupted_too_often_ends_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JobStore::open(dir.path(), KEEP).unwrap();
        let mut job = store.create("svc", Origin::Job, Some(b"in"), None).unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            // What the worker writes before each run.
            job.status = Status::Running;
            job.attempts = attempt;
            store.update(&job).unwrap();
            drop(store_reopened_pending(
                dir.path(),
                &job.name,
                attempt < MAX_ATTEMPTS,
            ));
        }
        let (store, pending) = JobStore::open(dir.path(), KEEP).unwrap();
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
                .unwrap()
                .contains("3 times; it is not run again")
        );
    }

    /// Reopens the store (a restart) and checks whether `job` was queued again.
    fn store_reopened_pending(dir: &Path, job: &str, expected: bool) -> JobStore {
        let (store, pending) = JobStore::open(dir, KEEP).unwrap();
        assert_eq!(pending.iter().any(|r| r.name == job), expected);
        store
    }

    #[test]
    fn pending_jobs_are_bounded_per_service_by_count_and_bytes_and_overall() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Retention {
            max_pending: 2,
            max_pending_total: 3,
            max_bytes: 10,
            ..KEEP
        };
        let (store, _) = JobStore::open(dir.path(), limits).unwrap();
        store.create("a", Origin::Job, Some(b"1"), None).unwrap();
        let mut second = store.create("a", Origin::Job, Some(b"2"), None).unwrap();
        assert!(matches!(
            store.create("a", Origin::Job, Some(b"3"), None),
            Err(CreateError::ServiceFull { pending: 2, .. })
        ));
        // Failed synchronous runs are not jobs: never refused.
        store.create("a", Origin::Run, None, None).unwrap();
        assert!(matches!(
            store.create("b", Origin::Job, Some(&[0; 11]), None),
            Err(CreateError::ServiceFull { pending: 0, .. })
        ));
        store.create("b", Origin::Job, Some(b"1"), None).unwrap();
        assert!(matches!(
            store.create("c", Origin::Job, None, None),
            Err(CreateError::ServerFull(3))
        ));
        finish(&store, &mut second);
        store.create("a", Origin::Job, Some(b"3"), None).unwrap();
        // Refused jobs left nothing on disk.
        let on_disk = std::fs::read_dir(dir.path().join("jobs/a"))
            .unwrap()
            .count();
        assert_eq!(on_disk, 4);
    }

    fn finish(store: &JobStore, record: &mut JobRecord) {
        record.status = Status::Succeeded;
        store.update(record).unwrap();
    }

    #[test]
    fn running_jobs_are_requeued_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JobStore::open(dir.path(), KEEP).unwrap();
        let mut running = store.create("svc", Origin::Job, Some(b"in"), None).unwrap();
        running.status = Status::Running;
        store.update(&running).unwrap();
        let queued = store.create("svc", Origin::Job, Some(b"in"), None).unwrap();
        let mut done = store.create("svc", Origin::Job, Some(b"in"), None).unwrap();
        finish(&store, &mut done);
        drop(store);
        let (store, pending) = JobStore::open(dir.path(), KEEP).unwrap();
        let names: Vec<_> = pending.iter().map(|r| r.name.clone()).collect();
        assert!(names.contains(&running.name) && names.contains(&queued.name) && names.len() == 2);
        assert!(
            store
                .read_log("svc", &running.name, false)
                .unwrap()
                .contains("will run again")
        );
        assert_eq!(
            store.get("svc", &done.name).unwrap().status,
            Status::Succeeded
        );
    }

    #[test]
    fn retention_removes_the_oldest_finished_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JobStore::open(dir.path(), KEEP).unwrap();
        let mut names = Vec::new();
        for _ in 0..5 {
            let mut r = store.create("svc", Origin::Job, Some(b"x"), None).unwrap();
            finish(&store, &mut r);
            names.push(r.name);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let removed = store.enforce_retention("svc");
        assert_eq!(removed, names[..2].to_vec());
        assert!(!store.dir("svc", &names[0]).exists());
        assert_eq!(store.list("svc").len(), 3);
    }

    #[test]
    fn logs_keep_lines_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JobStore::open(dir.path(), KEEP).unwrap();
        let r = store.create("svc", Origin::Job, None, None).unwrap();
        store
            .append_log("svc", &r.name, &[(1_700_000_000_123, "one\ntwo".into())])
            .unwrap();
        assert_eq!(store.read_log("svc", &r.name, false).unwrap(), "one\ntwo\n");
        assert_eq!(
            store.read_log("svc", &r.name, true).unwrap(),
            "2023-11-14T22:13:20.123Z one\n2023-11-14T22:13:20.123Z two\n"
        );
        assert!(store.remove("svc", &r.name).is_some());
        assert!(store.read_log("svc", &r.name, false).is_none());
    }
}
