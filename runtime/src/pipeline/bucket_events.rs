//! Uploads to the embedded store as triggers: each object created there becomes one job per
//! service whose `minio.default` input folder holds it, stored before the upload is
//! acknowledged. External stores post their events to `/job/{name}` or are polled
//! ([`super::poller`]).
//!
//! These jobs are kept whatever the pending limits (`jobs::Admission::Always`): the object is
//! already stored and no one would send it again, and its uploader may be this server itself
//! delivering another service's outputs, which must never wait for a worker it holds. Only a
//! job that cannot be stored makes the upload fail (`503 SlowDown`, which S3 clients retry).

use crate::deployer::Deployer;
use crate::jobs::CreateError;
use crate::registry::Registry;

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
    for service in targets {
        let event = crate::storage::minio_event(&bucket, &key);
        match deployer.submit_stored_object(&service, event).await {
            Ok(record) => {
                tracing::debug!(service = %service, job = %record.name, bucket = %bucket, key = %key, "object created: job accepted");
            }
            // Deleted meanwhile: nothing to trigger.
            Err(CreateError::NoService(_)) => {}
            Err(e) => {
                tracing::error!(service = %service, bucket = %bucket, key = %key, error = %e, "object created: the job could not be stored; the upload is refused");
                return Err(format!(
                    "the upload's job for service {service} could not be stored: {e}"
                ));
            }
        }
    }
    Ok(())
}
