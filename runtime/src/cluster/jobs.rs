//! Jobs in a cluster, where every server reads them: records in the JetStream key-value
//! bucket `oscar_jobs` (key `<service>.<job>`), and each job's input, log and outputs (one zip)
//! in the object store `oscar_job_files` under `<service>/<job>/`. Both are replicated by
//! the NATS cluster, so no server's disk holds anything another needs; the embedded S3 store
//! is one server's folder, and an external one is the users' own, so neither is used.
//!
//! Every server watches the records to keep its index current; the revisions this server
//! wrote itself are not applied again when the watch brings them back.

use super::services::{entries, last_revision, watch};
use super::{Cluster, ClusterError, modules as objects, names, store_error};
use crate::faas::OutputFile;
use crate::jobs::record::JobRecord;
use crate::jobs::store::{JobBackend, RecordChange};
use crate::stores::StoreError;
use async_nats::jetstream::kv;
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Jobs in NATS.
pub struct NatsJobs {
    cluster: Cluster,
    records: kv::Store,
    files: objects::Objects,
    /// The newest revision this server wrote or applied, by key: older ones the watch brings
    /// are skipped, so the index never steps back.
    seen: Arc<Mutex<HashMap<String, u64>>>,
    loaded_at: Arc<AtomicU64>,
}

fn key(service: &str, job: &str) -> String {
    format!("{service}.{job}")
}

fn file(service: &str, job: &str, what: &str) -> String {
    format!("{service}/{job}/{what}")
}

impl NatsJobs {
    /// Opens (creating) the bucket and the object store.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            records: cluster.key_value(names::JOBS, Duration::ZERO).await?,
            files: objects::Objects::open(cluster, names::JOB_FILES).await?,
            cluster: cluster.clone(),
            seen: Arc::default(),
            loaded_at: Arc::default(),
        })
    }

    /// Notes a revision this server wrote; `false` if a newer one was already seen.
    fn note(seen: &Mutex<HashMap<String, u64>>, key: &str, revision: u64) -> bool {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let newest = seen.entry(key.to_string()).or_default();
        if *newest >= revision {
            return false;
        }
        *newest = revision;
        true
    }

    async fn put(&self, record: &JobRecord) -> Result<(), StoreError> {
        let k = key(&record.service, &record.name);
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let revision = self
            .records
            .put(&k, bytes.into())
            .await
            .map_err(|e| store_error("storing the job record", e))?;
        Self::note(&self.seen, &k, revision);
        Ok(())
    }
}

#[async_trait::async_trait]
impl JobBackend for NatsJobs {
    async fn load(&self) -> Result<Vec<JobRecord>, StoreError> {
        let last = last_revision(&self.cluster, names::JOBS).await?;
        self.loaded_at.store(last, Ordering::Relaxed);
        let mut out = Vec::new();
        for entry in entries(&self.records).await? {
            match serde_json::from_slice::<JobRecord>(&entry.value) {
                Ok(record) => {
                    Self::note(&self.seen, &entry.key, entry.revision);
                    out.push(record);
                }
                Err(e) => {
                    tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable job record")
                }
            }
        }
        Ok(out)
    }

    fn exclusive(&self) -> bool {
        false
    }

    async fn create(
        &self,
        record: &JobRecord,
        input: Option<&[u8]>,
        log: &str,
    ) -> Result<(), StoreError> {
        if let Some(input) = input {
            objects::write(
                &self.files.store,
                &file(&record.service, &record.name, "input"),
                input,
            )
            .await?;
        }
        if !log.is_empty() {
            // A new job has no log yet: written whole, not read and appended to.
            let name = file(&record.service, &record.name, "log");
            objects::write(&self.files.store, &name, log.as_bytes()).await?;
        }
        self.put(record).await
    }

    async fn save(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.put(record).await
    }

