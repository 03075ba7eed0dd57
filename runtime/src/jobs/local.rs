//! Jobs on one machine, one file each: `jobs/<service>/<job>`, an append-only sequence of
//! frames ([`super::frames`]) holding the decoded input, each version of the record (the last
//! whole one is the record), the log lines and the output files of the last run. One inode
//! per job, and every change an append: creating and freeing the five or six inodes of a job
//! folder was most of the file system's cost per job. Folders of earlier versions are turned
//! into files at start-up ([`super::legacy_folders`]).
//!
//! Durability is a group commit ([`GroupSync`]): writes are not synced one by one; a new job
//! and every record change wait for a `syncfs` that covers them, shared with every other job
//! written meanwhile, so POST /job answers once its input and record are on disk, at one sync
//! per batch instead of several `fsync`s per job. Order needs no sync: a frame counts only
//! when every frame before it in the file is whole, so a finished record appended after its
//! outputs and log never stands without them. A payload over [`frames::LARGE`] is synced
//! before anything is appended after it (it is checked by its header alone when the file is
//! opened).

use super::frames::{self, Kind};
use super::legacy_folders::{self, Migrated};
use super::record::JobRecord;
use super::store::JobBackend;
use crate::faas::OutputFile;
use crate::fsutil;
use crate::group_sync::GroupSync;
use crate::stores::{StoreError, blocking};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Jobs as files under the data folder.
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
        // Owner-only: job files hold users' inputs, outputs and logs.
        fsutil::create_private_dir(&root)?;
        let group = Arc::new(GroupSync::open(&root)?);
        Ok(Self(Files { root, group }))
    }
}

impl Files {
    fn path(&self, service: &str, job: &str) -> PathBuf {
        self.root.join(service).join(job)
    }

