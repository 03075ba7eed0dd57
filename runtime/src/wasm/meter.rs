//! What a guest uses, measured where it runs, for usage accounting ([`crate::usage`]): the
//! store limiter every guest runs under (wasmtime's [`StoreLimits`], its linear-memory and
//! table caps, plus the peak of linear memory the guest reached), and the CPU time of the
//! thread that runs it ([`thread_cpu_time`], [`CpuTimed`] for guests polled as futures).

use std::future::Future;
use std::pin::Pin;
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
