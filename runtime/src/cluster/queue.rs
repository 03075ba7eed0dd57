//! The job queue in a cluster: the JetStream stream `OSCAR_JOB_QUEUE` with work-queue
//! retention, one message per accepted job, and one durable pull consumer (`workers`) that
//! every server's workers take from. A message is acknowledged only once its job's record is
//! final; while the job runs its worker says so every third of the ack wait, so a server that
//! dies (`kill -9` included) leaves its jobs to be delivered to another after one ack wait.

use super::{Cluster, ClusterError, names, store_error};
use crate::jobs::queue::{Acker, Delivery, JobQueue};
use crate::jobs::record::JobRecord;
use crate::stores::StoreError;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt;
use std::io;
use std::time::Duration;

/// A queued job, as the message carries it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Queued {
    service: String,
    job: String,
}

/// The work-queue stream and its consumer.
pub struct NatsQueue {
    cluster: Cluster,
    consumer: consumer::PullConsumer,
}

impl NatsQueue {
    /// Opens (creating) the stream and the consumer.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let failed = |what: &str, reason: String| ClusterError::JetStream {
            what: what.to_string(),
            reason,
        };
        let stream = cluster
            .stream(stream::Config {
                name: names::QUEUE.to_string(),
                subjects: vec![names::QUEUE_SUBJECT.to_string()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                num_replicas: cluster.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| failed("job queue stream", e))?;
        let consumer = stream
            .get_or_create_consumer(
                "workers",
                consumer::pull::Config {
                    durable_name: Some("workers".to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: cluster.ack_wait,
                    // Delivered until a worker finishes it: the job's attempts count stops a
                    // job that keeps killing servers (it ends Failed, and is acknowledged).
                    max_deliver: -1,
                    num_replicas: cluster.replicas,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| failed("job queue consumer", e.to_string()))?;
        Ok(Self {
            cluster: cluster.clone(),
            consumer,
        })
    }
}

/// Acknowledges one delivery.
struct NatsAcker {
    message: jetstream::Message,
    every: Duration,
}

#[async_trait::async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) {
        // Confirmed by the server, so that a lost acknowledgement is seen (the job would run
        // again after the ack wait; its record being final, it only acknowledges then).
        if let Err(e) = self.message.double_ack().await {
            tracing::warn!(error = %e, "a finished job's acknowledgement failed; it is delivered again and skipped");
        }
    }

    async fn progress(&self) {
        if let Err(e) = self.message.ack_with(AckKind::Progress).await {
            tracing::warn!(error = %e, "could not tell NATS that a job still runs");
        }
    }

    fn progress_every(&self) -> Duration {
        self.every
    }
}

#[async_trait::async_trait]
impl JobQueue for NatsQueue {
    async fn push(&self, service: &str, job: &str) -> Result<(), StoreError> {
        let payload = serde_json::to_vec(&Queued {
            service: service.to_string(),
            job: job.to_string(),
        })
        .map_err(io::Error::other)?;
        // Awaiting the acknowledgement: the job is in the stream (replicated) after this.
        self.cluster
            .jetstream
            .publish(names::QUEUE_SUBJECT, payload.into())
            .await
            .map_err(|e| store_error("queueing the job", e))?
            .await
            .map_err(|e| store_error("queueing the job", e))?;
        Ok(())
    }

    fn restore(&self, _pending: &[JobRecord]) {
        // The stream holds every queued job.
    }

    async fn next(&self) -> Option<Delivery> {
        loop {
            let batch = self
                .consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take jobs from NATS; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(message) = batch.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take jobs from NATS; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                };
                let Ok(queued) = serde_json::from_slice::<Queued>(&message.payload) else {
                    tracing::warn!("dropping an unreadable message from the job queue");
                    let _ = message.ack().await;
                    continue;
                };
                let redelivered = message.info().is_ok_and(|info| info.delivered > 1);
                return Some(Delivery {
                    service: queued.service,
                    job: queued.job,
                    redelivered,
                    acker: Some(Box::new(NatsAcker {
                        message,
                        every: self.cluster.ack_wait / 3,
                    })),
                });
            }
        }
    }
}