    /// Appends frames to an existing job file (a deleted job's is not made again); not synced.
    /// A write that fails part-way (a full disk) is cut off again: a torn frame in the middle
    /// would hide every frame appended after it.
    fn append(&self, service: &str, job: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path(service, job))?;
        let len = file.metadata()?.len();
        file.write_all(bytes).inspect_err(|_| {
            let _ = file.set_len(len);
        })
    }

    /// The job's file, opened for reading, and its whole frames.
    fn scan(&self, service: &str, job: &str) -> io::Result<(std::fs::File, frames::Scan)> {
        let mut file = std::fs::File::open(self.path(service, job))?;
        let scan = frames::scan(&mut file)?;
        Ok((file, scan))
    }
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

    async fn create(
        &self,
        record: &JobRecord,
        input: Option<&[u8]>,
        log: &str,
    ) -> Result<(), StoreError> {
        let this = self.0.clone();
        let record = record.clone();
        let input = input.map(<[u8]>::to_vec);
        let log = log.to_string();
        blocking(move || {
            this.create(&record, input.as_deref(), &log)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn finish(
        &self,
        record: &mut JobRecord,
        outputs: Option<&[OutputFile]>,
        log: &[(u64, String)],
    ) -> Result<(), StoreError> {
        let this = self.0.clone();
        let mut finished = record.clone();
        let outputs = outputs.map(<[OutputFile]>::to_vec);
        let mut log = log.to_vec();
        // One blocking task for the whole ending (it was four: outputs, log, size, record).
        let finished = blocking(move || {
            if let Some(files) = &outputs
                && let Err(e) = this.write_outputs(&finished.service, &finished.name, files)
            {
                log.push(super::store::outputs_lost(&e));
            }
            let text = super::store::log_text(&log);
            this.append_log(&finished.service, &finished.name, &text)?;
            finished.bytes = this.measure(&finished.service, &finished.name);
            this.save(&finished)?;
            Ok(finished)
        })
        .await?;
        *record = finished;
        Ok(())
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
            let service_dir = service.path();
            let names = || -> io::Result<Vec<String>> {
                std::fs::read_dir(&service_dir)?
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            };
            // Migrations a crash interrupted first: each leaves its job's folder or file.
            let mut jobs = names()?;
            let interrupted: std::collections::BTreeSet<String> = jobs
                .iter()
                .filter_map(|n| legacy_folders::leftover_of(n).map(str::to_string))
                .collect();
            if !interrupted.is_empty() {
                for job in &interrupted {
                    legacy_folders::finish_interrupted(&service_dir, job)?;
                }
                jobs = names()?;
            }
            for name in jobs {
                let path = service_dir.join(&name);
                if path.is_dir() {
                    match legacy_folders::migrate(&path) {
                        Migrated::Done => {}
                        Migrated::Incomplete(reason) => {
                            tracing::warn!(dir = %path.display(), %reason, "removed an incomplete job folder");
                            continue;
                        }
                        Migrated::Unreadable(e) => {
                            tracing::error!(dir = %path.display(), error = %e, "a job folder could not be read; it is left as it is and its job is not run");
                            continue;
                        }
                    }
                }
                match read_job(&path) {
                    Ok(Some(record)) => records.push(record),
                    Ok(None) => {
                        // No whole record, or a record without its input: never acknowledged.
                        tracing::warn!(file = %path.display(), "removing an incomplete job file");
                        let _ = std::fs::remove_file(&path);
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "a job file could not be read; it is left as it is and its job is not run");
                    }
                }
            }
        }
        Ok(records)
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn create(&self, record: &JobRecord, input: Option<&[u8]>, log: &str) -> io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let path = self.path(&record.service, &record.name);
        // The service's folder is made by its first job only: making it (a chmod) for every
        // job serialized concurrent creations on the folder's inode lock.
        let mut file = match options.open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fsutil::create_private_dir(&self.root.join(&record.service))?;
                options.open(&path)?
            }
            opened => opened?,
        };
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        match input {
            Some(input) if input.len() > frames::LARGE => {
                file.write_all(&frames::frame(Kind::Input, input)?)?;
                self.group.sync()?;
                let mut bytes = log_frames(log)?;
                frames::push_frame(&mut bytes, Kind::Record, &json)?;
                file.write_all(&bytes)?;
            }
            _ => {
                let mut bytes = Vec::new();
                if let Some(input) = input {
                    frames::push_frame(&mut bytes, Kind::Input, input)?;
                }
                bytes.extend(log_frames(log)?);
                frames::push_frame(&mut bytes, Kind::Record, &json)?;
                file.write_all(&bytes)?;
            }
        }
        // One sync covers the file, its folder entry, the input and the record.
        self.group.sync()
    }

    fn save(&self, record: &JobRecord) -> io::Result<()> {
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        self.append(
            &record.service,
            &record.name,
            &frames::frame(Kind::Record, &json)?,
        )?;
        self.group.sync()
    }

    fn append_log(&self, service: &str, job: &str, text: &str) -> io::Result<()> {
        // Synced with the next record saved, which it precedes in the file.
        self.append(service, job, &log_frames(text)?)
    }

    fn read_log(&self, service: &str, job: &str) -> io::Result<String> {
        let (mut file, scan) = match self.scan(service, job) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(e),
        };
        let log = scan.joined(&mut file, Kind::Log)?;
        Ok(String::from_utf8_lossy(&log).into_owned())
    }

    fn read_input(&self, service: &str, job: &str) -> io::Result<Vec<u8>> {
        let (mut file, scan) = self.scan(service, job)?;
        scan.last(&mut file, Kind::Input)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the job has no input"))
    }

    fn write_outputs(&self, service: &str, job: &str, files: &[OutputFile]) -> io::Result<()> {
        // This run's outputs replace an earlier attempt's: the last frame wins.
        let payload = frames::encode_outputs(files);
        self.append(service, job, &frames::frame(Kind::Outputs, &payload)?)?;
        if payload.len() > frames::LARGE {
            self.group.sync()?;
        }
        Ok(())
    }

    fn output_files(&self, service: &str, job: &str) -> io::Result<Vec<OutputFile>> {
        let (mut file, scan) = self.scan(service, job)?;
        let mut files = match scan.last(&mut file, Kind::Outputs)? {
            Some(payload) => frames::decode_outputs(&payload)?,
            None => Vec::new(),
        };
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    fn output_file(&self, service: &str, job: &str, path: &Path) -> io::Result<Option<Vec<u8>>> {
        // Looked up by its exact relative path among the files the run left: nothing else
        // (`..`, an absolute path) can name a file.
        let Some(wanted) = path.to_str() else {
            return Ok(None);
        };
        let (mut file, scan) = match self.scan(service, job) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match scan.last(&mut file, Kind::Outputs)? {
            // Only the file asked for is copied out of the frame.
            Some(payload) => frames::find_output(&payload, wanted),
            None => Ok(None),
        }
    }

    fn remove(&self, service: &str, job: &str) {
        match std::fs::remove_file(self.path(service, job)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(service, job, error = %e, "could not remove a job file"),
        }
    }

    fn remove_service(&self, service: &str, _jobs: &[JobRecord]) {
        remove_dir_retrying(&self.root.join(service));
    }

    fn measure(&self, service: &str, job: &str) -> u64 {
        std::fs::metadata(self.path(service, job)).map_or(0, |m| m.len())
    }
}

