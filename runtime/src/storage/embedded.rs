//! The embedded S3-compatible store: `minio.default` when no external store is configured, so
//! that `oscar-wasm serve` alone gives working buckets. s3s speaks S3 (SigV4 checked against
//! the store's own keys, see [`stored_keys`]), s3s-fs keeps buckets as folders of the data
//! folder ([`super::paged_fs`], with listings paged by [`super::listing`]).
//!
//! Every object created through it (PUT, copy, completed multipart upload) is reported to a
//! hook before the client gets its answer, so a client that saw success knows the service's
//! job was accepted: each upload enqueues exactly once.

use futures::future::BoxFuture;
use hyper::body::Incoming;
use s3s::service::S3Service;
use std::path::Path;
use std::sync::Arc;

/// Called with (bucket, key) for each object created; returns when it has acted on it, with
/// why it could not (the upload is then answered `503 SlowDown`, for the client to retry).
pub type CreatedHook =
    Arc<dyn Fn(String, String) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The embedded store's keys kept in `<data_dir>/store-keys.json` (owner-only), made on first
/// use: a 20-character access key and a 40-character secret, as AWS shapes them.
pub fn stored_keys(data_dir: &Path) -> std::io::Result<(String, String)> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Keys {
        access_key: String,
        secret_key: String,
    }
    let path = data_dir.join("store-keys.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let keys: Keys = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!("{} is not valid: {e}", path.display()))
            })?;
            return Ok((keys.access_key, keys.secret_key));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut pick = |alphabet: &[u8], n: usize| -> String {
        (0..n)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect()
    };
    let keys = Keys {
        access_key: pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20),
        secret_key: pick(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            40,
        ),
    };
    let bytes = serde_json::to_vec_pretty(&keys).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(&path, &bytes)?;
    Ok((keys.access_key, keys.secret_key))
}

/// Who may reach a bucket with a user's keys: `(user, bucket) -> allowed`.
pub type BucketAccess = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The bytes a bucket may hold, from its owner's `storage_per_bucket` quota: `bucket ->
/// limit`.
pub type BucketByteLimit = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// Who may use the store: the administrator's keys (everything), and each OIDC user's (their
/// own buckets, those shared with them, and those of services they may use).
pub struct StoreAuth {
    /// The administrator's access key.
    pub access_key: String,
    /// The administrator's secret key.
    pub secret_key: String,
    /// Users' keys.
    pub users: Arc<super::store_users::StoreUsers>,
    /// The rule for users' keys.
    pub access: BucketAccess,
    /// The per-bucket byte quotas, for every writer (the administrator's keys too: the
    /// server's own uploads of invocations' outputs are writes into the user's bucket).
    pub byte_limit: BucketByteLimit,
    /// What the buckets hold.
    pub sizes: Arc<super::bucket_sizes::BucketSizes>,
}

