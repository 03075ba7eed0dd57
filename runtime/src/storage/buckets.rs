//! Bucket administration on `minio.default`, embedded or external, through its S3 API: list
//! buckets, create one (with a folder), list a page of its objects, delete it with its
//! contents, and presigned URLs for one object. The same code serves both kinds of store, so
//! what `/system/buckets` shows is what any S3 client of that store sees.
//!
//! Requests are signed by rusty-s3 (SigV4 presigned URLs, no I/O of its own) and sent with
//! reqwest. ListBuckets, which rusty-s3 has no action for, is signed with its public signer and
//! its answer read with quick-xml.

use super::spec::Provider;
use rusty_s3::actions::{ListObjectsV2, ObjectIdentifier};
use rusty_s3::{Credentials, S3Action, UrlStyle};
use std::time::Duration;

/// How long the URLs this server signs for its own requests stay valid.
const OWN_REQUEST_VALIDITY: Duration = Duration::from_secs(300);
/// The largest answer read from the store.
const MAX_ANSWER: u64 = 16 << 20;
/// S3's largest page of keys, and the largest DeleteObjects batch.
pub const MAX_PAGE: usize = 1000;
/// The bounds OSCAR puts on a presigned URL's validity, in seconds.
pub const PRESIGN_EXPIRY: std::ops::RangeInclusive<u64> = 1..=7 * 24 * 3600;

/// A failed bucket operation.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The bucket does not exist.
    #[error("the bucket '{0}' does not exist")]
    NotFound(String),
    /// The bucket exists already.
    #[error("the bucket '{0}' already exists")]
    Exists(String),
    /// The store refused or failed the request.
    #[error("the store answered {operation} with {status}: {reason}")]
    Store {
        /// The S3 operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The store's code and message.
        reason: String,
    },
    /// A name or header the request gave is refused before anything is signed or sent.
    #[error("{0}")]
    Refused(String),
    /// The store could not be reached, or its answer could not be read.
    #[error("the store could not be reached for {operation}: {reason}")]
    Unreachable {
        /// The S3 operation.
        operation: &'static str,
        /// Why.
        reason: String,
    },
}

/// One bucket of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketEntry {
    /// Its name.
    pub name: String,
}

/// One object of a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectEntry {
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, as the store says it.
    pub last_modified: String,
}

/// A page of a bucket's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPage {
    /// The objects, in key order.
    pub objects: Vec<ObjectEntry>,
    /// The token of the next page, when there is one.
    pub next: Option<String>,
}

/// Whether a presigned URL reads or writes its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET the object.
    Download,
    /// PUT the object.
    Upload,
}

/// A signed URL and what its user must send with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Presigned {
    /// `GET` or `PUT`.
    pub method: &'static str,
    /// The URL.
    pub url: String,
    /// Headers that were signed, so the request must carry them unchanged.
    pub headers: Vec<(String, String)>,
}