/// Log text as frames of at most `LARGE` bytes, which are checked whole when the file is
/// opened (a large one would be taken on its header, and need a sync before anything follows
/// it).
fn log_frames(text: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() + frames::HEADER);
    for chunk in text.as_bytes().chunks(frames::LARGE) {
        frames::push_frame(&mut bytes, Kind::Log, chunk)?;
    }
    Ok(bytes)
}

/// The record of the job file at `path`, its torn tail cut off first (so that the next append
/// starts a frame of its own); `None` when it has no whole record, or an unfinished job's
/// record without the input it names.
fn read_job(path: &Path) -> io::Result<Option<JobRecord>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let scan = frames::scan(&mut file)?;
    if scan.whole < scan.len {
        file.set_len(scan.whole)?;
    }
    let Some(json) = scan.last(&mut file, Kind::Record)? else {
        return Ok(None);
    };
    let record: JobRecord = serde_json::from_slice(&json).map_err(io::Error::other)?;
    let needs_input = !record.status.is_finished()
        && record.origin == super::record::Origin::Job
        && record.trigger.is_none();
    if needs_input && !scan.has(Kind::Input) {
        return Ok(None);
    }
    Ok(Some(record))
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
    use super::super::record::Status;
    use super::*;

    fn record(name: &str, status: Status, bytes: u64) -> JobRecord {
        JobRecord::for_tests(name, status, bytes)
    }

    #[test]
    fn a_job_is_one_file_holding_its_input_record_log_and_outputs() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let mut job = record("svc-1", Status::Pending, 2);
        jobs.0.create(&job, Some(b"in"), "").unwrap();
        jobs.0.append_log("svc", "svc-1", "1 accepted\n").unwrap();
        job.status = Status::Running;
        jobs.0.save(&job).unwrap();
        let out = |path: &str, bytes: &[u8]| OutputFile {
            path: path.into(),
            bytes: bytes.to_vec(),
        };
        // A first attempt's outputs, replaced by the second's.
        jobs.0
            .write_outputs("svc", "svc-1", &[out("old.txt", b"x")])
            .unwrap();
        let files = vec![out("a/b.txt", b"B"), out("z.txt", b"Z")];
        jobs.0.write_outputs("svc", "svc-1", &files).unwrap();
        jobs.0.append_log("svc", "svc-1", "2 done\n").unwrap();
        job.status = Status::Succeeded;
        jobs.0.save(&job).unwrap();
        assert_eq!(
            std::fs::read_dir(data.path().join("jobs/svc"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(jobs.0.load().unwrap(), vec![job]);
        assert_eq!(jobs.0.read_input("svc", "svc-1").unwrap(), b"in");
        assert_eq!(
            jobs.0.read_log("svc", "svc-1").unwrap(),
            "1 accepted\n2 done\n"
        );
        assert_eq!(jobs.0.output_files("svc", "svc-1").unwrap(), files);
        let file = |p: &str| jobs.0.output_file("svc", "svc-1", Path::new(p)).unwrap();
        assert_eq!(file("a/b.txt").as_deref(), Some(&b"B"[..]));
        assert_eq!(file("old.txt"), None);
        assert_eq!(file("../svc-1"), None);
        jobs.0.remove("svc", "svc-1");
        assert!(!data.path().join("jobs/svc/svc-1").exists());
        // A deleted job's file is not made again by a late append.
        assert!(jobs.0.append_log("svc", "svc-1", "3 late\n").is_err());
        assert!(!data.path().join("jobs/svc/svc-1").exists());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_last_whole_record_wins() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let mut job = record("svc-1", Status::Pending, 2);
        jobs.0.create(&job, Some(b"in"), "").unwrap();
        job.status = Status::Running;
        job.attempts = 1;
        jobs.0.save(&job).unwrap();
        // A power cut in the middle of the next change.
        let path = data.path().join("jobs/svc/svc-1");
        let whole = std::fs::metadata(&path).unwrap().len();
        let next =
            frames::frame(Kind::Record, br#"{"name":"svc-1","status":"Succeeded"}"#).unwrap();
        jobs.0
            .append("svc", "svc-1", &next[..next.len() - 3])
            .unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![job.clone()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        // The next change is a frame of its own.
        job.status = Status::Succeeded;
        jobs.0.save(&job).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![job]);
    }

    #[test]
    fn a_job_without_a_whole_record_or_its_input_was_never_accepted() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        jobs.0
            .create(&record("svc-whole", Status::Pending, 3), Some(b"123"), "")
            .unwrap();
        let dir = data.path().join("jobs/svc");
        // Its record never reached the disk whole.
        let mut torn = frames::frame(Kind::Input, b"12345").unwrap();
        torn.extend_from_slice(&frames::frame(Kind::Record, b"{}").unwrap()[..5]);
        std::fs::write(dir.join("svc-torn"), torn).unwrap();
        // A record naming an input that is not there.
        let json = serde_json::to_vec(&record("svc-short", Status::Pending, 5)).unwrap();
        std::fs::write(
            dir.join("svc-short"),
            frames::frame(Kind::Record, &json).unwrap(),
        )
        .unwrap();
        let names: Vec<_> = jobs.0.load().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["svc-whole"]);
        assert!(!dir.join("svc-torn").exists() && !dir.join("svc-short").exists());
    }

    #[test]
    fn folders_of_the_earlier_layout_become_files_at_start_up() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let old = record("svc-old", Status::Pending, 2);
        let dir = data.path().join("jobs/svc/svc-old");
        std::fs::create_dir_all(&dir).unwrap();
        let mut line = serde_json::to_vec(&old).unwrap();
        line.push(b'\n');
        std::fs::write(dir.join("record.jsonl"), line).unwrap();
        std::fs::write(dir.join("input"), b"in").unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![old.clone()]);
        assert!(dir.is_file());
        assert_eq!(jobs.0.read_input("svc", "svc-old").unwrap(), b"in");
        // And it goes on as a file.
        let mut running = old;
        running.status = Status::Running;
        jobs.0.save(&running).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![running]);
    }

    #[test]
    fn a_large_input_or_output_is_kept_whole() {
        let data = tempfile::tempdir().unwrap();
        let jobs = LocalJobs::open(data.path()).unwrap();
        let big = vec![3u8; frames::LARGE * 3];
        let job = record("svc-big", Status::Pending, big.len() as u64);
        jobs.0.create(&job, Some(&big), "").unwrap();
        let files = vec![OutputFile {
            path: "big.bin".into(),
            bytes: big.clone(),
        }];
        jobs.0.write_outputs("svc", "svc-big", &files).unwrap();
        assert_eq!(jobs.0.load().unwrap(), vec![job]);
        assert_eq!(jobs.0.read_input("svc", "svc-big").unwrap(), big);
        assert_eq!(jobs.0.output_files("svc", "svc-big").unwrap(), files);
    }
}
