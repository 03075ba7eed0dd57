//! The job queue: which jobs are waiting for a worker. On one machine a channel in memory
//! ([`LocalQueue`]; the job store is what survives a restart), in a cluster a NATS work-queue
//! stream (`crate::cluster::queue`), where a job taken by a server that dies is delivered again
//! to another.

use super::record::JobRecord;
use crate::stores::StoreError;
use std::time::Duration;
use tokio::sync::mpsc;

/// A queued job handed to a worker.
pub struct Delivery {
    /// The job's service.
    pub service: String,
    /// The job.
    pub job: String,
    /// Delivered before to a worker that did not finish it (its server stopped).
    pub redelivered: bool,
    /// Tells a shared queue that the job is done or still running; `None` for a queue that
    /// needs neither.
    pub acker: Option<Box<dyn Acker>>,
}

/// Acknowledgements of a shared queue's delivery.
#[async_trait::async_trait]
pub trait Acker: Send + Sync {
    /// The job's record is final: it is not delivered again.
    async fn ack(&self);
    /// The job still runs: its redelivery waits another acknowledgement period.
    async fn progress(&self);
    /// How often [`Acker::progress`] must be called while the job runs.
    fn progress_every(&self) -> Duration;
}

/// Jobs waiting for a worker.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues a job: on a shared queue it is stored (replicated) when this returns.
    async fn push(&self, service: &str, job: &str) -> Result<(), StoreError>;
    /// Queues the jobs the store found pending at start-up. A shared queue holds its own and
    /// ignores them.
    fn restore(&self, pending: &[JobRecord]);
    /// The next job; `None` once the queue is closed.
    async fn next(&self) -> Option<Delivery>;
}

/// The queue of a single server: a channel.
pub struct LocalQueue {
    sender: mpsc::UnboundedSender<(String, String)>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>,
}

impl Default for LocalQueue {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
        }
    }
}

#[async_trait::async_trait]
impl JobQueue for LocalQueue {
    async fn push(&self, service: &str, job: &str) -> Result<(), StoreError> {
        // The receiver lives as long as the queue: sending cannot fail.
        let _ = self.sender.send((service.to_string(), job.to_string()));
        Ok(())
    }

    fn restore(&self, pending: &[JobRecord]) {
        for record in pending {
            let _ = self
                .sender
                .send((record.service.clone(), record.name.clone()));
        }
    }

    async fn next(&self) -> Option<Delivery> {
        let (service, job) = self.receiver.lock().await.recv().await?;
        Some(Delivery {
            service,
            job,
            redelivered: false,
            acker: None,
        })
    }
}
