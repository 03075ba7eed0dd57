//! The ledger: every server's usage, summed per minute, service, user and channel, and kept
//! in documents of one hour of one server ([`HourDoc`]). This server adds its own invocations
//! to its current hour's document; documents from the store (at start) and from other servers
//! (in a cluster) replace what the ledger held for that hour and server, so applying one twice
//! counts nothing twice. Queries add up the rows of a time range.
//!
//! Bounded: a document holds at most [`MAX_ROWS`] rows (about 100 bytes each in JSON, well
//! under NATS's 1 MiB message; past it the hour is rolled up, then new keys are summed into one
//! `(others)` row of the hour), hours older than the retention are dropped, and hours older
//! than [`MINUTES_KEPT`] are rolled up into one row per key, so memory does not grow with
//! traffic.

use super::meters::{Channel, Totals, Usage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Milliseconds in a minute.
pub const MINUTE_MS: u64 = 60_000;
/// Minutes in an hour.
const HOUR_MINUTES: u64 = 60;
/// Rows one server's hour may hold.
pub const MAX_ROWS: usize = 5_000;
/// Hours kept at minute resolution; older hours are kept at hour resolution.
pub const MINUTES_KEPT: u64 = 48;
/// The service and user that rows past [`MAX_ROWS`] are summed into.
pub const OVERFLOW: &str = "(others)";

/// One row: a minute (or, rolled up, an hour's first minute) of one service, user and
/// channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Minutes since the Unix epoch.
    #[serde(rename = "m")]
    pub minute: u64,
    /// The service.
    #[serde(rename = "s")]
    pub service: String,
    /// The user it is accounted to.
    #[serde(rename = "u")]
    pub user: String,
    /// Sync, async or exposed.
    #[serde(rename = "c")]
    pub channel: Channel,
    /// The sums.
    #[serde(flatten)]
    pub totals: Totals,
}

/// One server's rows of one hour: the unit the store keeps and servers exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourDoc {
    /// Hours since the Unix epoch.
    pub hour: u64,
    /// The server that wrote it (`local` on one machine, a member's id in a cluster).
    pub source: String,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// A row's identity inside a document.
type Key = (u64, String, String, Channel);
/// Totals by service, user and channel: what a query answers.
pub type Folded = HashMap<(String, String, Channel), Totals>;

/// Every server's hours in memory.
pub struct Ledger {
    hours: BTreeMap<u64, HashMap<String, HashMap<Key, Totals>>>,
    me: String,
    dirty: BTreeSet<u64>,
    /// Hours below this are rolled up already.
    rolled_below: u64,
    /// This server's hours rolled up early, their document having filled.
    coarse: BTreeSet<u64>,
}

/// Rows of `hour` summed per service, user and channel, dated at the hour's first minute.
fn roll_up(rows: HashMap<Key, Totals>, hour: u64) -> HashMap<Key, Totals> {
    let mut rolled: HashMap<Key, Totals> = HashMap::new();
    for ((_, service, user, channel), totals) in rows {
        rolled
            .entry((hour * HOUR_MINUTES, service, user, channel))
            .or_default()
            .add(&totals);
    }
    rolled
}

impl Ledger {
    /// An empty ledger of the server called `me`.
    pub fn new(me: impl Into<String>) -> Self {
        Self {
            hours: BTreeMap::new(),
            me: me.into(),
            dirty: BTreeSet::new(),
            rolled_below: 0,
            coarse: BTreeSet::new(),
        }
    }

    /// This server's name in the documents.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Adds one of this server's invocations. A full document is first rolled up to hour
    /// resolution for the rest of its hour; a key that still finds no room is summed into the
    /// hour's `(others)` row.
    pub fn record(&mut self, usage: &Usage) {
        let mut minute = usage.at_ms / MINUTE_MS;
        let hour = minute / HOUR_MINUTES;
        if self.coarse.contains(&hour) {
            minute = hour * HOUR_MINUTES;
        }
        let mut key = (
            minute,
            usage.service.clone(),
            usage.user.clone(),
            usage.channel,
        );
        let rows = self
            .hours
            .entry(hour)
            .or_default()
            .entry(self.me.clone())
            .or_default();
        if rows.len() >= MAX_ROWS && !rows.contains_key(&key) && self.coarse.insert(hour) {
            *rows = roll_up(std::mem::take(rows), hour);
            key.0 = hour * HOUR_MINUTES;
        }
        if rows.len() >= MAX_ROWS && !rows.contains_key(&key) {
            key = (
                hour * HOUR_MINUTES,
                OVERFLOW.into(),
                OVERFLOW.into(),
                usage.channel,
            );
        }
        rows.entry(key)
            .or_default()
            .add(&Totals::of(usage.ok, &usage.meters));
        self.dirty.insert(hour);
    }

