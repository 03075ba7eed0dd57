//! What one invocation used and whose it was: the figures usage accounting adds up. A leaf:
//! it imports nothing of the crate, so the executor that measures and the ledger that adds
//! up share these types without depending on each other.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How an invocation came, as OSCAR's metrics tell requests apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// POST /run (and the storage events it takes).
    Sync,
    /// A job: POST /job, a bucket's event, the poller.
    Async,
    /// A request to an HTTP service (`/system/services/{name}/exposed`).
    Exposed,
}

impl Channel {
    /// Its name in responses and Prometheus labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Exposed => "exposed",
        }
    }
}

/// One finished invocation's meters, measured where it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meters {
    /// CPU time of the thread that ran the guest (host calls included); zero where it cannot
    /// be measured (image services run in the cluster's containers).
    pub cpu: Duration,
    /// Wall time of the run.
    pub wall: Duration,
    /// The guest's largest linear memory, in bytes (zero for image services).
    pub peak_memory: u64,
    /// Bytes of input: the input file, or an HTTP request's body.
    pub bytes_in: u64,
    /// Bytes of output: the output files, or an HTTP response's body.
    pub bytes_out: u64,
}

/// Who used what, through which channel: one invocation as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The service.
    pub service: String,
    /// The user it is accounted to: the OIDC subject that called, else the service's owner,
    /// else empty (the administrator, or an open server).
    pub user: String,
    /// Sync, async or exposed.
    pub channel: Channel,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it used.
    pub meters: Meters,
}

/// Sums over invocations: what the ledger keeps per minute, service, user and channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Invocations.
    #[serde(rename = "n")]
    pub invocations: u64,
    /// Those that did not succeed.
    #[serde(rename = "f", default)]
    pub failures: u64,
    /// CPU time, in nanoseconds.
    #[serde(rename = "cpu", default)]
    pub cpu_ns: u64,
    /// Wall time, in nanoseconds.
    #[serde(rename = "wall", default)]
    pub wall_ns: u64,
    /// Bytes in.
    #[serde(rename = "in", default)]
    pub bytes_in: u64,
    /// Bytes out.
    #[serde(rename = "out", default)]
    pub bytes_out: u64,
    /// The largest peak memory of any of them, in bytes.
    #[serde(rename = "mem", default)]
    pub peak_memory: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Totals {
    /// One invocation's totals.
    pub fn of(ok: bool, m: &Meters) -> Self {
        Self {
            invocations: 1,
            failures: u64::from(!ok),
            cpu_ns: nanos(m.cpu),
            wall_ns: nanos(m.wall),
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            peak_memory: m.peak_memory,
        }
    }

    /// Adds `other` in (saturating: a counter stops at its maximum rather than wrapping).
    pub fn add(&mut self, other: &Self) {
        self.invocations = self.invocations.saturating_add(other.invocations);
        self.failures = self.failures.saturating_add(other.failures);
        self.cpu_ns = self.cpu_ns.saturating_add(other.cpu_ns);
        self.wall_ns = self.wall_ns.saturating_add(other.wall_ns);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.peak_memory = self.peak_memory.max(other.peak_memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_sums_counters_and_keeps_the_largest_peak() {
        let one = Meters {
            cpu: Duration::from_millis(2),
            wall: Duration::from_millis(3),
            peak_memory: 65536,
            bytes_in: 10,
            bytes_out: 20,
        };
        let two = Meters {
            peak_memory: 1 << 20,
            ..one
        };
        let mut t = Totals::of(true, &one);
        t.add(&Totals::of(false, &two));
        assert_eq!(t.invocations, 2);
        assert_eq!(t.failures, 1);
        assert_eq!(t.cpu_ns, 4_000_000);
        assert_eq!(t.wall_ns, 6_000_000);
        assert_eq!((t.bytes_in, t.bytes_out), (20, 40));
        assert_eq!(t.peak_memory, 1 << 20);
    }
}
