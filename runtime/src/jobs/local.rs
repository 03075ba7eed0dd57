//! Jobs on one machine, one folder each: `jobs/<service>/<job>/` holding `job.json` (the
//! record, written atomically), `input` (the decoded input, fsynced before the job is
//! accepted), `log.txt` (lines `<unix ms> <text>`) and `outputs/` (the module's output files).

use super::record::JobRecord;
use super::store::JobBackend;
use crate::faas::OutputFile;
use crate::fsutil;
use crate::stores::{StoreError, blocking};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Jobs as folders under the data folder.
pub struct LocalJobs(Files);

/// The folder, for the blocking tasks that read and write it.
#[derive(Clone)]
struct Files {
    root: PathBuf,
}

impl LocalJobs {
    /// Opens (creating) `data_dir/jobs`.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("jobs");
        // Owner-only: job folders hold users' inputs, outputs and logs.
        fsutil::create_private_dir(&root)?;
        Ok(Self(Files { root }))
    }
}

impl Files {
    fn dir(&self, service: &str, job: &str) -> PathBuf {
        self.root.join(service).join(job)
    }

    fn outputs_dir(&self, service: &str, job: &str) -> PathBuf {
        self.dir(service, job).join("outputs")
    }

    fn persist(&self, record: &JobRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        fsutil::atomic_write(
            &self.dir(&record.service, &record.name).join("job.json"),
            &bytes,
        )
    }
}

/// A new owner-only file, its bytes synced to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
                match std::fs::read(job_dir.join("job.json"))
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(record) => records.push(record),
                    Err(reason) => {
                        // A job folder without a complete record was never accepted.
                        tracing::warn!(dir = %job_dir.display(), %reason, "removing an incomplete job folder");
                        let _ = std::fs::remove_dir_all(&job_dir);
                    }
                }
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
            write_synced(&dir.join("input"), input)?;
        }
        self.persist(record)?;
        fsutil::sync_dir(&self.root.join(&record.service))
    }

    fn save(&self, record: &JobRecord) -> io::Result<()> {
        self.persist(record)
    }

    fn append_log(&self, service: &str, job: &str, text: &str) -> io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(self.dir(service, job).join("log.txt"))?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
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
        let mut folders = std::collections::BTreeSet::new();
        for file in files {
            // Paths come from our own walk of the output folder: relative, no `..`.
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
                folders.insert(parent.to_path_buf());
            }
            // Durable before the job is marked Succeeded.
            write_synced(&path, &file.bytes)?;
        }
        // The new names too: deepest folders first, then the job's folder that holds them.
        for folder in folders.iter().rev() {
            fsutil::sync_dir(folder)?;
        }
        fsutil::sync_dir(&self.dir(service, job))
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
