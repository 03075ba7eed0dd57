//! Jobs on one machine, one folder each: `jobs/<service>/<job>/` holding `record.jsonl` (the
//! record, one JSON line appended per change: the last complete line is the record), `input`
//! (the decoded input), `log.txt` (lines `<unix ms> <text>`) and `outputs/` (the module's
//! output files).
//!
//! Durability is a group commit ([`GroupSync`]): writes are not synced one by one; a new job
//! and every record change wait for a `syncfs` that covers them, shared with every other job
//! written meanwhile, so POST /job answers once its input and record are on disk, at one sync
//! per batch instead of several `fsync`s per job. A finished record is saved only after a sync
//! that covers its outputs and log, so a record saying Succeeded always has them. Appending
//! records instead of replacing a file also keeps the file system from allocating (and
//! freeing) an inode per change. Folders of the earlier layout (`job.json`) are still read.

use super::record::JobRecord;
use super::store::JobBackend;
use crate::faas::OutputFile;
use crate::fsutil;
use crate::group_sync::GroupSync;
use crate::stores::{StoreError, blocking};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The record's file: one JSON line per change.
const RECORD: &str = "record.jsonl";
/// The record's file in the earlier layout (replaced atomically on each change).
const OLD_RECORD: &str = "job.json";

/// Jobs as folders under the data folder.
pub struct LocalJobs(Files);

/// The folder, for the blocking tasks that read and write it.
#[derive(Clone)]
struct Files {
    root: PathBuf,
    group: Arc<GroupSync>,
}

impl LocalJobs {
    /// Opens (creating) `data_dir/jobs`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("jobs");
        // Owner-only: job folders hold users' inputs, outputs and logs.
        fsutil::create_private_dir(&root)?;
        let group = Arc::new(GroupSync::open(&root)?);
        Ok(Self(Files { root, group }))
    }
}

impl Files {
    fn dir(&self, service: &str, job: &str) -> PathBuf {
        self.root.join(service).join(job)
    }

    fn outputs_dir(&self, service: &str, job: &str) -> PathBuf {
        self.dir(service, job).join("outputs")
    }

    /// Appends the record as one line, then waits for a sync covering it.
    fn persist(&self, record: &JobRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        append(&self.dir(&record.service, &record.name).join(RECORD), &line)?;
        self.group.sync()
    }
}

/// Appends to an owner-only file, creating it; not synced.
fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// A new owner-only file; not synced.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// What a job folder's record files say.
enum Found {
    /// The record.
    Record(Box<JobRecord>),
    /// No complete record: the job was never acknowledged, and its folder can go.
    Incomplete(String),
    /// The files could not be read (permissions, an I/O error): the folder is left alone.
    Unreadable(io::Error),
}

/// The record a job folder holds: the last complete line of its record file, or the earlier
/// layout's file when the record file has none. A last line torn by a power cut (never
/// acknowledged) is cut off here, before anything is appended after it: otherwise the next
/// line would be glued to it and lost too.
fn read_record(job_dir: &Path) -> Found {
    let file = job_dir.join(RECORD);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Found::Unreadable(e),
    };
    let whole = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |end| end + 1);
    if whole < bytes.len() {
        let cut = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(whole as u64));
        if let Err(e) = cut {
            return Found::Unreadable(e);
        }
    }
    if let Some(record) = bytes[..whole]
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice(line).ok())
    {
        return Found::Record(Box::new(record));
    }
    match std::fs::read(job_dir.join(OLD_RECORD)) {
        Ok(old) => match serde_json::from_slice(&old) {
            Ok(record) => Found::Record(Box::new(record)),
            Err(e) => Found::Incomplete(format!("{OLD_RECORD} does not parse: {e}")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Found::Incomplete(format!("no complete line in {RECORD}"))
        }
        Err(e) => Found::Unreadable(e),
    }
}

/// Whether an unfinished job's input is whole: a power cut before the sync that would have
/// acknowledged the job can leave a record whose input is short.
fn input_is_whole(job_dir: &Path, record: &JobRecord) -> bool {
    if record.status.is_finished()
        || record.origin != super::record::Origin::Job
        || record.trigger.is_some()
    {
        return true;
    }
    let len = std::fs::metadata(job_dir.join("input")).map_or(0, |m| m.len());
    len == record.bytes
}

#[async_trait::async_trait]
impl JobBackend for LocalJobs {
    async fn load(&self) -> Result<Vec<JobRecord>, StoreError> {
        let this = self.0.clone();
        blocking(move || this.load().map_err(StoreError::from)).await
    }

