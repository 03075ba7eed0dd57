//! Prometheus metrics, served as text at GET /metrics: what was invoked and how it ended, how
//! long it took, how much is waiting and running, and what compiling modules costs.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric of the server, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Invocations by service, kind (`sync`, `job`) and outcome (`success`, `exit`, `trap`,
    /// `timeout`, `limit`, `cancelled`, `error`).
    pub invocations: IntCounterVec,
    /// Run time of invocations by service, in seconds.
    pub duration: HistogramVec,
    /// Guests running now.
    pub running: IntGauge,
    /// Synchronous invocations waiting for a slot.
    pub waiting: IntGauge,
    /// Jobs accepted and not yet started.
    pub jobs_pending: IntGauge,
    /// Jobs kept, by status; in a cluster, every server's (the job store is shared), while
    /// the other metrics are this server's.
    pub jobs: prometheus::IntGaugeVec,
    /// Seconds spent compiling uploaded modules.
    pub compile_seconds: Histogram,
    /// Lookups of a runnable module, by where it was found: `memory`, `artifact` (the on-disk
    /// compiled cache), `compiled` (compiled again).
    pub module_cache: IntCounterVec,
    /// CPU seconds guests used, by service and channel (`sync`, `async`, `exposed`).
    pub cpu_seconds: prometheus::CounterVec,
    /// Bytes into and out of invocations, by service, channel and direction (`in`, `out`).
    pub bytes: IntCounterVec,
    /// Guests' peak linear memory, by service, in bytes.
    pub peak_memory: HistogramVec,
    /// Each service's invocations and failures per minute over the last hour, and its last.
    recent: std::sync::Mutex<std::collections::HashMap<String, Recent>>,
}

/// One service's last hour, a bucket per minute (a ring indexed by the minute).
#[derive(Default, Clone)]
struct Recent {
    minutes: Vec<(u64, u64, u64)>,
    last_ms: u64,
}

/// A service's invocations over the last hour, for the dashboard's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecentStats {
    /// Invocations in the last 60 minutes.
    pub invocations_1h: u64,
    /// Those that did not succeed.
    pub failures_1h: u64,
    /// When the last one ended (ms since the Unix epoch), if any.
    pub last_invocation_ms: Option<u64>,
}

impl Recent {
    fn add(&mut self, now_ms: u64, failed: bool) {
        let minute = now_ms / 60_000;
        if self.minutes.is_empty() {
            self.minutes = vec![(0, 0, 0); 60];
        }
        let slot = &mut self.minutes[(minute % 60) as usize];
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(failed);
        self.last_ms = now_ms;
    }

