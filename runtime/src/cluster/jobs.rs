//! Jobs in a cluster, where every server reads them: records in the JetStream key-value
//! bucket `oscar_jobs` (key `<service>.<job>`), and each job's input, log and outputs (one zip)
//! in the object store `oscar_job_files` under `<service>/<job>/`. Both are replicated by
//! the NATS cluster, so no server's disk holds anything another needs; the embedded S3 store
//! is one server's folder, and an external one is the users' own, so neither is used.
//!
//! Every server watches the records to keep its index current; the revisions this server
//! wrote itself are not applied again when the watch brings them back.

use super::services::{entries, last_revision, watch};
use super::{Cluster, ClusterError, io_error, modules as objects, names};
use crate::faas::OutputFile;
use crate::jobs::record::JobRecord;
use crate::jobs::store::{JobBackend, RecordChange};
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

    fn put(&self, record: &JobRecord) -> io::Result<()> {
        let k = key(&record.service, &record.name);
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let revision = self
            .cluster
            .wait(self.records.put(&k, bytes.into()))
            .map_err(|e| io_error("storing the job record", e))?;
        Self::note(&self.seen, &k, revision);
        Ok(())
    }
}

impl JobBackend for NatsJobs {
    fn load(&self) -> io::Result<Vec<JobRecord>> {
        self.cluster.wait(async {
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
        })
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn create(&self, record: &JobRecord, input: Option<&[u8]>) -> io::Result<()> {
        if let Some(input) = input {
            self.cluster.wait(objects::write(
                &self.files.store,
                &file(&record.service, &record.name, "input"),
                input,
            ))?;
        }
        self.put(record)
    }

    fn save(&self, record: &JobRecord) -> io::Result<()> {
        self.put(record)
    }

    fn append_log(&self, service: &str, job: &str, text: &str) -> io::Result<()> {
        let name = file(service, job, "log");
        self.cluster.wait(async {
            let mut log = objects::read(&self.files, &name).await?.unwrap_or_default();
            log.extend_from_slice(text.as_bytes());
            objects::write(&self.files.store, &name, &log).await
        })
    }

    fn read_log(&self, service: &str, job: &str) -> io::Result<String> {
        let log = self
            .cluster
            .wait(objects::read(&self.files, &file(service, job, "log")))?;
        Ok(String::from_utf8_lossy(&log.unwrap_or_default()).into_owned())
    }

    fn read_input(&self, service: &str, job: &str) -> io::Result<Vec<u8>> {
        self.cluster
            .wait(objects::read(&self.files, &file(service, job, "input")))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the job's input is gone"))
    }

    fn write_outputs(&self, service: &str, job: &str, files: &[OutputFile]) -> io::Result<()> {
        let zip = crate::faas::zip_stored(files)?;
        self.cluster.wait(objects::write(
            &self.files.store,
            &file(service, job, "outputs.zip"),
            &zip,
        ))
    }

    fn output_files(&self, service: &str, job: &str) -> io::Result<Vec<OutputFile>> {
        let Some(zip) = self.cluster.wait(objects::read(
            &self.files,
            &file(service, job, "outputs.zip"),
        ))?
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

    fn output_file(&self, service: &str, job: &str, path: &Path) -> io::Result<Option<Vec<u8>>> {
        // Entries are looked up by name: there is no folder to leave.
        let Some(wanted) = path.to_str() else {
            return Ok(None);
        };
        Ok(self
            .output_files(service, job)?
            .into_iter()
            .find(|f| f.path == wanted)
            .map(|f| f.bytes))
    }

    fn remove(&self, service: &str, job: &str) {
        let k = key(service, job);
        let removed = self.cluster.wait(async {
            self.records
                .purge(&k)
                .await
                .map_err(|e| io_error("deleting the job record", e))?;
            for what in ["input", "log", "outputs.zip"] {
                objects::delete(&self.files.store, &file(service, job, what)).await?;
            }
            Ok::<_, io::Error>(())
        });
        if let Err(e) = removed {
            tracing::warn!(service, job, error = %e, "could not remove everything kept for a job");
        }
    }

    fn measure(&self, service: &str, job: &str) -> u64 {
        self.cluster.wait(async {
            let mut total = 0;
            for what in ["input", "log", "outputs.zip"] {
                total += objects::size(&self.files.store, &file(service, job, what))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0);
            }
            total
        })
    }

    fn fetch(&self, service: &str, job: &str) -> io::Result<Option<JobRecord>> {
        let k = key(service, job);
        let entry = self
            .cluster
            .wait(self.records.entry(k.clone()))
            .map_err(|e| io_error("reading the job record", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        Self::note(&self.seen, &k, entry.revision);
        serde_json::from_slice(&entry.value)
            .map(Some)
            .map_err(io::Error::other)
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
                    Ok(record) => RecordChange::Put(record),
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
