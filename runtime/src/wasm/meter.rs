//! What a guest uses, measured where it runs, for usage accounting ([`crate::usage`]): the
//! store limiter every guest runs under (wasmtime's [`StoreLimits`], its linear-memory and
//! table caps, plus the peak of linear memory the guest reached), and the CPU time of the
//! thread that runs it ([`thread_cpu_time`]; [`CpuTimed`] and [`CpuMeter`] for guests polled
//! as futures, whichever worker polls them).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::{ResourceLimiter, StoreLimits};

/// CPU time the calling thread has used. A guest run on its own thread is measured by the
/// difference before and after; a guest polled as a future, by the sum over its polls.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A future whose polls' CPU time is added up and handed to `report` at each poll: the CPU
/// time of an async guest, whichever worker thread polls it.
pub struct CpuTimed<F, R> {
    inner: Pin<Box<F>>,
    report: R,
}

impl<F: Future, R: FnMut(Duration)> CpuTimed<F, R> {
    /// Measures `inner`, reporting each poll's CPU time to `report`.
    pub fn new(inner: F, report: R) -> Self {
        Self {
            inner: Box::pin(inner),
            report,
        }
    }
}

impl<F: Future, R: FnMut(Duration) + Unpin> Future for CpuTimed<F, R> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        let used = thread_cpu_time().saturating_sub(start);
        (self.report)(used);
        polled
    }
}

/// The CPU time of a guest polled as a future, readable while it runs (by its epoch callback,
/// which runs inside a poll) as well as after: the sum of its ended polls plus the running
/// poll's time so far.
#[derive(Debug, Default)]
pub struct CpuMeter {
    /// Nanoseconds of the polls that have ended.
    ended: AtomicU64,
    /// The polling thread's CPU clock when the running poll began (nanoseconds, at least 1);
    /// 0 between polls.
    poll_began: AtomicU64,
}

impl CpuMeter {
    /// CPU time used so far; inside a poll, up to now.
    pub fn spent(&self) -> Duration {
        let began = self.poll_began.load(Ordering::Relaxed);
        let running = if began == 0 {
            0
        } else {
            nanos(thread_cpu_time()).saturating_sub(began)
        };
        Duration::from_nanos(self.ended.load(Ordering::Relaxed).saturating_add(running))
    }

    /// Runs `inner`, adding the CPU time of each of its polls.
    pub async fn measure<F: Future>(&self, inner: F) -> F::Output {
        let mut inner = std::pin::pin!(inner);
        std::future::poll_fn(|cx| {
            let began = nanos(thread_cpu_time()).max(1);
            self.poll_began.store(began, Ordering::Relaxed);
            let polled = inner.as_mut().poll(cx);
            let used = nanos(thread_cpu_time()).saturating_sub(began);
            self.poll_began.store(0, Ordering::Relaxed);
            self.ended.fetch_add(used, Ordering::Relaxed);
            polled
        })
        .await
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`StoreLimits`] that also remembers the largest linear memory it allowed.
pub struct MeteredLimits {
    limits: StoreLimits,
    peak: usize,
}

impl MeteredLimits {
    /// Meters a guest under `limits`.
    pub fn new(limits: StoreLimits) -> Self {
        Self { limits, peak: 0 }
    }

    /// Bytes of linear memory at the guest's largest: the sum over its memories is not kept,
    /// only the largest one (modules have one memory; components' adapters add small ones).
    pub fn peak_memory(&self) -> u64 {
        u64::try_from(self.peak).unwrap_or(u64::MAX)
    }
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak = self.peak.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_meter_counts_its_polls_cpu_and_not_the_time_between_them() {
        let meter = CpuMeter::default();
        let spin = |d: Duration| {
            let start = thread_cpu_time();
            while thread_cpu_time().saturating_sub(start) < d {}
        };
        meter
            .measure(async {
                spin(Duration::from_millis(20));
                // Read inside a poll: the running poll counts.
                assert!(meter.spent() >= Duration::from_millis(20));
                tokio::time::sleep(Duration::from_millis(50)).await;
                spin(Duration::from_millis(20));
            })
            .await;
        let spent = meter.spent();
        assert!(spent >= Duration::from_millis(40), "{spent:?}");
        // The sleep used no CPU: well under the 90 ms the call took.
        assert!(spent < Duration::from_millis(80), "{spent:?}");
    }

    #[test]
    fn remembers_the_largest_memory_it_allowed_and_not_a_refused_one() {
        let mut limits = MeteredLimits::new(
            wasmtime::StoreLimitsBuilder::new()
                .memory_size(1 << 20)
                .build(),
        );
        assert!(limits.memory_growing(0, 65536, None).unwrap());
        assert!(limits.memory_growing(65536, 1 << 20, None).unwrap());
        assert!(!limits.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(limits.peak_memory(), 1 << 20);
    }
}
