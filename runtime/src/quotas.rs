//! Per-user quotas, OSCAR's `/system/quotas` (there, a Kueue ClusterQueue per user): the CPU
//! (millicores) and memory (bytes) that a user's running invocations may hold at once, and,
//! our own, how many may run at once. An invocation holds its service's `cpu` (OSCAR's
//! default 0.2 when unset) and its memory limit while it runs, as a Kueue workload holds its
//! pods' requests; one that does not fit is refused with 429 naming the quota (a synchronous
//! call or an HTTP request) or waits in its queue (a job, as Kueue keeps a workload pending).
//!
//! Limits are set by the administrator per user (`PUT /system/quotas/user/{id}`), kept as the
//! document `user-quotas` ([`crate::documents`]: a file, or shared by a cluster), with
//! defaults for every other user from the `--quota-*` flags. What is in use is counted by
//! each server for the invocations it runs: in a cluster, a user's quota holds per server.

use crate::documents::{Document, DocumentStore};
use crate::stores::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The quotas' document name.
pub const DOCUMENT: &str = "user-quotas";
/// Most users with quotas of their own.
pub const MAX_USERS: usize = 100_000;
/// The CPU an invocation of a service without `cpu` holds: OSCAR's default.
pub const DEFAULT_CPU_MILLICORES: u64 = 200;

/// Millicores from a CPU quantity as Kubernetes writes it (`"2"`, `"0.5"`, `"1500m"`).
pub fn parse_millicores(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let millicores = match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>(),
        None => text.parse::<f64>().map(|cores| cores * 1000.0),
    };
    match millicores {
        Ok(m) if (1.0..=1e15).contains(&m) => Ok(m.ceil() as u64),
        _ => Err(format!(
            "{text:?} is not a CPU quantity of at least 1m, such as \"2\", \"0.5\" or \"1500m\""
        )),
    }
}

/// A user's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Millicores held at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    /// Bytes of memory held at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Invocations running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<u64>,
}

impl Limits {
    /// `self`'s limits, each falling back to `defaults`'.
    fn or(self, defaults: Limits) -> Limits {
        Limits {
            cpu: self.cpu.or(defaults.cpu),
            memory: self.memory.or(defaults.memory),
            invocations: self.invocations.or(defaults.invocations),
        }
    }
}

/// A user's bucket quotas, OSCAR's `minio` block: how many buckets of the store they may own,
/// and the bytes each may hold. Unset is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketLimits {
    /// Buckets owned at once (0: none may be made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u64>,
    /// Bytes per bucket, as given (`"100Gi"`): OSCAR answers it as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_per_bucket: Option<String>,
}

impl BucketLimits {
    /// The per-bucket limit in bytes (`"0"`, OSCAR's default, is none).
    pub fn storage_bytes(&self) -> Option<u64> {
        self.storage_per_bucket
            .as_deref()
            .and_then(|text| crate::quantity::parse(text).ok())
            .filter(|bytes| *bytes > 0)
    }
}

/// A bucket refused for the `minio.buckets` quota, in OSCAR's words.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "MinIO bucket quota exceeded for user {user}: limit {limit}, current {current}, requested new buckets {requested}"
)]
pub struct BucketsExceeded {
    /// Whose.
    pub user: String,
    /// The limit.
    pub limit: u64,
    /// Buckets the user owns.
    pub current: usize,
    /// Buckets the request would add.
    pub requested: usize,
}

/// The stored document: each user's own limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Limits by user (OIDC subject, or an owner name).
    #[serde(default)]
    pub users: BTreeMap<String, Limits>,
    /// Bucket limits by user.
    #[serde(default)]
    pub minio: BTreeMap<String, BucketLimits>,
}

/// What a user's running invocations hold on this server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Millicores.
    pub cpu: u64,
    /// Bytes of memory.
    pub memory: u64,
    /// Invocations.
    pub invocations: u64,
}

/// An invocation refused for a quota.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "user {user}'s {quota} quota is {max}{unit}, {used}{unit} in use by running invocations, and this invocation needs {asked}{unit} (GET /system/quotas/user shows the quotas)"
)]
pub struct Exceeded {
    /// Whose.
    pub user: String,
    /// Which: `cpu`, `memory` or `invocations`.
    pub quota: &'static str,
    /// Its limit.
    pub max: u64,
    /// In use.
    pub used: u64,
    /// What the invocation needs.
    pub asked: u64,
    /// The unit, as shown.
    pub unit: &'static str,
}

