//! Uploads to the embedded store as triggers: each object created there becomes one job per
//! service whose `minio.default` input folder holds it, stored before the upload is
//! acknowledged. External stores post their events to `/job/{name}` or are polled
//! ([`super::poller`]).
//!
//! A service at its pending limits holds the upload back until a job of its makes room (a
//! bulk upload goes at the pace the service processes it, none of its files left without a
//! job); past [`MAX_WAIT`], or when the job cannot be stored, the upload is answered
//! `503 SlowDown`, which S3 clients retry.

use crate::deployer::Deployer;
use crate::jobs::{CreateError, JobInput};
use crate::registry::Registry;
use std::time::{Duration, Instant};

/// Longest an upload waits for room under its services' pending limits.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Longest wait between two tries: a job finished on another cluster member is heard of late.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// An object was created in the embedded store: each service whose `minio.default` input
/// folder holds it (in its own bucket, or in one of its users' private buckets of
/// `isolation_level: USER`) gets one job, on disk before this returns (so before the
/// uploader is told its upload succeeded). `Err` (why) when a job could not be stored: the
/// upload is then answered with an error, for its client to send again.
pub async fn object_created(
    registry: &Registry,
    deployer: &Deployer,
    bucket: String,
    key: String,
) -> Result<(), String> {
    let targets: Vec<String> = registry
        .list()
        .iter()
        .filter(|d| {
            let storage = d.service.spec.storage.for_bucket(&bucket);
            storage.inputs.iter().any(|input| {
                input.provider == crate::storage::spec::DEFAULT_PROVIDER
                    && input.holds(&bucket, &key)
            })
        })
        .map(|d| d.service.spec.name.clone())
        .collect();
    let give_up = Instant::now() + MAX_WAIT;
    for service in targets {
        loop {
            let event = crate::storage::minio_event(&bucket, &key);
            match deployer.submit_job(&service, JobInput::Event(event)).await {
                Ok(record) => {
                    tracing::debug!(service = %service, job = %record.name, bucket = %bucket, key = %key, "object created: job accepted");
                    break;
                }
                // Deleted meanwhile: nothing to trigger.
                Err(CreateError::NoService(_)) => break,
                Err(CreateError::ServiceFull { .. } | CreateError::ServerFull(_))
                    if Instant::now() < give_up =>
                {
                    deployer.job_room(RETRY_EVERY).await;
                }
                Err(e) => {
                    tracing::error!(service = %service, bucket = %bucket, key = %key, error = %e, "object created: the job could not be stored; the upload is refused");
                    return Err(format!(
                        "the upload's job for service {service} could not be stored: {e}"
                    ));
                }
            }
        }
    }
    Ok(())
}