    async fn append_log(&self, service: &str, job: &str, text: &str) -> Result<(), StoreError> {
        let name = file(service, job, "log");
        let mut log = objects::read(&self.files, &name).await?.unwrap_or_default();
        log.extend_from_slice(text.as_bytes());
        objects::write(&self.files.store, &name, &log).await
    }

    async fn read_log(&self, service: &str, job: &str) -> Result<String, StoreError> {
        let log = objects::read(&self.files, &file(service, job, "log")).await?;
        Ok(String::from_utf8_lossy(&log.unwrap_or_default()).into_owned())
    }

    async fn read_input(&self, service: &str, job: &str) -> Result<Vec<u8>, StoreError> {
        objects::read(&self.files, &file(service, job, "input"))
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("the input of job {job}")))
    }

    async fn write_outputs(
        &self,
        service: &str,
        job: &str,
        files: &[OutputFile],
    ) -> Result<(), StoreError> {
        let zip = crate::faas::zip_stored(files)?;
        objects::write(&self.files.store, &file(service, job, "outputs.zip"), &zip).await
    }

    async fn output_files(&self, service: &str, job: &str) -> Result<Vec<OutputFile>, StoreError> {
        let Some(zip) = objects::read(&self.files, &file(service, job, "outputs.zip")).await?
        else {
            return Ok(Vec::new());
        };
        let mut archive = zip::ZipArchive::new(io::Cursor::new(zip)).map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(archive.len());
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(io::Error::other)?;
            let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
            entry.read_to_end(&mut bytes)?;
            out.push(OutputFile {
                path: entry.name().to_string(),
                bytes,
            });
        }
        Ok(out)
    }

    async fn output_file(
        &self,
        service: &str,
        job: &str,
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // Entries are looked up by name: there is no folder to leave.
        let Some(wanted) = path.to_str() else {
            return Ok(None);
        };
        Ok(self
            .output_files(service, job)
            .await?
            .into_iter()
            .find(|f| f.path == wanted)
            .map(|f| f.bytes))
    }

    async fn remove(&self, service: &str, job: &str) {
        let k = key(service, job);
        let removed = async {
            self.records
                .purge(&k)
                .await
                .map_err(|e| store_error("deleting the job record", e))?;
            for what in ["input", "log", "outputs.zip"] {
                objects::delete(&self.files.store, &file(service, job, what)).await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = removed {
            tracing::warn!(service, job, error = %e, "could not remove everything kept for a job");
        }
    }

    async fn measure(&self, service: &str, job: &str) -> u64 {
        let mut total = 0;
        for what in ["input", "log", "outputs.zip"] {
            total += objects::size(&self.files.store, &file(service, job, what))
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
        }
        total
    }

    async fn fetch(&self, service: &str, job: &str) -> Result<Option<JobRecord>, StoreError> {
        let k = key(service, job);
        let entry = self
            .records
            .entry(k.clone())
            .await
            .map_err(|e| store_error("reading the job record", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        Self::note(&self.seen, &k, entry.revision);
        serde_json::from_slice(&entry.value)
            .map(Some)
            .map_err(|e| StoreError::Io(io::Error::other(e)))
    }

    fn follow(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<RecordChange>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let seen = self.seen.clone();
        watch(self.records.clone(), self.loaded_at.clone(), move |entry| {
            if !Self::note(&seen, &entry.key, entry.revision) {
                tracing::debug!(key = %entry.key, revision = entry.revision, "job record change already applied");
                return true;
            }
            let change = match entry.operation {
                kv::Operation::Put => match serde_json::from_slice(&entry.value) {
                    Ok(record) => RecordChange::Put(Box::new(record)),
                    Err(e) => {
                        tracing::warn!(key = %entry.key, error = %e, "skipping an unreadable job record");
                        return true;
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => {
                    let Some((service, job)) = entry.key.split_once('.') else {
                        return true;
                    };
                    RecordChange::Removed {
                        service: service.to_string(),
                        job: job.to_string(),
                    }
                }
            };
            sender.send(change).is_ok()
        });
        Some(receiver)
    }
}