/// An S3 client for bucket administration on one provider.
#[derive(Clone)]
pub struct BucketAdmin {
    endpoint: url::Url,
    style: UrlStyle,
    region: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl std::fmt::Debug for BucketAdmin {
    // Credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketAdmin")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl BucketAdmin {
    /// A client for `provider`; AWS S3 itself when it names no endpoint.
    pub fn new(provider: &Provider) -> Result<Self, String> {
        let (endpoint, style) = match &provider.endpoint {
            // MinIO, moto and the embedded store all take path-style requests.
            Some(endpoint) => (endpoint.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", provider.region),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint = url::Url::parse(&endpoint)
            .map_err(|e| format!("the store's endpoint {endpoint} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(!provider.verify)
            .build()
            .map_err(|e| format!("building the store's HTTP client: {e}"))?;
        Ok(Self {
            endpoint,
            style,
            region: provider.region.clone(),
            credentials: Credentials::new(&provider.access_key, &provider.secret_key),
            http,
        })
    }

    fn bucket(&self, name: &str) -> Result<rusty_s3::Bucket, BucketError> {
        rusty_s3::Bucket::new(
            self.endpoint.clone(),
            self.style,
            name.to_string(),
            self.region.clone(),
        )
        .map_err(|e| BucketError::Unreachable {
            operation: "addressing the bucket",
            reason: e.to_string(),
        })
    }

    /// Every bucket of the store, by name.
    pub async fn list(&self) -> Result<Vec<BucketEntry>, BucketError> {
        const OP: &str = "ListBuckets";
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.endpoint.clone(),
            self.credentials.key(),
            self.credentials.secret(),
            None,
            &self.region,
            OWN_REQUEST_VALIDITY.as_secs(),
            std::iter::empty(),
            std::iter::empty(),
        );
        let body = self.send(OP, self.http.get(url), None).await?;
        parse_bucket_list(&body).map_err(|reason| BucketError::Unreachable {
            operation: OP,
            reason,
        })
    }

    /// Creates `name`, and the folder `folder/` in it when given. A bucket that exists is
    /// [`BucketError::Exists`].
    pub async fn create(&self, name: &str, folder: Option<&str>) -> Result<(), BucketError> {
        let bucket = self.bucket(name)?;
        let url = bucket
            .create_bucket(&self.credentials)
            .sign(OWN_REQUEST_VALIDITY);
        // Some stores (moto, AWS) refuse a PUT without a length.
        let request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, 0);
        self.send("CreateBucket", request, Some(name)).await?;
        if let Some(folder) = folder {
            self.create_folder(&bucket, folder).await?;
        }
        Ok(())
    }

    /// Creates `name` unless it exists, then the folder markers `folders` in it (again or
    /// not: a marker is an empty object).
    pub async fn ensure(&self, name: &str, folders: &[String]) -> Result<(), BucketError> {
        match self.create(name, None).await {
            Ok(()) | Err(BucketError::Exists(_)) => {}
            Err(e) => return Err(e),
        }
        let bucket = self.bucket(name)?;
        for folder in folders.iter().filter(|f| !f.is_empty()) {
            self.create_folder(&bucket, folder).await?;
        }
        Ok(())
    }

    async fn create_folder(
        &self,
        bucket: &rusty_s3::Bucket,
        folder: &str,
    ) -> Result<(), BucketError> {
        let key = format!("{}/", folder.trim_end_matches('/'));
        let url = bucket
            .put_object(Some(&self.credentials), &key)
            .sign(OWN_REQUEST_VALIDITY);
        self.send(
            "PutObject",
            self.http.put(url).body(""),
            Some(bucket.name()),
        )
        .await
        .map(drop)
    }

    /// Whether `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool, BucketError> {
        let bucket = self.bucket(name)?;
        let url = bucket
            .head_bucket(Some(&self.credentials))
            .sign(OWN_REQUEST_VALIDITY);
        match self
            .send("HeadBucket", self.http.head(url), Some(name))
            .await
        {
            Ok(_) => Ok(true),
            Err(BucketError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) objects of `name`, from the page `token` names.
    pub async fn objects(
        &self,
        name: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<ObjectPage, BucketError> {
        const OP: &str = "ListObjectsV2";
        let bucket = self.bucket(name)?;
        let mut action = bucket.list_objects_v2(Some(&self.credentials));
        action.with_max_keys(limit.clamp(1, MAX_PAGE));
        if let Some(token) = token {
            action.with_continuation_token(token.to_string());
        }
        let url = action.sign(OWN_REQUEST_VALIDITY);
        let body = self.send(OP, self.http.get(url), Some(name)).await?;
        let text = String::from_utf8_lossy(&body);
        let page = ListObjectsV2::parse_response(&text).map_err(|e| BucketError::Unreachable {
            operation: OP,
            reason: format!("the answer is not a ListBucketResult: {e}"),
        })?;
        Ok(ObjectPage {
            objects: page
                .contents
                .into_iter()
                .map(|o| ObjectEntry {
                    key: o.key,
                    size: o.size.unwrap_or(0),
                    last_modified: o.last_modified.unwrap_or_default(),
                })
                .collect(),
            next: page.next_continuation_token,
        })
    }

    /// Deletes `name` and everything in it, a page of keys at a time (S3 deletes only empty
    /// buckets).
    pub async fn delete(&self, name: &str) -> Result<(), BucketError> {
        let bucket = self.bucket(name)?;
        let mut previous_first: Option<String> = None;
        loop {
            let page = self.objects(name, None, MAX_PAGE).await?;
            let Some(first) = page.objects.first().map(|o| o.key.clone()) else {
                break;
            };
            // A store that reports success but keeps the objects would loop here forever.
            if previous_first.as_ref() == Some(&first) {
                return Err(BucketError::Store {
                    operation: "DeleteObjects",
                    status: 200,
                    reason: format!("the store reported {first} deleted but still lists it"),
                });
            }
            previous_first = Some(first);
            self.delete_keys(&bucket, page.objects).await?;
        }
        let url = bucket
            .delete_bucket(&self.credentials)
            .sign(OWN_REQUEST_VALIDITY);
        self.send("DeleteBucket", self.http.delete(url), Some(name))
            .await
            .map(drop)
    }

    async fn delete_keys(
        &self,
        bucket: &rusty_s3::Bucket,
        objects: Vec<ObjectEntry>,
    ) -> Result<(), BucketError> {
        const OP: &str = "DeleteObjects";
        let keys: Vec<ObjectIdentifier> = objects
            .into_iter()
            .map(|o| ObjectIdentifier::new(o.key))
            .collect();
        let mut action = bucket.delete_objects(Some(&self.credentials), keys.iter());
        action.set_quiet(true);
        let url = action.sign(OWN_REQUEST_VALIDITY);
        let (body, md5) = action.body_with_md5();
        let request = self.http.post(url).header("Content-MD5", md5).body(body);
        let answer = self.send(OP, request, Some(bucket.name())).await?;
        let text = String::from_utf8_lossy(&answer);
        let result = rusty_s3::actions::DeleteObjectsResponse::parse(&text).map_err(|e| {
            BucketError::Unreachable {
                operation: OP,
                reason: format!("the answer is not a DeleteResult: {e}"),
            }
        })?;
        match result.errors.first() {
            None => Ok(()),
            Some(first) => Err(BucketError::Store {
                operation: OP,
                status: 200,
                reason: format!(
                    "{} of {} keys were not deleted, the first ({}) because {}",
                    result.errors.len(),
                    keys.len(),
                    first.key,
                    first.message
                ),
            }),
        }
    }

    /// A URL that lets its holder download or upload `bucket/key` for `expires`. An upload's
    /// content type is signed, so the upload must send it.
    pub fn presign(
        &self,
        bucket: &str,
        key: &str,
        access: Access,
        expires: Duration,
        content_type: Option<&str>,
        extra_headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<Presigned, BucketError> {
        super::names::check_bucket(bucket).map_err(|e| BucketError::Refused(e.to_string()))?;
        super::names::check_key(key).map_err(|e| BucketError::Refused(e.to_string()))?;
        if let Some(name) = extra_headers.keys().find(|name| !presignable(name)) {
            return Err(BucketError::Refused(format!(
                "extra_headers names '{name}', which a presigned URL does not sign: only {PRESIGNABLE}"
            )));
        }
        let bucket = self.bucket(bucket)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        if let (Access::Upload, Some(ct)) = (access, content_type) {
            headers.push(("content-type".into(), ct.to_string()));
        }
        for (name, value) in extra_headers {
            let name = name.trim().to_ascii_lowercase();
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value.trim().to_string()));
        }
        let mut signed = match access {
            Access::Download => {
                let mut action = bucket.get_object(Some(&self.credentials), key);
                if let Some(ct) = content_type {
                    action
                        .query_mut()
                        .insert("response-content-type", ct.to_string());
                }
                for (name, value) in &headers {
                    action.headers_mut().insert(name.clone(), value.clone());
                }
                Presigned {
                    method: "GET",
                    url: action.sign(expires).to_string(),
                    headers: Vec::new(),
                }
            }
            Access::Upload => {
                let mut action = bucket.put_object(Some(&self.credentials), key);
                for (name, value) in &headers {
                    action.headers_mut().insert(name.clone(), value.clone());
                }
                Presigned {
                    method: "PUT",
                    url: action.sign(expires).to_string(),
                    headers: Vec::new(),
                }
            }
        };
        // The request must carry every signed header unchanged; named as HTTP writes them.
        signed.headers = headers
            .into_iter()
            .map(|(name, value)| (canonical_header_name(&name), value))
            .collect();
        Ok(signed)
    }

    /// Sends `request`; the body of a 2xx answer, or the store's error as a [`BucketError`]
    /// (`bucket` names the bucket a 404 or a 409 is about).
    async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
        bucket: Option<&str>,
    ) -> Result<bytes::Bytes, BucketError> {
        let unreachable = |e: reqwest::Error| BucketError::Unreachable {
            operation,
            reason: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        // A page of 1,000 keys of 1 KiB with their XML fits many times over.
        let body = crate::bounded::read(response, MAX_ANSWER)
            .await
            .map_err(|e| BucketError::Unreachable {
                operation,
                reason: e.to_string(),
            })?;
        if status.is_success() {
            return Ok(body);
        }
        let (code, message) = parse_error(&body);
        match (code.as_str(), bucket) {
            ("NoSuchBucket", Some(b)) => return Err(BucketError::NotFound(b.to_string())),
            ("BucketAlreadyOwnedByYou" | "BucketAlreadyExists", Some(b)) => {
                return Err(BucketError::Exists(b.to_string()));
            }
            // HEAD answers have no body to name the error.
            ("", Some(b)) if status == reqwest::StatusCode::NOT_FOUND => {
                return Err(BucketError::NotFound(b.to_string()));
            }
            _ => {}
        }
        let reason = match (code.is_empty(), message.is_empty()) {
            (true, _) => status.canonical_reason().unwrap_or("error").to_string(),
            (false, true) => code,
            (false, false) => format!("{code}: {message}"),
        };
        Err(BucketError::Store {
            operation,
            status: status.as_u16(),
            reason,
        })
    }
}

/// `content-type` as `Content-Type`, as Go's http.CanonicalHeaderKey writes it.
fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The names in a ListAllMyBucketsResult document.
fn parse_bucket_list(body: &[u8]) -> Result<Vec<BucketEntry>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Result {
        #[serde(default)]
        buckets: Buckets,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Buckets {
        #[serde(default)]
        bucket: Vec<Bucket>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Bucket {
        name: String,
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("the answer is not UTF-8: {e}"))?;
    let result: Result = quick_xml::de::from_str(text)
        .map_err(|e| format!("the answer is not a ListAllMyBucketsResult: {e}"))?;
    Ok(result
        .buckets
        .bucket
        .into_iter()
        .map(|b| BucketEntry { name: b.name })
        .collect())
}

/// The code and message of an S3 error document; empty when the body is not one.
fn parse_error(body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Error {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| quick_xml::de::from_str::<Error>(text).ok())
        .map(|e| (e.code, e.message))
        .unwrap_or_default()
}

/// The headers a presigned URL may sign: those a browser upload or download sends about its
/// own object. Anything else (above all `x-amz-copy-source`, which would turn an upload into
/// a copy out of another bucket) is refused.
const PRESIGNABLE: &str = "content-type, content-md5, content-disposition, content-encoding, content-language, cache-control, expires, range, if-match, if-none-match, if-modified-since, if-unmodified-since, x-amz-meta-*, x-amz-checksum-*";

/// Whether `name` is in [`PRESIGNABLE`].
pub fn presignable(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    matches!(
        name.as_str(),
        "content-type"
            | "content-md5"
            | "content-disposition"
            | "content-encoding"
            | "content-language"
            | "cache-control"
            | "expires"
            | "range"
            | "if-match"
            | "if-none-match"
            | "if-modified-since"
            | "if-unmodified-since"
    ) || ["x-amz-meta-", "x-amz-checksum-"]
        .iter()
        .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bucket_list() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>x</ID></Owner><Buckets><Bucket><Name>a-1</Name><CreationDate>2026-11-26T10:00:00.000Z</CreationDate></Bucket><Bucket><Name>b.2</Name><CreationDate>2026-11-26T10:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"#;
        let names: Vec<_> = parse_bucket_list(xml)
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["a-1", "b.2"]);
        let empty = br#"<ListAllMyBucketsResult><Owner><ID>x</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>"#;
        assert!(parse_bucket_list(empty).unwrap().is_empty());
        assert!(parse_bucket_list(b"<html>").is_err());
    }

    #[test]
    fn reads_an_error_document() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"#;
        assert_eq!(
            parse_error(xml),
            (
                "NoSuchBucket".into(),
                "The specified bucket does not exist".into()
            )
        );
        assert_eq!(parse_error(b""), (String::new(), String::new()));
    }

    #[test]
    fn bucket_names_follow_s3() {
        for good in ["abc", "my-bucket.1", "0-9"] {
            assert!(super::super::names::check_bucket(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            &"a".repeat(64),
            "a/b",
        ] {
            assert!(super::super::names::check_bucket(bad).is_err(), "{bad}");
        }
    }
}
