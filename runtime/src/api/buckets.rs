//! /system/buckets: OSCAR's bucket API on `minio.default` (the embedded store, or the external
//! one `--storage-endpoint` names), in OSCAR's shapes: create (with a folder), list, get a page
//! of objects, change visibility, delete with contents, and presigned URLs.
//!
//! A bucket's owner, visibility and allowed users come from its record when it was created
//! here, from the service whose input or output names it otherwise (as OSCAR tags a service's
//! buckets with `from_service`), and are the administrator's, private, for a bucket made
//! straight through S3.

use super::{ApiError, AppState};
use crate::access::{ADMIN_BUCKET_OWNER, BucketFacts, Caller};
use crate::storage::bucket_records::{BucketRecord, Visibility, check_users};
use crate::storage::buckets::{Access, BucketError, MAX_PAGE, PRESIGN_EXPIRY};
use crate::storage::names::{self, MAX_KEY_LEN};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// At most this many extra headers are signed into a presigned URL.
const MAX_EXTRA_HEADERS: usize = 32;
/// OSCAR's validity of a presigned URL when the request names none, in seconds.
const DEFAULT_PRESIGN_SECS: u64 = 900;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/buckets", get(list).post(create).put(update))
        .route("/system/buckets/{bucket}", get(get_one).delete(delete))
        .route("/system/buckets/{bucket}/presign", post(presign))
}

/// A JSON object body, keys matched case-insensitively as Go's decoder matches them.
fn parse_object(
    body: &Bytes,
    app: &AppState,
    keys: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    if body.len() as u64 > app.invocations.requests.max_json_body {
        return Err(ApiError::TooLarge(format!(
            "the body has {} bytes; a bucket request has at most {} (--max-json-body)",
            body.len(),
            app.invocations.requests.max_json_body
        )));
    }
    let mut map: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a JSON object: {e}")))?;
    crate::oscar_definition::canonical_keys(&mut map, keys);
    Ok(map)
}

/// OSCAR's MinIOBucket as clients send it.
#[derive(serde::Deserialize)]
struct BucketBody {
    #[serde(default)]
    bucket_name: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    allowed_users: Option<Vec<String>>,
}

impl BucketBody {
    fn read(body: &Bytes, app: &AppState) -> Result<Self, ApiError> {
        let map = parse_object(body, app, &["bucket_name", "visibility", "allowed_users"])?;
        serde_json::from_value(Value::Object(map)).map_err(|e| {
            ApiError::BadRequest(format!("the bucket specification is not valid: {e}"))
        })
    }