    fn exclusive(&self) -> bool {
        self.0.exclusive()
    }

    async fn create(&self, record: &JobRecord, input: Option<&[u8]>) -> Result<(), StoreError> {
        let this = self.0.clone();
        let record = record.clone();
        let input = input.map(<[u8]>::to_vec);
        blocking(move || {
            this.create(&record, input.as_deref())
                .map_err(StoreError::from)
        })
        .await
    }

    async fn save(&self, record: &JobRecord) -> Result<(), StoreError> {
        let this = self.0.clone();
        let record = record.clone();
        blocking(move || this.save(&record).map_err(StoreError::from)).await
    }

    async fn append_log(&self, service: &str, job: &str, text: &str) -> Result<(), StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        let text = text.to_string();
        blocking(move || {
            this.append_log(&service, &job, &text)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn read_log(&self, service: &str, job: &str) -> Result<String, StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        blocking(move || this.read_log(&service, &job).map_err(StoreError::from)).await
    }

    async fn read_input(&self, service: &str, job: &str) -> Result<Vec<u8>, StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        blocking(move || this.read_input(&service, &job).map_err(StoreError::from)).await
    }

    async fn write_outputs(
        &self,
        service: &str,
        job: &str,
        files: &[OutputFile],
    ) -> Result<(), StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        let files = files.to_vec();
        blocking(move || {
            this.write_outputs(&service, &job, &files)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn output_files(&self, service: &str, job: &str) -> Result<Vec<OutputFile>, StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        blocking(move || this.output_files(&service, &job).map_err(StoreError::from)).await
    }

    async fn output_file(
        &self,
        service: &str,
        job: &str,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        let path = path.to_path_buf();
        blocking(move || {
            this.output_file(&service, &job, &path)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn remove(&self, service: &str, job: &str) {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        blocking(move || {
            this.remove(&service, &job);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| tracing::warn!(error = %e, "a store task failed"))
    }

    async fn remove_service(&self, service: &str, jobs: &[JobRecord]) {
        let this = self.0.clone();
        let service = service.to_string();
        let jobs = jobs.to_vec();
        blocking(move || {
            this.remove_service(&service, &jobs);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| tracing::warn!(error = %e, "a store task failed"))
    }

    async fn measure(&self, service: &str, job: &str) -> u64 {
        let this = self.0.clone();
        let service = service.to_string();
        let job = job.to_string();
        blocking(move || Ok(this.measure(&service, &job)))
            .await
            .unwrap_or_default()
    }
}

impl Files {
    fn load(&self) -> io::Result<Vec<JobRecord>> {
        let mut records = Vec::new();
        for service in std::fs::read_dir(&self.root)? {
            let service = service?;
            if !service.file_type()?.is_dir() {
                continue;
            }
            for job in std::fs::read_dir(service.path())? {
                let job_dir = job?.path();
                let reason = match read_record(&job_dir) {
                    Found::Record(record) if input_is_whole(&job_dir, &record) => {
                        records.push(*record);
                        continue;
                    }
                    Found::Record(_) => "its input is not whole".to_string(),
                    Found::Incomplete(reason) => reason,
                    Found::Unreadable(e) => {
                        tracing::error!(dir = %job_dir.display(), error = %e, "a job folder could not be read; it is left as it is and its job is not run");
                        continue;
                    }
                };
                // A job folder without a complete record was never accepted.
                tracing::warn!(dir = %job_dir.display(), %reason, "removing an incomplete job folder");
                let _ = std::fs::remove_dir_all(&job_dir);
            }
        }
        Ok(records)
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn create(&self, record: &JobRecord, input: Option<&[u8]>) -> io::Result<()> {
        let dir = self.dir(&record.service, &record.name);
        fsutil::create_private_dir(&self.root.join(&record.service))?;
        std::fs::create_dir(&dir)?;
        if let Some(input) = input {
            write_new(&dir.join("input"), input)?;
        }
        // One sync covers the folders, the input and the record.
        self.persist(record)
    }

    fn save(&self, record: &JobRecord) -> io::Result<()> {
        if record.status.is_finished() {
            // The outputs and log it claims are on disk before the record that claims them.
            self.group.sync()?;
        }
        self.persist(record)
    }

    fn append_log(&self, service: &str, job: &str, text: &str) -> io::Result<()> {
        // Synced with the next record saved (a finished one waits for it).
        append(&self.dir(service, job).join("log.txt"), text.as_bytes())
    }

    fn read_log(&self, service: &str, job: &str) -> io::Result<String> {
        match std::fs::read_to_string(self.dir(service, job).join("log.txt")) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    fn read_input(&self, service: &str, job: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir(service, job).join("input"))
    }

    fn write_outputs(&self, service: &str, job: &str, files: &[OutputFile]) -> io::Result<()> {
        let dir = self.outputs_dir(service, job);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A previous attempt's outputs: replaced by this attempt's.
                std::fs::remove_dir_all(&dir)?;
                std::fs::create_dir(&dir)?;
            }
            Err(e) => return Err(e),
        }
        for file in files {
            // Paths come from our own walk of the output folder: relative, no `..`.
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Durable before the job is marked Succeeded: its finished record waits for a
            // sync that covers them (see `save`).
            write_new(&path, &file.bytes)?;
        }
        Ok(())
    }

    fn output_files(&self, service: &str, job: &str) -> io::Result<Vec<OutputFile>> {
        let dir = self.outputs_dir(service, job);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        // Written by this server from an invocation's bounded outputs.
        let limits = crate::faas::outputs::OutputLimits {
            max_files: usize::MAX,
            max_bytes: u64::MAX,
        };
        let mut files = crate::faas::outputs::collect(&dir, limits)
            .map_err(io::Error::other)?
            .files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn output_file(&self, service: &str, job: &str, path: &Path) -> io::Result<Option<Vec<u8>>> {
        // Through cap-std, so that `path` cannot leave the job's output folder.
        let dir = self.outputs_dir(service, job);
        let read = || {
            let root =
                cap_std::fs::Dir::open_ambient_dir(&dir, cap_std::ambient_authority()).ok()?;
            let meta = root.symlink_metadata(path).ok()?;
            if !meta.is_file() {
                return None;
            }
            root.read(path).ok()
        };
        Ok(read())
    }

    fn remove(&self, service: &str, job: &str) {
        remove_dir_retrying(&self.dir(service, job));
    }

    fn remove_service(&self, service: &str, _jobs: &[JobRecord]) {
        remove_dir_retrying(&self.root.join(service));
    }

    fn measure(&self, service: &str, job: &str) -> u64 {
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
    use super::super::record::{Origin, Status};
    use super::*;

    fn record(name: &str, status: Status, bytes: u64) -> JobRecord {
        JobRecord {
            name: name.into(),
            service: "svc".into(),
            origin: Origin::Job,
            status,
            created_ms: 1,
            started_ms: None,
            finished_ms: None,
            attempts: 0,
            outcome: None,
            bytes,
            trigger: None,
            traceparent: None,
            user: None,
        }
    }

    #[test]
    fn the_last_complete_record_line_wins_and_a_torn_one_is_ignored() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let mut job = record("svc-1", Status::Pending, 2);
        jobs.0.create(&job, Some(b"in")).unwrap();
        job.status = Status::Running;
        job.attempts = 1;
        jobs.0.save(&job).unwrap();
        // A power cut in the middle of the next change.
        let file = jobs.0.dir("svc", "svc-1").join(RECORD);
        append(&file, br#"{"name":"svc-1","status":"Succ"#).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![job.clone()]);
        // The torn line is cut off, so the next change is a line of its own.
        job.status = Status::Succeeded;
        jobs.0.save(&job).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![job]);
    }

    #[test]
    fn a_torn_first_line_falls_back_to_the_earlier_layouts_record() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let old = record("svc-old", Status::Pending, 0);
        let dir = jobs.0.dir("svc", "svc-old");
        std::fs::create_dir_all(&dir).unwrap();
        fsutil::write_json(&dir.join(OLD_RECORD), &old).unwrap();
        append(&dir.join(RECORD), br#"{"name":"svc-old","#).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![old]);
        assert!(dir.exists());
    }

    #[test]
    fn a_job_whose_input_is_short_was_never_accepted() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        jobs.0
            .create(&record("svc-short", Status::Pending, 5), Some(b"12345"))
            .unwrap();
        jobs.0
            .create(&record("svc-whole", Status::Pending, 3), Some(b"123"))
            .unwrap();
        // The record reached the disk, not all of the input.
        std::fs::write(jobs.0.dir("svc", "svc-short").join("input"), b"12").unwrap();
        let names: Vec<_> = jobs.0.load().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["svc-whole"]);
        assert!(!jobs.0.dir("svc", "svc-short").exists());
    }

    #[test]
    fn folders_of_the_earlier_layout_are_read() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let old = record("svc-old", Status::Succeeded, 0);
        let dir = jobs.0.dir("svc", "svc-old");
        std::fs::create_dir_all(&dir).unwrap();
        fsutil::write_json(&dir.join(OLD_RECORD), &old).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![old]);
    }
}
