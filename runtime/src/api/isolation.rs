//! OSCAR's `isolation_level: USER` (pkg/handlers/create.go): besides the service's own buckets,
//! each user in `allowed_users` gets a private bucket, `<input bucket>-<first 10 characters of
//! the user id>`, listed in `bucket_list`, holding the same input and output folders. A file
//! uploaded to its input folder runs the service, and the outputs go to its output folders
//! ([`crate::storage::spec::StorageSpec::for_bucket`]): the other users of the service never
//! see them. Each private bucket is recorded as its user's, private; a creator missing from
//! `allowed_users` is added to it, as OSCAR does.
//!
//! Unlike OSCAR, buckets dropped from the list (or of a deleted service) are kept, their
//! user's still: this server keeps a service's buckets when the service goes.

use super::{ApiError, AppState};
use crate::access::Caller;
use crate::storage::bucket_records::{BucketRecord, Visibility};
use crate::storage::spec::DEFAULT_PROVIDER;
use serde_json::{Value, json};

/// Characters of a user id a private bucket's name takes, as OSCAR's `u[:10]`.
const USER_PREFIX: usize = 10;

/// A private bucket to make once the service is deployed.
pub(super) struct Private {
    bucket: String,
    user: String,
    folders: Vec<String>,
}

/// Fills `bucket_list` of a definition with `isolation_level: USER` (and the creator into
/// `allowed_users`), after checking that each private bucket is free or already this user's
/// for this service; returns the buckets to make. Nothing for other definitions.
pub(super) async fn plan(
    app: &AppState,
    caller: &Caller,
    definition: &mut Value,
) -> Result<Vec<Private>, ApiError> {
    let Value::Object(map) = definition else {
        return Ok(Vec::new());
    };
    let user_level = map
        .get("isolation_level")
        .and_then(Value::as_str)
        .is_some_and(|l| l.trim().eq_ignore_ascii_case("USER"));
    if !user_level {
        return Ok(Vec::new());
    }
    // The list is the server's to make, whatever a client sent.
    map.insert("bucket_list".into(), json!([]));
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // An invalid definition is refused by the deployer, with its reason.
    let Ok(spec) = crate::storage::spec::parse(&name, map) else {
        return Ok(Vec::new());
    };
    let mut allowed: Vec<String> = map
        .get("allowed_users")
        .and_then(Value::as_array)
        .map(|users| {
            users
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if allowed.is_empty() {
        return Ok(Vec::new());
    }
    let folders: Vec<String> = spec
        .inputs
        .iter()
        .chain(&spec.outputs)
        .filter(|p| p.provider == DEFAULT_PROVIDER)
        .map(|p| p.folder.clone())
        .collect();
    let mut inputs: Vec<&str> = spec
        .inputs
        .iter()
        .filter(|p| p.provider == DEFAULT_PROVIDER)
        .map(|p| p.bucket.as_str())
        .collect();
    // Two input folders of one bucket make one private bucket per user, not a clash.
    inputs.sort_unstable();
    inputs.dedup();
    let mut privates: Vec<Private> = Vec::new();
    for input in inputs {
        for user in &allowed {
            let prefix: String = user.chars().take(USER_PREFIX).collect();
            let bucket = format!("{input}-{}", prefix.to_ascii_lowercase());
            crate::storage::names::check_bucket(&bucket).map_err(|e| {
                ApiError::BadRequest(format!(
                    "isolation_level USER names the private bucket of user {user:?} {bucket:?}, which is not a valid bucket name: {e}"
                ))
            })?;
            if let Some(other) = privates.iter().find(|p| p.bucket == bucket) {
                return Err(ApiError::BadRequest(format!(
                    "isolation_level USER would give the users {:?} and {user:?} the same private bucket {bucket:?} (the first {USER_PREFIX} characters of their ids agree)",
                    other.user
                )));
            }
            check_free(app, &name, &bucket, user).await?;
            privates.push(Private {
                bucket,
                user: user.clone(),
                folders: folders.clone(),
            });
        }
    }
    if let Some(creator) = caller.user()
        && !allowed.contains(&creator.sub)
    {
        allowed.push(creator.sub.clone());
        map.insert("allowed_users".into(), json!(allowed));
    }
    let names: Vec<&str> = privates.iter().map(|p| p.bucket.as_str()).collect();
    map.insert("bucket_list".into(), json!(names));
    Ok(privates)
}

/// Refuses a private bucket that exists for anyone or anything else.
async fn check_free(
    app: &AppState,
    service: &str,
    bucket: &str,
    user: &str,
) -> Result<(), ApiError> {
    let taken = |why: &str| {
        ApiError::Forbidden(format!(
            "isolation_level USER cannot make the private bucket {bucket} of user {user}: {why}"
        ))
    };
    match app.buckets.bucket_records.get(bucket) {
        Some(record) if record.owner == user && record.service.as_deref() == Some(service) => {
            Ok(())
        }
        Some(_) => Err(taken("it exists and belongs to another owner or service")),
        None if app.buckets.bucket_admin.exists(bucket).await? => {
            Err(taken("a bucket of that name exists"))
        }
        None => {
            let facts = crate::access::bucket_facts(
                &app.buckets.bucket_records,
                &app.services.registry,
                bucket,
            );
            match facts.services.first() {
                Some(other) => Err(taken(&format!(
                    "the service {} uses it",
                    other.service.spec.name
                ))),
                None => Ok(()),
            }
        }
    }
}

/// Makes the private buckets of a deployed service, with their folders, and records each as
/// its user's.
pub(super) async fn make(
    app: &AppState,
    service: &str,
    privates: Vec<Private>,
) -> Result<(), ApiError> {
    for private in privates {
        app.buckets
            .bucket_admin
            .ensure(&private.bucket, &private.folders)
            .await?;
        let record = BucketRecord {
            owner: private.user.clone(),
            owner_name: private.user,
            visibility: Visibility::Private,
            allowed_users: Vec::new(),
            service: Some(service.to_string()),
        };
        super::buckets::keep_record(app, &private.bucket, Some(record)).await?;
        tracing::info!(service, bucket = %private.bucket, "private bucket made (isolation_level USER)");
    }
    Ok(())
}