    /// The bucket and the folder inside it (`bucket/folder`, as OSCAR splits it).
    fn path(&self) -> Result<(String, Option<String>), ApiError> {
        let path = self.bucket_name.trim_matches(|c| c == ' ' || c == '/');
        let (bucket, folder) = match path.split_once('/') {
            Some((bucket, folder)) => (bucket, Some(folder.trim_matches('/'))),
            None => (path, None),
        };
        names::check_bucket(bucket).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let folder = folder.filter(|f| !f.is_empty());
        if let Some(folder) = folder {
            names::check_folder(folder).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        Ok((bucket.to_string(), folder.map(str::to_string)))
    }

    fn access(&self) -> Result<(Visibility, Vec<String>), ApiError> {
        let visibility = Visibility::parse(&self.visibility).map_err(ApiError::BadRequest)?;
        let users = self.allowed_users.clone().unwrap_or_default();
        check_users(&users).map_err(ApiError::BadRequest)?;
        Ok((visibility, users))
    }
}

/// The bucket named in the path, checked against S3's naming rules.
/// OSCAR's MinIOBucket without objects.
fn to_json(facts: &BucketFacts, bucket: &str) -> Value {
    let record = &facts.record;
    let mut metadata = json!({"owner": record.owner, "owner_name": record.owner_name});
    if let Some(service) = &facts.from_service {
        metadata["from_service"] = json!(service);
    }
    json!({
        "bucket_name": bucket,
        "visibility": record.visibility.as_str(),
        // Go's nil slice: OSCAR lists members for restricted buckets only.
        "allowed_users": (record.visibility == Visibility::Restricted)
            .then_some(&record.allowed_users),
        "owner": record.owner,
        "metadata": metadata,
    })
}

fn facts(app: &AppState, bucket: &str) -> BucketFacts {
    crate::access::bucket_facts(&app.buckets.bucket_records, &app.services.registry, bucket)
}

/// The bucket's facts when the caller may use it; 403 otherwise.
fn usable(app: &AppState, caller: &Caller, bucket: &str) -> Result<BucketFacts, ApiError> {
    let facts = facts(app, bucket);
    if caller.may_use_bucket(&facts) {
        Ok(facts)
    } else {
        Err(ApiError::Forbidden(format!(
            "{} may not use the bucket '{bucket}'",
            caller.describe()
        )))
    }
}

fn bucket_param(bucket: &str) -> Result<&str, ApiError> {
    let bucket = bucket.trim();
    names::check_bucket(bucket).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(bucket)
}

/// GET /system/buckets: the store's buckets the caller may use, in OSCAR's MinIOBucket shape.
async fn list(State(app): State<AppState>, caller: Caller) -> Result<Json<Vec<Value>>, ApiError> {
    let buckets = app.buckets.bucket_admin.list().await?;
    Ok(Json(
        buckets
            .iter()
            .map(|b| (facts(&app, &b.name), &b.name))
            .filter(|(facts, _)| caller.may_use_bucket(facts))
            .map(|(facts, name)| to_json(&facts, name))
            .collect(),
    ))
}

/// POST /system/buckets: creates `bucket_name` (`bucket` or `bucket/folder`), 201.
async fn create(
    State(app): State<AppState>,
    caller: Caller,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<StatusCode, ApiError> {
    let request = BucketBody::read(&body, &app)?;
    let (bucket, folder) = request.path()?;
    let (visibility, allowed_users) = request.access()?;
    if let Some(user) = caller.user() {
        let owned = crate::access::owned_buckets(
            &app.buckets.bucket_records,
            &app.services.registry,
            &user.sub,
        );
        app.operations
            .quotas
            .check_new_buckets(&user.sub, &owned, std::slice::from_ref(&bucket))
            .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    }
    app.buckets
        .bucket_admin
        .create(&bucket, folder.as_deref())
        .await?;
    // The caller owns what they create, as in OSCAR.
    let (owner, owner_name) = match caller.user() {
        None => (
            ADMIN_BUCKET_OWNER.to_string(),
            ADMIN_BUCKET_OWNER.to_string(),
        ),
        Some(user) => (user.sub.clone(), user.name.clone()),
    };
    let record = BucketRecord {
        owner,
        owner_name,
        visibility,
        allowed_users,
        service: None,
    };
    keep_record(&app, &bucket, Some(record)).await?;
    tracing::info!(%bucket, visibility = visibility.as_str(), "bucket created");
    Ok(StatusCode::CREATED)
}

/// PUT /system/buckets: changes a bucket's visibility and allowed users, 204. A service's
/// bucket takes its access from the service, so it is not changed here (403, as in OSCAR).
async fn update(
    State(app): State<AppState>,
    caller: Caller,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<StatusCode, ApiError> {
    let request = BucketBody::read(&body, &app)?;
    let (bucket, _) = request.path()?;
    let (visibility, allowed_users) = request.access()?;
    if !app.buckets.bucket_admin.exists(&bucket).await? {
        return Err(BucketError::NotFound(bucket).into());
    }
    let current = facts(&app, &bucket);
    if let Some(service) = &current.from_service {
        return Err(ApiError::Forbidden(format!(
            "the bucket '{bucket}' belongs to the service '{service}', whose visibility decides who sees it; change the service instead"
        )));
    }
    if !caller.may_change_bucket(&current) {
        return Err(ApiError::Forbidden(format!(
            "{} may not change the bucket '{bucket}': only its owner may",
            caller.describe()
        )));
    }
    let record = BucketRecord {
        owner: match current.record.owner.as_str() {
            "" => ADMIN_BUCKET_OWNER.into(),
            owner => owner.into(),
        },
        owner_name: current.record.owner_name,
        visibility,
        allowed_users,
        service: None,
    };
    keep_record(&app, &bucket, Some(record)).await?;
    tracing::info!(%bucket, visibility = visibility.as_str(), "bucket updated");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<String>,
    limit: Option<usize>,
}

/// GET /system/buckets/{bucket}: the bucket and a page of its objects (`?page=` continues,
/// `?limit=` sizes it, up to 1,000, as oscar-cli asks), OSCAR's BucketListResponse.
async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let bucket = bucket_param(&bucket)?;
    let facts = usable(&app, &caller, bucket)?;
    let token = query.page.filter(|p| !p.is_empty());
    let page = app
        .buckets
        .bucket_admin
        .objects(
            bucket,
            token.as_deref(),
            query.limit.filter(|l| *l > 0).unwrap_or(MAX_PAGE),
        )
        .await?;
    let mut answer = to_json(&facts, bucket);
    let objects: Vec<Value> = page
        .objects
        .iter()
        .map(|o| json!({"object_name": o.key, "size_bytes": o.size, "last_modified": o.last_modified}))
        .collect();
    answer["returned_items"] = json!(objects.len());
    answer["objects"] = Value::Array(objects);
    answer["is_truncated"] = json!(page.next.is_some());
    if let Some(next) = page.next {
        answer["next_page"] = json!(next);
    }
    Ok(Json(answer))
}

/// DELETE /system/buckets/{bucket}: deletes the bucket and everything in it, 204. A bucket a
/// service reads from or writes to is refused (409) while that service exists.
async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
) -> Result<StatusCode, ApiError> {
    let bucket = bucket_param(&bucket)?;
    let facts = facts(&app, bucket);
    let users: Vec<String> = facts
        .services
        .iter()
        .map(|d| d.service.spec.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the bucket '{bucket}' is used by the service(s) {}; delete them first",
            users.join(", ")
        )));
    }
    if !caller.may_change_bucket(&facts) {
        return Err(ApiError::Forbidden(format!(
            "{} may not delete the bucket '{bucket}': only its owner may",
            caller.describe()
        )));
    }
    app.buckets.bucket_admin.delete(bucket).await?;
    keep_record(&app, bucket, None).await?;
    tracing::info!(%bucket, "bucket deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Writes (or, with `None`, removes) a bucket's record.
pub(super) async fn keep_record(
    app: &AppState,
    bucket: &str,
    record: Option<BucketRecord>,
) -> Result<(), ApiError> {
    match record {
        Some(record) => app.buckets.bucket_records.put(bucket, record).await?,
        None => app.buckets.bucket_records.remove(bucket).await?,
    }
    Ok(())
}

/// OSCAR's PresignRequest. oscar-python 2.2.0 sends the validity as `expires`, which OSCAR
/// ignores; it is read here when `expires_in` is absent.
#[derive(serde::Deserialize)]
struct PresignBody {
    #[serde(default)]
    object_key: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    extra_headers: Option<std::collections::BTreeMap<String, String>>,
}

impl PresignBody {
    /// The URL's validity in seconds: OSCAR's default when none is asked, else within its
    /// bounds.
    fn validity(&self) -> Result<u64, ApiError> {
        match self.expires_in.or(self.expires).unwrap_or(0) {
            0 => Ok(DEFAULT_PRESIGN_SECS),
            n => u64::try_from(n)
                .ok()
                .filter(|n| PRESIGN_EXPIRY.contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "invalid expiration {n}: allowed range is {}-{} seconds",
                        PRESIGN_EXPIRY.start(),
                        PRESIGN_EXPIRY.end()
                    ))
                }),
        }
    }
}

