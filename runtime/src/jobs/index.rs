//! The job store's in-memory index: every record by service and name, with what admission,
//! retention, listings and the gauges need kept up to date as records change (counts, byte
//! sums and oldest-first orders), so that no submit, run or finish walks the records: each
//! change costs O(log n) whatever the number of jobs stored or queued.

use super::record::{JobRecord, Origin, Status};
use std::collections::{BTreeSet, HashMap};

/// A record's place in its service's age order: oldest first, ties by name.
type Age = (u64, String);

/// The object version a poller's job was made for: bucket, key, version.
type Version = (String, String, String);

fn version(record: &JobRecord) -> Option<Version> {
    let trigger = record.trigger.as_ref()?;
    let version = trigger.version.clone()?;
    Some((trigger.bucket.clone(), trigger.key.clone(), version))
}

fn age(record: &JobRecord) -> Age {
    (record.created_ms, record.name.clone())
}

/// One service's records and their running sums.
#[derive(Default)]
pub struct ServiceJobs {
    records: HashMap<String, JobRecord>,
    /// Every record, oldest first (listings).
    order: BTreeSet<Age>,
    /// Finished jobs, oldest first: the ones retention removes first.
    finished_jobs: BTreeSet<Age>,
    /// Finished failed synchronous runs, oldest first.
    finished_runs: BTreeSet<Age>,
    /// Jobs (origin `job`), finished or not, and their bytes.
    jobs: usize,
    job_bytes: u64,
    /// Unfinished jobs and their bytes (the pending limits).
    unfinished: usize,
    unfinished_bytes: u64,
    /// Jobs made by a poller, by the object version they were made for: how many of each
    /// (the poller asks whether a version has its job without walking the records).
    versions: HashMap<Version, usize>,
}

impl ServiceJobs {
    /// Unfinished jobs of the service and the bytes they hold.
    pub fn unfinished(&self) -> (usize, u64) {
        (self.unfinished, self.unfinished_bytes)
    }

    /// Whether a job was made for this version of `bucket/key`.
    pub fn has_version(&self, bucket: &str, key: &str, version: &str) -> bool {
        self.versions
            .contains_key(&(bucket.to_string(), key.to_string(), version.to_string()))
    }

    fn add(&mut self, record: JobRecord) {
        let key = age(&record);
        if let Some(version) = version(&record) {
            *self.versions.entry(version).or_default() += 1;
        }
        if record.origin == Origin::Job {
            self.jobs += 1;
            self.job_bytes = self.job_bytes.saturating_add(record.bytes);
            if record.status.is_finished() {
                self.finished_jobs.insert(key.clone());
            } else {
                self.unfinished += 1;
                self.unfinished_bytes = self.unfinished_bytes.saturating_add(record.bytes);
            }
        } else if record.status.is_finished() {
            self.finished_runs.insert(key.clone());
        }
        self.order.insert(key);
        self.records.insert(record.name.clone(), record);
    }

    fn take(&mut self, name: &str) -> Option<JobRecord> {
        let record = self.records.remove(name)?;
        let key = age(&record);
        if let Some(version) = version(&record)
            && let Some(count) = self.versions.get_mut(&version)
        {
            *count -= 1;
            if *count == 0 {
                self.versions.remove(&version);
            }
        }
        if record.origin == Origin::Job {
            self.jobs -= 1;
            self.job_bytes = self.job_bytes.saturating_sub(record.bytes);
            if record.status.is_finished() {
                self.finished_jobs.remove(&key);
            } else {
                self.unfinished -= 1;
                self.unfinished_bytes = self.unfinished_bytes.saturating_sub(record.bytes);
            }
        } else {
            self.finished_runs.remove(&key);
        }
        self.order.remove(&key);
        Some(record)
    }

    /// The finished records retention removes, oldest first: failed runs beyond `max_runs`,
    /// then finished jobs while there are more than `max_jobs` jobs or more than `max_bytes`
    /// bytes of them. Costs what it returns, not what is stored.
    pub fn over_retention(&self, max_runs: usize, max_jobs: usize, max_bytes: u64) -> Vec<String> {
        let excess_runs = self.finished_runs.len().saturating_sub(max_runs);
        let mut doomed: Vec<String> = self
            .finished_runs
            .iter()
            .take(excess_runs)
            .map(|(_, name)| name.clone())
            .collect();
        let mut excess_jobs = self.jobs.saturating_sub(max_jobs);
        let mut bytes = self.job_bytes;
        for (_, name) in &self.finished_jobs {
            if excess_jobs == 0 && bytes <= max_bytes {
                break;
            }
            excess_jobs = excess_jobs.saturating_sub(1);
            bytes = bytes.saturating_sub(self.records.get(name).map_or(0, |r| r.bytes));
            doomed.push(name.clone());
        }
        doomed
    }
}

/// Every job of every service, with server-wide counts.
#[derive(Default)]
pub struct Index {
    services: HashMap<String, ServiceJobs>,
    /// Jobs (origin `job`) by status, all services together.
    by_status: HashMap<Status, usize>,
}

impl Index {
    /// Adds or replaces a record.
    pub fn put(&mut self, record: JobRecord) {
        self.remove(&record.service, &record.name);
        if record.origin == Origin::Job {
            *self.by_status.entry(record.status).or_default() += 1;
        }
        self.services
            .entry(record.service.clone())
            .or_default()
            .add(record);
    }

    /// Removes a record; `None` if there was none.
    pub fn remove(&mut self, service: &str, job: &str) -> Option<JobRecord> {
        let jobs = self.services.get_mut(service)?;
        let record = jobs.take(job)?;
        if jobs.records.is_empty() {
            self.services.remove(service);
        }
        self.forget_status(&record);
        Some(record)
    }

