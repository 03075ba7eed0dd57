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
    /// Seconds spent compiling uploaded modules.
    pub compile_seconds: Histogram,
    /// Lookups of a runnable module, by where it was found: `memory`, `artifact` (the on-disk
    /// compiled cache), `compiled` (compiled again).
    pub module_cache: IntCounterVec,
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
        for collector in [
            Box::new(invocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(running.clone()),
            Box::new(waiting.clone()),
            Box::new(jobs_pending.clone()),
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
            compile_seconds,
            module_cache,
        }
    }

    /// Counts a finished invocation.
    pub fn invoked(&self, service: &str, kind: &str, outcome: &str, seconds: f64) {
        self.invocations
            .with_label_values(&[service, kind, outcome])
            .inc();
        self.duration.with_label_values(&[service]).observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
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