/// POST /system/buckets/{bucket}/presign: a URL to download or upload one object, valid 1 s
/// to 7 days (900 s unless asked).
async fn presign(
    State(app): State<AppState>,
    caller: Caller,
    Path(bucket): Path<String>,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let bucket = bucket_param(&bucket)?;
    usable(&app, &caller, bucket)?;
    let map = parse_object(
        &body,
        &app,
        &[
            "object_key",
            "operation",
            "expires_in",
            "expires",
            "content_type",
            "extra_headers",
        ],
    )?;
    let request: PresignBody = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("invalid presign request: {e}")))?;
    // As OSCAR trims it; then one canonical form, as every edge of the store takes keys.
    let key = request.object_key.trim().trim_matches('/');
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "object_key must have 1 to {MAX_KEY_LEN} bytes"
        )));
    }
    names::check_key(key).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let operation = request.operation.trim().to_ascii_lowercase();
    let access = match operation.as_str() {
        "download" => Access::Download,
        "upload" => Access::Upload,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "unsupported operation '{}': use 'upload' or 'download'",
                request.operation
            )));
        }
    };
    let seconds = request.validity()?;
    let extra = request.extra_headers.unwrap_or_default();
    if extra.len() > MAX_EXTRA_HEADERS {
        return Err(ApiError::BadRequest(format!(
            "extra_headers has {} entries; at most {MAX_EXTRA_HEADERS} are signed",
            extra.len()
        )));
    }
    if let Some(bad) = extra
        .keys()
        .find(|name| axum::http::HeaderName::from_bytes(name.trim().as_bytes()).is_err())
    {
        return Err(ApiError::BadRequest(format!(
            "extra_headers names '{bad}', which is not an HTTP header name"
        )));
    }
    if !app.buckets.bucket_admin.exists(bucket).await? {
        return Err(BucketError::NotFound(bucket.to_string()).into());
    }
    let content_type = Some(request.content_type.trim()).filter(|c| !c.is_empty());
    let signed = app.buckets.bucket_admin.presign(
        bucket,
        key,
        access,
        Duration::from_secs(seconds),
        content_type,
        &extra,
    )?;
    let expires_at =
        crate::clock::rfc3339(crate::clock::now_ms().saturating_add(seconds.saturating_mul(1000)));
    let mut answer = json!({
        "object_key": key,
        "operation": operation,
        "method": signed.method,
        "url": signed.url,
        "expires_at": expires_at,
    });
    if !signed.headers.is_empty() {
        answer["headers"] = Value::Object(
            signed
                .headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }
    Ok(Json(answer))
}