/// Checks a request's signature against [`StoreAuth`]'s keys.
struct Keys(Arc<StoreAuth>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        let auth = &self.0;
        if crate::auth::secrets_equal(access_key.as_bytes(), auth.access_key.as_bytes()) {
            return Ok(auth.secret_key.clone().into());
        }
        match auth.users.by_access_key(access_key) {
            Some((_, secret)) => Ok(secret.into()),
            None => Err(s3s::s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// Applies [`StoreAuth`]'s rule to every request: the names it carries must be canonical
/// ([`super::names`]), whoever signed it, and a user's keys reach only the buckets open to that
/// user, for the bucket in the path and for every other object the request names (a copy's
/// source). The table in SECURITY.md lists each operation and its rule.
struct StoreAccess(Arc<StoreAuth>);

impl StoreAccess {
    /// The user behind a request's keys; `None` for the administrator's.
    fn user_of(&self, access_key: &str) -> s3s::S3Result<Option<String>> {
        let keys = &self.0;
        if crate::auth::secrets_equal(access_key.as_bytes(), keys.access_key.as_bytes()) {
            return Ok(None);
        }
        match keys.users.by_access_key(access_key) {
            Some((user, _)) => Ok(Some(user)),
            None => Err(s3s::s3_error!(AccessDenied)),
        }
    }

    /// Refuses `bucket` unless the request's keys may use it.
    fn require_bucket<T>(&self, req: &s3s::S3Request<T>, bucket: &str) -> s3s::S3Result<()> {
        let Some(credentials) = &req.credentials else {
            return Err(s3s::s3_error!(
                AccessDenied,
                "anonymous requests are refused"
            ));
        };
        match self.user_of(&credentials.access_key)? {
            Some(user) if !(self.0.access)(&user, bucket) => Err(s3s::s3_error!(
                AccessDenied,
                "this user may not use the bucket {bucket}"
            )),
            _ => Ok(()),
        }
    }

    /// A copy's source: a canonical key in a bucket the keys may read.
    fn copy_source<T>(
        &self,
        req: &s3s::S3Request<T>,
        source: &s3s::dto::CopySource,
    ) -> s3s::S3Result<()> {
        let s3s::dto::CopySource::Bucket { bucket, key, .. } = source else {
            return Err(s3s::s3_error!(
                NotImplemented,
                "copy sources are path-style bucket/key names here"
            ));
        };
        checked(super::names::check_bucket(bucket))?;
        checked(super::names::check_key(key))?;
        self.require_bucket(req, bucket)
    }
}

impl StoreAccess {
    /// The bytes a copy adds: its source object's size (0 when it is not a file here).
    fn copy_size(&self, source: &s3s::dto::CopySource) -> u64 {
        match source {
            s3s::dto::CopySource::Bucket { bucket, key, .. } => {
                self.0.sizes.object(bucket, key).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Refuses a write of `incoming` bytes into `bucket` past its owner's `storage_per_bucket`
    /// quota, as MinIO's hard bucket quota does; counts it otherwise.
    fn within_quota(&self, bucket: &str, incoming: u64) -> s3s::S3Result<()> {
        let Some(limit) = (self.0.byte_limit)(bucket) else {
            return Ok(());
        };
        let held = self.0.sizes.recent(bucket);
        if held.saturating_add(incoming) > limit {
            let mut error = s3s::S3Error::with_message(
                s3s::S3ErrorCode::Custom("XMinioAdminBucketQuotaExceeded".into()),
                format!(
                    "the bucket {bucket} is over its owner's storage_per_bucket quota of {limit} bytes: it holds {held} and this write adds {incoming} (GET /system/quotas/user shows the quotas)"
                ),
            );
            error.set_status_code(hyper::StatusCode::FORBIDDEN);
            return Err(error);
        }
        self.0.sizes.added(bucket, incoming);
        Ok(())
    }
}

/// A refused name as S3's error.
fn checked(result: Result<(), super::names::NameError>) -> s3s::S3Result<()> {
    result.map_err(|e| s3s::S3Error::with_message(s3s::S3ErrorCode::InvalidArgument, e.to_string()))
}

#[async_trait::async_trait]
impl s3s::access::S3Access for StoreAccess {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let Some(credentials) = cx.credentials() else {
            return Err(s3s::s3_error!(
                AccessDenied,
                "anonymous requests are refused"
            ));
        };
        // Canonical names for every caller: the store keeps objects as files under
        // <bucket>/<key>, so `..` in a key would reach another bucket.
        let bucket = match cx.s3_path() {
            s3s::path::S3Path::Root => None,
            s3s::path::S3Path::Bucket { bucket } => {
                checked(super::names::check_bucket(bucket))?;
                Some(bucket.to_string())
            }
            s3s::path::S3Path::Object { bucket, key } => {
                checked(super::names::check_bucket(bucket))?;
                checked(super::names::check_key(key))?;
                Some(bucket.to_string())
            }
        };
        let Some(user) = self.user_of(&credentials.access_key)? else {
            return Ok(());
        };
        let Some(bucket) = bucket else {
            // ListBuckets: names only (the dashboard lists them, then asks the API).
            return Ok(());
        };
        // Buckets are made and removed through /system/buckets, which records owners.
        if matches!(cx.s3_op().name(), "CreateBucket" | "DeleteBucket") {
            return Err(s3s::s3_error!(
                AccessDenied,
                "users create and delete buckets through /system/buckets"
            ));
        }
        if (self.0.access)(&user, &bucket) {
            Ok(())
        } else {
            Err(s3s::s3_error!(
                AccessDenied,
                "this user may not use the bucket {bucket}"
            ))
        }
    }

    async fn put_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::PutObjectInput>,
    ) -> s3s::S3Result<()> {
        let incoming = req.input.content_length.map_or(0, |n| n.max(0) as u64);
        self.within_quota(&req.input.bucket, incoming)
    }

    async fn upload_part(
        &self,
        req: &mut s3s::S3Request<s3s::dto::UploadPartInput>,
    ) -> s3s::S3Result<()> {
        let incoming = req.input.content_length.map_or(0, |n| n.max(0) as u64);
        self.within_quota(&req.input.bucket, incoming)
    }

    async fn copy_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::CopyObjectInput>,
    ) -> s3s::S3Result<()> {
        self.copy_source(req, &req.input.copy_source)?;
        self.within_quota(&req.input.bucket, self.copy_size(&req.input.copy_source))
    }

    async fn upload_part_copy(
        &self,
        req: &mut s3s::S3Request<s3s::dto::UploadPartCopyInput>,
    ) -> s3s::S3Result<()> {
        self.copy_source(req, &req.input.copy_source)?;
        self.within_quota(&req.input.bucket, self.copy_size(&req.input.copy_source))
    }

    async fn delete_objects(
        &self,
        req: &mut s3s::S3Request<s3s::dto::DeleteObjectsInput>,
    ) -> s3s::S3Result<()> {
        for object in &req.input.delete.objects {
            checked(super::names::check_key(&object.key))?;
        }
        Ok(())
    }

    async fn list_objects(
        &self,
        req: &mut s3s::S3Request<s3s::dto::ListObjectsInput>,
    ) -> s3s::S3Result<()> {
        checked(super::names::check_prefix(
            req.input.prefix.as_deref().unwrap_or(""),
        ))
    }

    async fn list_objects_v2(
        &self,
        req: &mut s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> s3s::S3Result<()> {
        checked(super::names::check_prefix(
            req.input.prefix.as_deref().unwrap_or(""),
        ))
    }
}

/// Builds the S3 service over `root` (created when missing).
pub fn service(root: &Path, auth: StoreAuth) -> std::io::Result<S3Service> {
    crate::fsutil::create_private_dir(root)?;
    let fs = super::paged_fs::PagedFs::new(root)?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        limits(),
    ))));
    let auth = Arc::new(auth);
    builder.set_auth(Keys(auth.clone()));
    builder.set_access(StoreAccess(auth));
    Ok(builder.build())
}