    /// Removes every record of a service.
    pub fn remove_service(&mut self, service: &str) -> Vec<JobRecord> {
        let records: Vec<JobRecord> = self
            .services
            .remove(service)
            .map(|j| j.records.into_values().collect())
            .unwrap_or_default();
        for record in &records {
            self.forget_status(record);
        }
        records
    }

    fn forget_status(&mut self, record: &JobRecord) {
        if record.origin == Origin::Job
            && let Some(count) = self.by_status.get_mut(&record.status)
        {
            *count = count.saturating_sub(1);
        }
    }

    /// One record.
    pub fn get(&self, service: &str, job: &str) -> Option<&JobRecord> {
        self.services.get(service)?.records.get(job)
    }

    /// A service's records and sums.
    pub fn service(&self, service: &str) -> Option<&ServiceJobs> {
        self.services.get(service)
    }

    /// A service's records, oldest first.
    pub fn list(&self, service: &str) -> Vec<JobRecord> {
        let Some(jobs) = self.services.get(service) else {
            return Vec::new();
        };
        jobs.order
            .iter()
            .filter_map(|(_, name)| jobs.records.get(name).cloned())
            .collect()
    }

    /// Jobs (failed synchronous runs not counted) by status, all services together.
    pub fn counts(&self) -> &HashMap<Status, usize> {
        &self.by_status
    }

    /// Unfinished jobs, all services together.
    pub fn unfinished_total(&self) -> usize {
        [Status::Pending, Status::Running]
            .iter()
            .map(|s| self.by_status.get(s).copied().unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        service: &str,
        name: &str,
        created: u64,
        origin: Origin,
        status: Status,
    ) -> JobRecord {
        JobRecord {
            name: name.into(),
            service: service.into(),
            origin,
            status,
            created_ms: created,
            started_ms: None,
            finished_ms: None,
            attempts: 0,
            outcome: None,
            bytes: 10,
            trigger: None,
            traceparent: None,
            user: None,
        }
    }

    #[test]
    fn sums_follow_every_change() {
        let mut index = Index::default();
        index.put(record("a", "a-1", 1, Origin::Job, Status::Pending));
        index.put(record("a", "a-2", 2, Origin::Job, Status::Pending));
        index.put(record("b", "b-1", 3, Origin::Job, Status::Running));
        index.put(record("a", "a-run", 4, Origin::Run, Status::Failed));
        assert_eq!(index.unfinished_total(), 3);
        assert_eq!(index.service("a").unwrap().unfinished(), (2, 20));
        // Replacing a record moves it between the sums.
        index.put(record("a", "a-1", 1, Origin::Job, Status::Succeeded));
        assert_eq!(index.service("a").unwrap().unfinished(), (1, 10));
        assert_eq!(index.counts().get(&Status::Succeeded), Some(&1));
        assert_eq!(index.counts().get(&Status::Pending), Some(&1));
        assert_eq!(index.unfinished_total(), 2);
        let names: Vec<_> = index.list("a").into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a-1", "a-2", "a-run"]);
        assert!(index.remove("a", "a-2").is_some());
        assert!(index.remove("a", "a-2").is_none());
        assert_eq!(index.service("a").unwrap().unfinished(), (0, 0));
        assert_eq!(index.remove_service("b").len(), 1);
        assert_eq!(index.unfinished_total(), 0);
        assert_eq!(index.counts().get(&Status::Running), Some(&0));
    }

    #[test]
    fn object_versions_are_counted_until_their_last_job_goes() {
        let polled = |name: &str, version: &str| {
            let mut r = record("p", name, 1, Origin::Job, Status::Pending);
            let mut event = crate::storage::minio_event("b", "in/x.txt");
            event.version = Some(version.into());
            r.trigger = Some(event);
            r
        };
        let mut index = Index::default();
        index.put(polled("p-1", "v1"));
        index.put(polled("p-2", "v1"));
        index.put(polled("p-3", "v2"));
        let has =
            |index: &Index, v: &str| index.service("p").unwrap().has_version("b", "in/x.txt", v);
        assert!(has(&index, "v1") && has(&index, "v2"));
        assert!(
            !index
                .service("p")
                .unwrap()
                .has_version("b", "in/y.txt", "v1")
        );
        // A record replaced (its status changed) is counted once.
        let mut done = polled("p-1", "v1");
        done.status = Status::Succeeded;
        index.put(done);
        index.remove("p", "p-1");
        assert!(has(&index, "v1"), "p-2 still holds v1");
        index.remove("p", "p-2");
        assert!(!has(&index, "v1") && has(&index, "v2"));
    }

    #[test]
    fn retention_picks_the_oldest_finished_only() {
        let mut index = Index::default();
        for i in 0..5 {
            index.put(record(
                "s",
                &format!("j{i}"),
                i,
                Origin::Job,
                Status::Succeeded,
            ));
            index.put(record(
                "s",
                &format!("r{i}"),
                i,
                Origin::Run,
                Status::Failed,
            ));
        }
        index.put(record("s", "pending", 0, Origin::Job, Status::Pending));
        let jobs = index.service("s").unwrap();
        // Six jobs, keep three: the three oldest finished go; the pending one stays.
        assert_eq!(
            jobs.over_retention(4, 3, u64::MAX),
            ["r0", "j0", "j1", "j2"]
        );
        // 60 bytes of jobs, keep 35: three finished ones go.
        assert_eq!(jobs.over_retention(5, 100, 35), ["j0", "j1", "j2"]);
        assert!(jobs.over_retention(5, 100, u64::MAX).is_empty());
    }
}
