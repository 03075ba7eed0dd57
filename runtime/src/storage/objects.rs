//! Reading and writing objects of an S3-compatible provider, with `object_store`: downloads are
//! streamed to a file (never whole in memory), large uploads are multipart, and transient
//! errors are retried with exponential backoff by the client itself. Clients are kept per
//! provider and bucket ([`bucket`]), so that their connections are reused.

use super::spec::Provider;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Files above this are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 16 << 20;

/// A failed storage operation, saying which object and why (credentials never appear).
#[derive(Debug, thiserror::Error)]
#[error("{operation} {provider} s3://{bucket}/{key}: {reason}")]
pub struct ObjectError {
    /// `downloading` or `uploading`.
    pub operation: &'static str,
    /// The provider reference.
    pub provider: String,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl ObjectError {
    /// A maker of this operation's errors on `bucket/key`, given the reason.
    pub(crate) fn maker<'a>(
        operation: &'static str,
        provider: &'a Provider,
        bucket: &'a str,
        key: &'a str,
    ) -> impl Fn(String) -> ObjectError + 'a {
        move |reason| ObjectError {
            operation,
            provider: provider.reference.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            reason,
        }
    }
}

/// What a kept client was built from: the provider's every setting (a changed secret gets a
/// new client) and the bucket.
type ClientKey = (String, Option<String>, String, String, String, bool, String);

/// Most clients kept; past it the cache starts over (a server reaches few providers and
/// buckets; this bounds one that is handed many).
const MAX_CLIENTS: usize = 256;

/// Clients built so far. Building one loads the system's CA certificates (hundreds of files
/// read) and starts a connection pool: once per download or upload, that was 10 ms of CPU per
/// bucket-triggered job and a new connection for each request.
static CLIENTS: LazyLock<Mutex<HashMap<ClientKey, Arc<dyn ObjectStore>>>> =
    LazyLock::new(Mutex::default);

/// A client for one bucket of `provider`, kept for the next call.
pub fn bucket(
    provider: &Provider,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let key: ClientKey = (
        provider.reference.clone(),
        provider.endpoint.clone(),
        provider.region.clone(),
        provider.access_key.clone(),
        provider.secret_key.clone(),
        provider.verify,
        bucket.to_string(),
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let client: Arc<dyn ObjectStore> = Arc::new(build(provider, bucket)?);
    if clients.len() >= MAX_CLIENTS {
        clients.clear();
    }
    clients.insert(key, client.clone());
    Ok(client)
}

fn build(
    provider: &Provider,
    bucket: &str,
) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&provider.region)
        .with_access_key_id(&provider.access_key)
        .with_secret_access_key(&provider.secret_key)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(60),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_invalid_certificates(!provider.verify),
        );
    if let Some(endpoint) = &provider.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(true)
            // MinIO, moto and the embedded store all take path-style requests.
            .with_virtual_hosted_style_request(false);
    }
    builder.build()
}

fn object_path(key: &str) -> Result<ObjectPath, String> {
    ObjectPath::parse(key).map_err(|e| format!("the key cannot be used: {e}"))
}

/// Streams `bucket/key` into the file `dest`; returns its size.
pub async fn download(
    provider: &Provider,
    bucket_name: &str,
    key: &str,
    dest: &Path,
) -> Result<u64, ObjectError> {
    let fail = ObjectError::maker("downloading", provider, bucket_name, key);
    let store = bucket(provider, bucket_name).map_err(|e| fail(e.to_string()))?;
    let path = object_path(key).map_err(&fail)?;
    let result = store.get(&path).await.map_err(|e| fail(e.to_string()))?;
    let mut stream = result.into_stream();
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| fail(format!("creating the input file: {e}")))?;
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(e.to_string()))?;
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| fail(format!("writing the input file: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| fail(format!("writing the input file: {e}")))?;
    Ok(size)
}

/// Uploads `bytes` to `bucket/key`, in parts when large.
pub async fn upload(
    provider: &Provider,
    bucket_name: &str,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(), ObjectError> {
    let fail = ObjectError::maker("uploading", provider, bucket_name, key);
    let store = bucket(provider, bucket_name).map_err(|e| fail(e.to_string()))?;
    let path = object_path(key).map_err(&fail)?;
    if bytes.len() <= MULTIPART_THRESHOLD {
        store
            .put(&path, bytes.into())
            .await
            .map_err(|e| fail(e.to_string()))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(&path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 8 << 20);
    writer.write(&bytes);
    writer.finish().await.map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_kept_per_provider_settings_and_bucket() {
        let provider = Provider {
            reference: "minio.kept".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key: "key".into(),
            secret_key: "secret".into(),
            verify: true,
        };
        let first = bucket(&provider, "b").unwrap();
        assert!(Arc::ptr_eq(&first, &bucket(&provider, "b").unwrap()));
        assert!(!Arc::ptr_eq(&first, &bucket(&provider, "other").unwrap()));
        let rotated = Provider {
            secret_key: "new secret".into(),
            ..provider
        };
        assert!(!Arc::ptr_eq(&first, &bucket(&rotated, "b").unwrap()));
    }
}