/// The largest XML body the store reads (DeleteObjects of 1,000 keys of 1 KiB, or a
/// CompleteMultipartUpload of 10,000 parts, fit): XML bodies are read whole before parsing.
const MAX_XML_BODY: usize = 2 << 20;

/// s3s's bounds for what clients send. Browser form uploads (POST object) are refused before
/// s3s sees them (see [`is_form_upload`]), so the form bounds are AWS's own only as a second
/// line.
fn limits() -> s3s::config::S3Config {
    let mut config = s3s::config::S3Config::default();
    config.xml_max_body_size = MAX_XML_BODY;
    config.form_max_fields_size = 20 << 10;
    config.form_max_field_size = 20 << 10;
    config.form_max_parts = 64;
    config.post_object_max_file_size = 0;
    config
}

/// Whether a request is a browser form upload (S3's POST object): a multipart form POSTed to
/// a bucket. s3s reads such a form, file included, into memory before it checks the form's
/// signature, so an anonymous client could make the server buffer gigabytes; the store
/// refuses them before reading a byte. Presigned PUT URLs (POST
/// /system/buckets/{bucket}/presign) do the same job with a bounded, signed request.
pub fn is_form_upload(method: &hyper::Method, headers: &hyper::HeaderMap) -> bool {
    *method == hyper::Method::POST
        && headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

/// S3's error document for a refused form upload.
fn form_upload_refused() -> s3s::HttpResponse {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code><Message>browser form uploads (POST object) are not served by this store: use a presigned PUT URL (POST /system/buckets/{bucket}/presign)</Message></Error>";
    let mut response = s3s::HttpResponse::new(s3s::Body::from(body.to_string()));
    *response.status_mut() = hyper::StatusCode::NOT_IMPLEMENTED;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    // The body is not read: the connection cannot be reused.
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

/// Serves `s3` on `listener` within `limits` until `shutdown`, reporting created objects to
/// `hook`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    s3: S3Service,
    hook: CreatedHook,
    limits: crate::listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (s3, hook) = (s3.clone(), hook.clone());
        async move {
            // Browsers (the dashboard at /ui) use presigned URLs from another origin: answer
            // their preflight here. Every request still needs a valid signature.
            if request.method() == hyper::Method::OPTIONS {
                let mut response = s3s::HttpResponse::new(s3s::Body::empty());
                *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                allow_browsers(response.headers_mut());
                return Ok(response);
            }
            if is_form_upload(request.method(), request.headers()) {
                let mut response = form_upload_refused();
                allow_browsers(response.headers_mut());
                return Ok(response);
            }
            let created = created_object(request.method(), request.uri());
            let mut response = hyper::service::Service::call(&s3, request).await?;
            if response.status().is_success()
                && let Some((bucket, key)) = created
                && let Err(why) = hook(bucket, key).await
            {
                response = slow_down(&why);
            }
            allow_browsers(response.headers_mut());
            Ok::<_, s3s::HttpError>(response)
        }
    });
    crate::listener::serve(listener, service, limits, shutdown).await;
}