    fn stats(&self, now_ms: u64) -> RecentStats {
        let minute = now_ms / 60_000;
        let live = self
            .minutes
            .iter()
            .filter(|(m, _, _)| *m + 60 > minute && *m <= minute);
        let (invocations_1h, failures_1h) =
            live.fold((0, 0), |(i, f), (_, mi, mf)| (i + mi, f + mf));
        RecentStats {
            invocations_1h,
            failures_1h,
            last_invocation_ms: (self.last_ms > 0).then_some(self.last_ms),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        // The names and label sets are constants, so creating them cannot fail.
        let invocations = IntCounterVec::new(
            Opts::new(
                "oscar_wasm_invocations_total",
                "Invocations by service, kind and outcome",
            ),
            &["service", "kind", "outcome"],
        )
        .expect("metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "oscar_wasm_invocation_duration_seconds",
                "Run time of invocations",
            )
            .buckets(buckets.clone()),
            &["service"],
        )
        .expect("metric");
        let running =
            IntGauge::new("oscar_wasm_running_instances", "Guests running now").expect("metric");
        let waiting = IntGauge::new(
            "oscar_wasm_sync_queue_depth",
            "Synchronous invocations waiting for a slot",
        )
        .expect("metric");
        let jobs_pending = IntGauge::new(
            "oscar_wasm_job_queue_depth",
            "Jobs accepted and not yet started",
        )
        .expect("metric");
        let jobs = prometheus::IntGaugeVec::new(
            Opts::new(
                "oscar_wasm_jobs",
                "Jobs kept, by status (in a cluster, all servers' jobs)",
            ),
            &["status"],
        )
        .expect("metric");
        let compile_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "oscar_wasm_module_compile_seconds",
                "Time spent compiling modules",
            )
            .buckets(buckets),
        )
        .expect("metric");
        let module_cache = IntCounterVec::new(
            Opts::new(
                "oscar_wasm_module_cache_total",
                "Runnable module lookups by where they were found",
            ),
            &["result"],
        )
        .expect("metric");
        let (cpu_seconds, bytes, peak_memory) = usage_metrics();
        for collector in [
            Box::new(invocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cpu_seconds.clone()),
            Box::new(bytes.clone()),
            Box::new(peak_memory.clone()),
            Box::new(duration.clone()),
            Box::new(running.clone()),
            Box::new(waiting.clone()),
            Box::new(jobs_pending.clone()),
            Box::new(jobs.clone()),
            Box::new(compile_seconds.clone()),
            Box::new(module_cache.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            invocations,
            duration,
            running,
            waiting,
            jobs_pending,
            jobs,
            compile_seconds,
            module_cache,
            cpu_seconds,
            bytes,
            peak_memory,
            recent: Default::default(),
        }
    }

    /// `service`'s invocations over the last hour.
    pub fn recent(&self, service: &str) -> RecentStats {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .get(service)
            .map(|r| r.stats(crate::clock::now_ms()))
            .unwrap_or_default()
    }

    /// Forgets a deleted service's last hour.
    pub fn forget(&self, service: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.remove(service);
    }

    /// Counts a finished invocation.
    pub fn invoked(&self, service: &str, kind: &str, outcome: &str, seconds: f64) {
        self.invocations
            .with_label_values(&[service, kind, outcome])
            .inc();
        self.duration.with_label_values(&[service]).observe(seconds);
        let (now, failed) = (crate::clock::now_ms(), outcome != "success");
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded by the number of services: an entry per service, forgotten with it. The name
        // is copied only for a service's first call.
        match recent.get_mut(service) {
            Some(entry) => entry.add(now, failed),
            None => recent
                .entry(service.to_string())
                .or_default()
                .add(now, failed),
        }
    }

    /// Counts what a finished invocation used (see [`crate::usage::meters::Meters`]).
    pub fn metered(&self, service: &str, channel: &str, meters: &crate::usage::meters::Meters) {
        self.cpu_seconds
            .with_label_values(&[service, channel])
            .inc_by(meters.cpu.as_secs_f64());
        self.bytes
            .with_label_values(&[service, channel, "in"])
            .inc_by(meters.bytes_in);
        self.bytes
            .with_label_values(&[service, channel, "out"])
            .inc_by(meters.bytes_out);
        if meters.peak_memory > 0 {
            self.peak_memory
                .with_label_values(&[service])
                .observe(meters.peak_memory as f64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The counters of what guests used (see [`Metrics::metered`]).
fn usage_metrics() -> (prometheus::CounterVec, IntCounterVec, HistogramVec) {
    let cpu_seconds = prometheus::CounterVec::new(
        Opts::new(
            "oscar_wasm_cpu_seconds_total",
            "CPU seconds guests used, by service and channel",
        ),
        &["service", "channel"],
    )
    .expect("metric");
    let bytes = IntCounterVec::new(
        Opts::new(
            "oscar_wasm_invocation_bytes_total",
            "Bytes into and out of invocations, by service, channel and direction",
        ),
        &["service", "channel", "direction"],
    )
    .expect("metric");
    let peak_memory = HistogramVec::new(
        HistogramOpts::new(
            "oscar_wasm_peak_memory_bytes",
            "Guests' peak linear memory, by service",
        )
        .buckets(prometheus::exponential_buckets(65536.0, 4.0, 10).expect("buckets")),
        &["service"],
    )
    .expect("metric");
    (cpu_seconds, bytes, peak_memory)
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    #[test]
    fn the_last_hour_counts_minutes_that_are_not_older() {
        let mut recent = Recent::default();
        let t0 = 1_000 * 60_000;
        recent.add(t0, false);
        recent.add(t0 + 1_000, true);
        recent.add(t0 + 30 * 60_000, false);
        let stats = recent.stats(t0 + 30 * 60_000);
        assert_eq!((stats.invocations_1h, stats.failures_1h), (3, 1));
        // An hour later the first minute has aged out; its slot is reused.
        let later = t0 + 60 * 60_000;
        assert_eq!(recent.stats(later).invocations_1h, 1);
        recent.add(later, false);
        assert_eq!(recent.stats(later).invocations_1h, 2);
        assert_eq!(recent.stats(later).last_invocation_ms, Some(later));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::new();
        m.invoked("upper", "sync", "success", 0.001);
        m.invoked("upper", "sync", "success", 0.002);
        m.module_cache.with_label_values(&["memory"]).inc();
        let text = m.render();
        assert!(
            text.contains(
                r#"oscar_wasm_invocations_total{kind="sync",outcome="success",service="upper"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"oscar_wasm_invocation_duration_seconds_count{service="upper"} 2"#)
        );
        assert!(text.contains(r#"oscar_wasm_module_cache_total{result="memory"} 1"#));
    }
}