    /// Takes in a document: the store's at start, another server's in a cluster. It replaces
    /// what was held for its hour and server (rows past [`MAX_ROWS`] are dropped).
    pub fn apply(&mut self, doc: HourDoc) {
        let mut rows: HashMap<Key, Totals> = HashMap::with_capacity(doc.rows.len().min(MAX_ROWS));
        for row in doc.rows.into_iter().take(MAX_ROWS) {
            rows.entry((row.minute, row.service, row.user, row.channel))
                .or_default()
                .add(&row.totals);
        }
        self.hours
            .entry(doc.hour)
            .or_default()
            .insert(doc.source, rows);
    }

    /// Marks this server's document of `hour` as changed (its save failed).
    pub fn mark_dirty(&mut self, hour: u64) {
        self.dirty.insert(hour);
    }

    /// This server's documents changed since the last call, to be saved.
    pub fn take_dirty(&mut self) -> Vec<HourDoc> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|hour| HourDoc {
                hour,
                source: self.me.clone(),
                rows: self
                    .hours
                    .get(&hour)
                    .and_then(|sources| sources.get(&self.me))
                    .map(|rows| {
                        rows.iter()
                            .map(|((minute, service, user, channel), totals)| Row {
                                minute: *minute,
                                service: service.clone(),
                                user: user.clone(),
                                channel: *channel,
                                totals: *totals,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Drops hours before `oldest_hour` and rolls up hours before `minutes_from_hour` into one
    /// row per key.
    pub fn age(&mut self, oldest_hour: u64, minutes_from_hour: u64) {
        self.hours = self.hours.split_off(&oldest_hour);
        let start = self.rolled_below.max(oldest_hour);
        if start >= minutes_from_hour {
            return;
        }
        for (hour, sources) in self.hours.range_mut(start..minutes_from_hour) {
            for rows in sources.values_mut() {
                *rows = roll_up(std::mem::take(rows), *hour);
            }
        }
        self.coarse = self.coarse.split_off(&oldest_hour);
        self.rolled_below = self.rolled_below.max(minutes_from_hour);
    }

    /// Totals by service, user and channel of the rows whose minute starts in
    /// `[start_ms, end_ms)`, over every server, for the services `wanted` admits.
    pub fn fold(&self, start_ms: u64, end_ms: u64, wanted: impl Fn(&str) -> bool) -> Folded {
        let mut folded = Folded::new();
        if end_ms <= start_ms {
            return folded;
        }
        let first_hour = start_ms / MINUTE_MS / HOUR_MINUTES;
        let last_hour = (end_ms - 1) / MINUTE_MS / HOUR_MINUTES;
        for sources in self.hours.range(first_hour..=last_hour).map(|(_, s)| s) {
            for rows in sources.values() {
                for ((minute, service, user, channel), totals) in rows {
                    let at = minute * MINUTE_MS;
                    if at < start_ms || at >= end_ms || !wanted(service) {
                        continue;
                    }
                    folded
                        .entry((service.clone(), user.clone(), *channel))
                        .or_default()
                        .add(totals);
                }
            }
        }
        folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::meters::Meters;
    use std::time::Duration;

    fn usage(at_ms: u64, service: &str, user: &str, channel: Channel) -> Usage {
        Usage {
            at_ms,
            service: service.into(),
            user: user.into(),
            channel,
            ok: true,
            meters: Meters {
                cpu: Duration::from_millis(1),
                wall: Duration::from_millis(2),
                peak_memory: 65536,
                bytes_in: 3,
                bytes_out: 4,
            },
        }
    }

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn folds_only_the_rows_in_the_range_and_the_services_wanted() {
        let mut ledger = Ledger::new("local");
        ledger.record(&usage(T, "a", "alice", Channel::Sync));
        ledger.record(&usage(T + 1, "a", "alice", Channel::Sync));
        ledger.record(&usage(T + 2 * MINUTE_MS, "a", "bob", Channel::Async));
        ledger.record(&usage(T, "b", "alice", Channel::Sync));
        let start = T / MINUTE_MS * MINUTE_MS;
        let all = ledger.fold(start, start + 3 * MINUTE_MS, |_| true);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[&("a".into(), "alice".into(), Channel::Sync)].invocations,
            2
        );
        assert_eq!(
            all[&("a".into(), "alice".into(), Channel::Sync)].cpu_ns,
            2_000_000
        );
        let first_minute = ledger.fold(start, start + MINUTE_MS, |s| s == "a");
        assert_eq!(first_minute.len(), 1);
        assert!(
            ledger
                .fold(start + 3 * MINUTE_MS, start + 9 * MINUTE_MS, |_| true)
                .is_empty()
        );
        assert!(ledger.fold(start + MINUTE_MS, start, |_| true).is_empty());
    }

    #[test]
    fn a_document_applied_twice_counts_once_and_replaces_its_servers_hour() {
        let mut here = Ledger::new("one");
        here.record(&usage(T, "a", "", Channel::Sync));
        let docs = here.take_dirty();
        assert_eq!(docs.len(), 1);
        assert!(here.take_dirty().is_empty(), "nothing changed since");
        let mut there = Ledger::new("two");
        there.record(&usage(T, "a", "", Channel::Sync));
        there.apply(docs[0].clone());
        there.apply(docs[0].clone());
        let hour_start = T / (60 * MINUTE_MS) * 60 * MINUTE_MS;
        let folded = there.fold(hour_start, hour_start + 60 * MINUTE_MS, |_| true);
        assert_eq!(
            folded[&("a".into(), "".into(), Channel::Sync)].invocations,
            2
        );
        here.record(&usage(T, "a", "", Channel::Sync));
        there.apply(here.take_dirty().remove(0));
        let folded = there.fold(hour_start, hour_start + 60 * MINUTE_MS, |_| true);
        assert_eq!(
            folded[&("a".into(), "".into(), Channel::Sync)].invocations,
            3
        );
    }

    #[test]
    fn a_full_hour_is_rolled_up_then_new_keys_go_to_others() {
        let mut ledger = Ledger::new("local");
        // Two minutes of the same keys: rolling the hour up halves them.
        for minute in 0..2 {
            for i in 0..MAX_ROWS / 2 {
                ledger.record(&usage(
                    T + minute * MINUTE_MS,
                    &format!("s{i}"),
                    "",
                    Channel::Sync,
                ));
            }
        }
        ledger.record(&usage(T + 2 * MINUTE_MS, "new", "", Channel::Sync));
        let doc = ledger.take_dirty().remove(0);
        assert_eq!(
            doc.rows.len(),
            MAX_ROWS / 2 + 1,
            "rolled up to one row per key"
        );
        assert!(doc.rows.iter().all(|r| r.minute == T / MINUTE_MS));
        for i in 0..MAX_ROWS {
            ledger.record(&usage(T, &format!("more{i}"), "", Channel::Sync));
        }
        let doc = ledger.take_dirty().remove(0);
        assert_eq!(doc.rows.len(), MAX_ROWS + 1);
        let others = doc.rows.iter().find(|r| r.service == OVERFLOW).unwrap();
        assert_eq!(others.totals.invocations, (MAX_ROWS / 2 + 1) as u64);
        let total: u64 = doc.rows.iter().map(|r| r.totals.invocations).sum();
        assert_eq!(total, MAX_ROWS as u64 + 1 + MAX_ROWS as u64);
    }

    #[test]
    fn ageing_drops_old_hours_and_rolls_up_the_middle_ones() {
        let mut ledger = Ledger::new("local");
        let hour = T / MINUTE_MS / 60;
        ledger.record(&usage(T, "a", "", Channel::Sync));
        ledger.record(&usage(T + 60 * MINUTE_MS, "a", "", Channel::Sync));
        ledger.record(&usage(
            T + 60 * MINUTE_MS + MINUTE_MS,
            "a",
            "",
            Channel::Sync,
        ));
        ledger.record(&usage(T + 120 * MINUTE_MS, "a", "", Channel::Sync));
        ledger.age(hour + 1, hour + 2);
        let start = hour * 60 * MINUTE_MS;
        let all = ledger.fold(start, start + 180 * MINUTE_MS, |_| true);
        assert_eq!(all[&("a".into(), "".into(), Channel::Sync)].invocations, 3);
        // The rolled-up hour counts from its first minute.
        let second_hour = (hour + 1) * 60 * MINUTE_MS;
        let first_minute = ledger.fold(second_hour, second_hour + MINUTE_MS, |_| true);
        assert_eq!(
            first_minute[&("a".into(), "".into(), Channel::Sync)].invocations,
            2
        );
    }
}
