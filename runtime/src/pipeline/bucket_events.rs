//! Uploads to the embedded store as triggers: each object created there becomes one job per
//! service whose `minio.default` input folder holds it, stored before the upload is
//! acknowledged. External stores post their events to `/job/{name}` or are polled
//! ([`super::poller`]).

use crate::deployer::Deployer;
use crate::jobs::JobInput;
use crate::registry::Registry;

/// An object was created in the embedded store: each service whose `minio.default` input
/// folder holds it (in its own bucket, or in one of its users' private buckets of
/// `isolation_level: USER`) gets one job, on disk before this returns (so before the
/// uploader is told its upload succeeded).
pub async fn object_created(registry: &Registry, deployer: &Deployer, bucket: String, key: String) {
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
        match deployer.submit_job(&service, JobInput::Event(event)).await {
            Ok(record) => {
                tracing::info!(service = %service, job = %record.name, bucket = %bucket, key = %key, "object created: job accepted");
            }
            Err(e) => {
                tracing::error!(service = %service, bucket = %bucket, key = %key, error = %e, "object created: the job could not be stored");
            }
        }
    }
}
