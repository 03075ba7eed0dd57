//! Latencies of the measurements taken in this process (the in-process path, the bare
//! wasmtime sequence, FaaS Supervisor), where no HTTP load tool applies.

use std::time::Duration;

/// Latencies and counts of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Successful requests' latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or answered something unexpected.
    pub errors: u64,
    /// Measured wall time.
    pub elapsed: Duration,
}

impl Stats {
    /// Builds stats from raw latencies.
    pub fn new(mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            latencies,
            errors,
            elapsed,
        }
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile latency (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    /// The slowest request.
    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}
