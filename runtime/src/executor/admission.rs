//! Admission control, the same for every backend: an invocation takes its service's slot,
//! then one of its backend's server-wide slots. A synchronous call (its client waits) may
//! queue only while fewer than `--max-queue` calls wait, else it is refused at once (503);
//! jobs are already queued on disk, so they wait without a bound.

use super::invocation::{InvokeError, Kind};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots an admitted invocation holds until it ends.
pub struct Admitted {
    _service: OwnedSemaphorePermit,
    _backend: OwnedSemaphorePermit,
    /// What the invocation holds of its user's quotas, given back with the slots.
    _quota: Option<crate::quotas::Taken>,
}

impl Admitted {
    /// The slots, holding `quota` too until the invocation ends.
    pub fn holding(mut self, quota: crate::quotas::Taken) -> Self {
        self._quota = Some(quota);
        self
    }
}

/// Counts waiting synchronous calls against the queue bound.
pub struct Admission {
    waiting: AtomicUsize,
    max_queue: usize,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// Admission with at most `max_queue` synchronous calls waiting.
    pub fn new(max_queue: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            waiting: AtomicUsize::new(0),
            max_queue,
            metrics,
        }
    }

    /// Takes the service's slot, then the backend's. The service's comes first, so a busy
    /// service queues without holding a slot that another service could use.
    pub async fn admit(
        &self,
        service: &Arc<Semaphore>,
        backend: &Arc<Semaphore>,
        kind: Kind,
    ) -> Result<Admitted, InvokeError> {
        let bounded = kind == Kind::Sync;
        let service = self.slot(service, bounded).await?;
        let backend = self.slot(backend, bounded).await?;
        Ok(Admitted {
            _service: service,
            _backend: backend,
            _quota: None,
        })
    }

    /// A permit of `slots` at once if one is free; else a place in the queue (bounded when
    /// `bounded`); else `Overloaded` at once.
    async fn slot(
        &self,
        slots: &Arc<Semaphore>,
        bounded: bool,
    ) -> Result<OwnedSemaphorePermit, InvokeError> {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _queued = if bounded {
            if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(InvokeError::Overloaded);
            }
            self.metrics.waiting.inc();
            Some(Queued(self))
        } else {
            None
        };
        slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| InvokeError::Host(e.to_string()))
    }
}

/// A place in the queue, given back however the wait ends.
struct Queued<'a>(&'a Admission);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.waiting.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn synchronous_calls_queue_up_to_the_bound_then_are_refused_at_once() {
        let admission = Arc::new(Admission::new(1, Arc::new(Metrics::new())));
        let service = Arc::new(Semaphore::new(10));
        let backend = Arc::new(Semaphore::new(1));
        let first = admission
            .admit(&service, &backend, Kind::Sync)
            .await
            .unwrap();
        // One may wait...
        let waiting = {
            let (admission, service, backend) =
                (admission.clone(), service.clone(), backend.clone());
            tokio::spawn(async move {
                admission
                    .admit(&service, &backend, Kind::Sync)
                    .await
                    .is_ok()
            })
        };
        while admission.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the next is refused without waiting; a job waits regardless.
        assert!(matches!(
            admission.admit(&service, &backend, Kind::Sync).await,
            Err(InvokeError::Overloaded)
        ));
        let job = {
            let (admission, service, backend) =
                (admission.clone(), service.clone(), backend.clone());
            tokio::spawn(
                async move { admission.admit(&service, &backend, Kind::Job).await.is_ok() },
            )
        };
        drop(first);
        assert!(waiting.await.unwrap());
        assert!(job.await.unwrap());
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
    }
}
