//! Usage accounting: what every invocation used (CPU time, wall time, peak linear memory,
//! bytes in and out), measured exactly where it ran ([`meters`]), summed per minute, service,
//! user and channel in a [`ledger::Ledger`], and kept in a [`store::UsageStore`] (files on one
//! machine, a NATS key-value bucket shared by a cluster's servers). OSCAR's `/system/metrics`
//! API answers from it (`crate::api::usage`).
//!
//! Durability: this server's documents are saved every [`SAVE_EVERY`] and at shutdown, so a
//! crash (`kill -9`) forgets at most the invocations of the last [`SAVE_EVERY`]; the
//! invocations themselves (their jobs, their outputs) are not affected.

pub mod ledger;
pub mod meters;
pub mod store;

use ledger::{Folded, HourDoc, Ledger, MINUTE_MS, MINUTES_KEPT};
use meters::Usage;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::UsageStore;

/// How often this server's changed documents are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);
/// Milliseconds in an hour.
const HOUR_MS: u64 = 60 * MINUTE_MS;

/// The server's usage accounts.
pub struct Accounting {
    ledger: Mutex<Ledger>,
    store: Arc<dyn UsageStore>,
    retention: Duration,
}

impl Accounting {
    /// The accounts kept in `store`, with the documents of the last `retention` loaded.
    pub async fn open(
        store: Arc<dyn UsageStore>,
        retention: Duration,
    ) -> Result<Arc<Self>, crate::stores::StoreError> {
        let this = Arc::new(Self {
            ledger: Mutex::new(Ledger::new(store.source())),
            store,
            retention,
        });
        let docs = this.store.load(this.oldest_hour()).await?;
        let mut ledger = this.ledger();
        for doc in docs {
            ledger.apply(doc);
        }
        drop(ledger);
        this.age();
        Ok(this)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first hour kept.
    fn oldest_hour(&self) -> u64 {
        let retention = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        crate::clock::now_ms().saturating_sub(retention) / HOUR_MS
    }

    /// Drops what is past the retention, and keeps older hours at hour resolution.
    fn age(&self) {
        let now_hour = crate::clock::now_ms() / HOUR_MS;
        let oldest = self.oldest_hour();
        self.ledger()
            .age(oldest, now_hour.saturating_sub(MINUTES_KEPT).max(oldest));
    }

    /// Adds a finished invocation.
    pub fn record(&self, usage: &Usage) {
        self.ledger().record(usage);
    }

    /// Totals by service, user and channel of `[start_ms, end_ms)`, for the services `wanted`
    /// admits (minute resolution for the last [`MINUTES_KEPT`] hours, hour resolution before).
    pub fn fold(&self, start_ms: u64, end_ms: u64, wanted: impl Fn(&str) -> bool) -> Folded {
        self.ledger().fold(start_ms, end_ms, wanted)
    }

    /// Saves this server's changed documents. One that fails is saved at the next call.
    pub async fn save(&self) -> Result<(), crate::stores::StoreError> {
        let docs = self.ledger().take_dirty();
        let mut failed = None;
        for doc in docs {
            if let Err(e) = self.store.save(&doc).await {
                self.ledger().mark_dirty(doc.hour);
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Saves every [`SAVE_EVERY`] until `stopped`, then once more; ages the ledger and the
    /// store as hours pass; applies other servers' documents as they arrive.
    pub async fn keep(self: Arc<Self>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut others = self.store.follow();
        let mut tick = tokio::time::interval(SAVE_EVERY);
        let mut aged_hour = crate::clock::now_ms() / HOUR_MS;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                doc = next(&mut others) => {
                    match doc {
                        Some(doc) => self.apply(doc),
                        None => others = None,
                    }
                    continue;
                }
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            if let Err(e) = self.save().await {
                tracing::warn!(error = %e, "usage accounts could not be saved; retrying");
            }
            let hour = crate::clock::now_ms() / HOUR_MS;
            if hour != aged_hour {
                aged_hour = hour;
                self.age();
                if let Err(e) = self.store.prune(self.oldest_hour()).await {
                    tracing::warn!(error = %e, "old usage accounts could not be removed");
                }
            }
        }
        if let Err(e) = self.save().await {
            tracing::warn!(error = %e, "usage accounts could not be saved at shutdown");
        }
    }

    /// Takes in another server's document (its own come back too, and are skipped).
    fn apply(&self, doc: HourDoc) {
        let mut ledger = self.ledger();
        if doc.source != ledger.me() {
            ledger.apply(doc);
        }
    }
}

/// The next document from a followed store; pending forever when there is none.
async fn next(
    others: &mut Option<tokio::sync::mpsc::UnboundedReceiver<HourDoc>>,
) -> Option<HourDoc> {
    match others {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