/// S3's answer to a client that should send again later.
fn slow_down(why: &str) -> s3s::HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>{}</Message></Error>",
        xml_escape(why)
    );
    let mut response = s3s::HttpResponse::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Text made safe inside an XML element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// CORS for signed requests from any page: no cookies are involved, and the signature, not
/// the origin, is what authorises a request.
fn allow_browsers(headers: &mut hyper::HeaderMap) {
    use hyper::header::HeaderValue;
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, PUT, HEAD, POST, DELETE"),
    );
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("*"),
    );
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("ETag"),
    );
}

/// The (bucket, key) a request creates, if it creates an object: a PUT of an object (a copy
/// included) that is not a part or a sub-resource, or the POST that completes a multipart
/// upload. Path-style addressing (`/bucket/key`), as every client of this store uses.
pub fn created_object(method: &hyper::Method, uri: &hyper::Uri) -> Option<(String, String)> {
    let query = uri.query().unwrap_or("");
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(p))
        .collect();
    let creates = match *method {
        hyper::Method::PUT => params.iter().all(|p| {
            // Presigned uploads carry X-Amz-* parameters; sub-resources and parts do not create.
            p.starts_with("X-Amz-") || p.starts_with("x-amz-")
        }),
        hyper::Method::POST => params.contains(&"uploadId"),
        _ => false,
    };
    if !creates {
        return None;
    }
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8()
        .ok()?;
    let (bucket, key) = path.trim_start_matches('/').split_once('/')?;
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return None;
    }
    Some((bucket.to_string(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(method: &str, uri: &str) -> Option<(String, String)> {
        created_object(&method.parse().unwrap(), &uri.parse().unwrap())
    }

    #[test]
    fn recognises_object_creation() {
        assert_eq!(
            created("PUT", "/in/photos/a%20b%2B%C3%A9.png"),
            Some(("in".into(), "photos/a b+é.png".into()))
        );
        assert_eq!(
            created("POST", "/in/big.bin?uploadId=xyz"),
            Some(("in".into(), "big.bin".into()))
        );
        assert!(created("PUT", "/in/big.bin?partNumber=1&uploadId=xyz").is_none());
        assert!(created("PUT", "/in/a.png?tagging").is_none());
        assert!(created("PUT", "/in").is_none());
        assert!(created("PUT", "/in/folder/").is_none());
        assert!(created("GET", "/in/a.png").is_none());
        assert!(created("POST", "/in/a.png?uploads").is_none());
        assert!(created("DELETE", "/in/a.png").is_none());
    }
}