/// The quotas, their use, and who waits for them.
pub struct Quotas {
    document: Document<Stored>,
    defaults: Limits,
    held: Mutex<HashMap<String, Held>>,
    freed: tokio::sync::Notify,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Quotas {
    /// The quotas kept in `store`, with `defaults` for users without their own.
    pub async fn open(
        store: Arc<dyn DocumentStore>,
        defaults: Limits,
    ) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            document: Document::open(store, DOCUMENT).await?,
            defaults,
            held: Mutex::default(),
            freed: tokio::sync::Notify::new(),
        }))
    }

    /// `user`'s limits: their own, else the defaults. The administrator's own services
    /// (owner `cluster_admin`) and unattributed invocations have none unless set.
    pub fn limits(&self, user: &str) -> Limits {
        let own = self.document.read(|stored| stored.users.get(user).copied());
        match own {
            Some(own) => own.or(self.defaults),
            None if user.is_empty() || user == crate::oscar_definition::ADMIN_OWNER => {
                Limits::default()
            }
            None => self.defaults,
        }
    }

    /// What `user`'s invocations hold on this server now.
    pub fn held(&self, user: &str) -> Held {
        self.lock().get(user).copied().unwrap_or_default()
    }

    /// `user`'s bucket limits.
    pub fn bucket_limits(&self, user: &str) -> BucketLimits {
        self.document
            .read(|stored| stored.minio.get(user).cloned())
            .unwrap_or_default()
    }

    /// Whether any user has a `storage_per_bucket` limit: when none has, a write into the
    /// store needs no look-up of its bucket's owner.
    pub fn any_storage_limit(&self) -> bool {
        self.document.read(|stored| {
            stored
                .minio
                .values()
                .any(|limits| limits.storage_bytes().is_some())
        })
    }

    /// Refuses `requested` new buckets for `user`, who owns `owned`, past their `buckets`
    /// quota (OSCAR's ValidateMinIOBucketCountQuota: buckets already owned are not new).
    pub fn check_new_buckets(
        &self,
        user: &str,
        owned: &std::collections::BTreeSet<String>,
        requested: &[String],
    ) -> Result<(), BucketsExceeded> {
        let Some(limit) = self.bucket_limits(user).buckets else {
            return Ok(());
        };
        let new: std::collections::BTreeSet<&String> =
            requested.iter().filter(|b| !owned.contains(*b)).collect();
        if new.is_empty() || (owned.len() + new.len()) as u64 <= limit {
            return Ok(());
        }
        Err(BucketsExceeded {
            user: user.to_string(),
            limit,
            current: owned.len(),
            requested: new.len(),
        })
    }

    /// Sets `user`'s own limits and bucket limits (`None` fields keep theirs); stored before
    /// memory follows.
    pub async fn set(
        &self,
        user: &str,
        given: Limits,
        buckets: BucketLimits,
    ) -> Result<(), QuotaSetError> {
        let full = self
            .document
            .update(|stored| {
                let known = stored.users.contains_key(user) || stored.minio.contains_key(user);
                if !known && stored.users.len().max(stored.minio.len()) >= MAX_USERS {
                    return false;
                }
                if given != Limits::default() {
                    let entry = stored.users.entry(user.to_string()).or_default();
                    *entry = given.or(*entry);
                }
                if buckets != BucketLimits::default() {
                    let entry = stored.minio.entry(user.to_string()).or_default();
                    if buckets.buckets.is_some() {
                        entry.buckets = buckets.buckets;
                    }
                    if buckets.storage_per_bucket.is_some() {
                        entry.storage_per_bucket = buckets.storage_per_bucket.clone();
                    }
                }
                true
            })
            .await?;
        // Raised limits may let waiting jobs run; lowered ones may fail those that never fit.
        self.freed.notify_waiters();
        if full {
            Ok(())
        } else {
            Err(QuotaSetError::TooMany)
        }
    }

    /// Applies another server's version of the document.
    pub fn apply(&self, bytes: &[u8], revision: crate::documents::Revision) -> bool {
        let applied = self.document.apply(bytes, revision);
        // Raised limits may let waiting jobs run.
        self.freed.notify_waiters();
        applied
    }

    /// Takes `need` from `user`'s quotas, or says which quota it does not fit.
    pub fn try_take(&self, user: &str, need: Held) -> Result<Taken, Exceeded> {
        let limits = self.limits(user);
        let mut held = self.lock();
        let now = held.get(user).copied().unwrap_or_default();
        check(user, limits, now, need)?;
        let entry = held.entry(user.to_string()).or_default();
        // Saturating: a limitless user's shares may be huge (`cpu: "1e300"` asks u64::MAX).
        entry.cpu = entry.cpu.saturating_add(need.cpu);
        entry.memory = entry.memory.saturating_add(need.memory);
        entry.invocations = entry.invocations.saturating_add(need.invocations);
        Ok(Taken {
            quotas: None,
            user: user.to_string(),
            need,
        })
    }

    /// Whether `need` would fit `user`'s quotas now, taking nothing; also when it could never
    /// fit (it needs more than a limit): running it is what fails it, with the reason.
    pub fn fits(&self, user: &str, need: Held) -> bool {
        let now = self.held(user);
        match check(user, self.limits(user), now, need) {
            Ok(()) => true,
            Err(e) => e.asked > e.max,
        }
    }

    /// Returns once [`Quotas::fits`] holds for `need`: a job waits here, away from the job
    /// workers, until its user's running invocations leave it room.
    pub async fn until_fits(&self, user: &str, need: Held) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.fits(user, need) {
                return;
            }
            freed.await;
        }
    }

    /// Takes `need` from `user`'s quotas once it fits, waiting for running invocations to
    /// end meanwhile. Refused at once when it could never fit (it needs more than the limit).
    pub async fn take(self: &Arc<Self>, user: &str, need: Held) -> Result<Taken, Exceeded> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_take(user, need) {
                Ok(taken) => return Ok(taken.returned_to(self)),
                Err(e) if e.asked > e.max => return Err(e),
                Err(_) => freed.await,
            }
        }
    }

    /// [`Quotas::try_take`], given back when the returned value is dropped.
    pub fn take_now(self: &Arc<Self>, user: &str, need: Held) -> Result<Taken, Exceeded> {
        self.try_take(user, need)
            .map(|taken| taken.returned_to(self))
    }

    fn give_back(&self, user: &str, need: Held) {
        let mut held = self.lock();
        if let Some(entry) = held.get_mut(user) {
            entry.cpu = entry.cpu.saturating_sub(need.cpu);
            entry.memory = entry.memory.saturating_sub(need.memory);
            entry.invocations = entry.invocations.saturating_sub(need.invocations);
            if *entry == Held::default() {
                held.remove(user);
            }
        }
        drop(held);
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refuses `need` on top of `now` past one of `limits`, naming it.
fn check(user: &str, limits: Limits, now: Held, need: Held) -> Result<(), Exceeded> {
    let checks = [
        ("cpu", limits.cpu, now.cpu, need.cpu, "m"),
        ("memory", limits.memory, now.memory, need.memory, " bytes"),
        (
            "invocations",
            limits.invocations,
            now.invocations,
            need.invocations,
            "",
        ),
    ];
    for (quota, max, used, asked, unit) in checks {
        if let Some(max) = max
            && used.saturating_add(asked) > max
        {
            return Err(Exceeded {
                user: user.to_string(),
                quota,
                max,
                used,
                asked,
                unit,
            });
        }
    }
    Ok(())
}

/// What an invocation holds of its user's quotas while it runs.
#[derive(Debug)]
pub struct Taken {
    quotas: Option<Arc<Quotas>>,
    user: String,
    need: Held,
}

impl Taken {
    fn returned_to(mut self, quotas: &Arc<Quotas>) -> Self {
        self.quotas = Some(quotas.clone());
        self
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(quotas) = self.quotas.take() {
            quotas.give_back(&self.user, self.need);
        }
    }
}

/// Why limits could not be set.
#[derive(Debug, thiserror::Error)]
pub enum QuotaSetError {
    /// The document holds its most users.
    #[error("quotas are kept for at most {MAX_USERS} users")]
    TooMany,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn quotas(defaults: Limits) -> (tempfile::TempDir, Arc<Quotas>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::documents::LocalDocuments::new(dir.path()));
        let quotas = Quotas::open(store, defaults).await.unwrap();
        (dir, quotas)
    }

    fn need(cpu: u64, memory: u64) -> Held {
        Held {
            cpu,
            memory,
            invocations: 1,
        }
    }

    #[test]
    fn cpu_quantities_are_millicores() {
        assert_eq!(parse_millicores("2"), Ok(2000));
        assert_eq!(parse_millicores("0.5"), Ok(500));
        assert_eq!(parse_millicores("1500m"), Ok(1500));
        for bad in ["", "0", "lots", "-1", "0.0001", "1e300"] {
            assert!(parse_millicores(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn invocations_take_and_give_back_what_fits_and_name_what_does_not() {
        let (_dir, quotas) = quotas(Limits::default()).await;
        quotas
            .set(
                "alice",
                Limits {
                    cpu: Some(500),
                    memory: None,
                    invocations: Some(2),
                },
                BucketLimits::default(),
            )
            .await
            .unwrap();
        let first = quotas.take_now("alice", need(200, 10)).unwrap();
        let second = quotas.take_now("alice", need(200, 10)).unwrap();
        let refused = quotas.take_now("alice", need(200, 10)).unwrap_err();
        assert_eq!(
            (refused.quota, refused.max, refused.used),
            ("cpu", 500, 400)
        );
        assert!(
            refused.to_string().contains("cpu quota is 500m"),
            "{refused}"
        );
        // Others are not limited; a set limit holds.
        assert!(quotas.take_now("bob", need(10_000, 1 << 40)).is_ok());
        drop(first);
        assert_eq!(quotas.held("alice"), need(200, 10));
        let third = quotas.take_now("alice", need(300, 10)).unwrap();
        let refused = quotas.take_now("alice", need(0, 0)).unwrap_err();
        assert_eq!(refused.quota, "invocations");
        drop((second, third));
        assert_eq!(quotas.held("alice"), Held::default());
    }

    #[tokio::test]
    async fn defaults_apply_to_users_without_their_own_but_not_the_administrator() {
        let defaults = Limits {
            cpu: None,
            memory: Some(100),
            invocations: Some(1),
        };
        let (dir, quotas) = quotas(defaults).await;
        assert_eq!(quotas.limits("carol"), defaults);
        assert_eq!(
            quotas.limits(crate::oscar_definition::ADMIN_OWNER),
            Limits::default()
        );
        let own = Limits {
            cpu: Some(1000),
            memory: None,
            invocations: Some(4),
        };
        quotas
            .set("carol", own, BucketLimits::default())
            .await
            .unwrap();
        let expected = Limits {
            memory: Some(100),
            ..own
        };
        assert_eq!(quotas.limits("carol"), expected);
        // Kept: another server (or a restart) reads the same.
        let again = Quotas::open(
            Arc::new(crate::documents::LocalDocuments::new(dir.path())),
            defaults,
        )
        .await
        .unwrap();
        assert_eq!(again.limits("carol"), expected);
    }

    #[tokio::test]
    async fn a_waiting_taker_runs_once_another_gives_back_and_one_that_never_fits_is_refused() {
        let (_dir, quotas) = quotas(Limits {
            cpu: None,
            memory: None,
            invocations: Some(1),
        })
        .await;
        let first = quotas.take_now("dave", need(1, 1)).unwrap();
        let waiting = tokio::spawn({
            let quotas = quotas.clone();
            async move { quotas.take("dave", need(1, 1)).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap().unwrap();
        let never = Held {
            cpu: 0,
            memory: 0,
            invocations: 2,
        };
        assert!(quotas.take("dave", never).await.is_err());
    }

    #[tokio::test]
    async fn bucket_counts_follow_oscars_rule() {
        let (_dir, quotas) = quotas(Limits::default()).await;
        let owned: std::collections::BTreeSet<String> = ["a".to_string()].into();
        let ask = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // No limit set: anything goes.
        assert!(!quotas.any_storage_limit());
        assert!(
            quotas
                .check_new_buckets("dan", &owned, &ask(&["b", "c"]))
                .is_ok()
        );
        let limits = BucketLimits {
            buckets: Some(2),
            storage_per_bucket: Some("1Mi".into()),
        };
        quotas.set("dan", Limits::default(), limits).await.unwrap();
        assert_eq!(quotas.bucket_limits("dan").storage_bytes(), Some(1 << 20));
        assert!(quotas.any_storage_limit());
        // One owned and one new fit; an owned one named again is not new.
        assert!(
            quotas
                .check_new_buckets("dan", &owned, &ask(&["a", "b"]))
                .is_ok()
        );
        let e = quotas
            .check_new_buckets("dan", &owned, &ask(&["a", "b", "c"]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "MinIO bucket quota exceeded for user dan: limit 2, current 1, requested new buckets 2"
        );
        // Setting one field keeps the other; the CPU limits are untouched.
        let fewer = BucketLimits {
            buckets: Some(0),
            storage_per_bucket: None,
        };
        quotas.set("dan", Limits::default(), fewer).await.unwrap();
        let now = quotas.bucket_limits("dan");
        assert_eq!((now.buckets, now.storage_bytes()), (Some(0), Some(1 << 20)));
        assert!(
            quotas
                .check_new_buckets("dan", &owned, &ask(&["a"]))
                .is_ok()
        );
        assert!(
            quotas
                .check_new_buckets("dan", &owned, &ask(&["z"]))
                .is_err()
        );
        assert_eq!(quotas.limits("dan"), Limits::default());
    }
}
