//! Storage-triggered processing, OSCAR's everyday use: a file dropped into a bucket folder is
//! processed, and the results land in output folders.
//!
//! - [`spec`]: a definition's `storage_providers`, `input` and `output`, validated;
//! - [`event`]: storage event bodies (MinIO, AWS S3, SNS) posted to /job or /run;
//! - [`objects`]: streamed downloads and uploads with object_store;
//! - [`buckets`] and [`bucket_records`]: bucket administration for `/system/buckets`;
//! - [`embedded`]: the S3-compatible store `oscar-wasm serve` offers as `minio.default`;
//! - [`store_users`]: each OIDC user's own keys for the store;
//! - [`minio_admin`] and [`minio_users`]: those users made users of an external MinIO;
//! - [`poller`]: the optional poller of input folders on stores that send no notifications.
//!
//! This module joins them: which provider an event's object is read from, staging it as the
//! invocation's input, and uploading output files after a successful invocation.

pub mod bucket_records;
pub mod bucket_sizes;
pub mod buckets;
pub mod embedded;
pub mod event;
pub mod listing;
pub mod minio_admin;
pub mod minio_users;
pub mod mount_mirror;
pub mod names;
pub mod objects;
pub mod paged_fs;
pub mod poller_states;
pub mod spec;
pub mod store_users;

use crate::executor::invocation::Input;
use crate::faas::OutputFile;
use event::ObjectEvent;
use objects::ObjectError;
use spec::{DEFAULT_PROVIDER, Provider, StorageSpec};
use std::path::PathBuf;

/// Why a storage event's object is not read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The service declares no input folders.
    #[error(
        "the service has no input folders, so it takes no storage events; add an \"input\" entry naming the bucket folder it reads"
    )]
    NoInputs,
    /// The key is outside every input folder.
    #[error("the event's object s3://{bucket}/{key} is outside every input folder of the service")]
    Outside {
        /// The event's bucket.
        bucket: String,
        /// The event's key.
        key: String,
    },
    /// The input entry names a provider the service does not declare.
    #[error("provider {0} is not configured")]
    UnknownProvider(String),
}

/// The server's storage settings.
#[derive(Debug, Clone)]
pub struct Storage {
    /// `minio.default`: the embedded store, or the external one the flags name.
    pub default_provider: Provider,
    /// Where downloaded objects wait before they become an invocation's input (on the same
    /// file system as the scratch folders, so that moving one in is a rename).
    pub staging: PathBuf,
    /// The embedded store's folder of buckets, when it is `minio.default`.
    pub embedded_buckets: Option<PathBuf>,
    /// Read-only copies of external stores' `mount` folders.
    pub mirrors: std::sync::Arc<mount_mirror::Mirrors>,
}

impl Storage {
    /// The provider `reference` of a service.
    pub fn provider<'a>(&'a self, spec: &'a StorageSpec, reference: &str) -> Option<&'a Provider> {
        if reference == DEFAULT_PROVIDER {
            Some(&self.default_provider)
        } else {
            spec.providers.get(reference)
        }
    }

    /// The provider an event's object is read from: that of the input entry whose bucket and
    /// folder hold the key, with the credentials the service was given for it. A service
    /// without inputs takes no events (FaaS Supervisor falls back to `minio.default`, which
    /// would let anyone holding a service's token read any object of the store), and a key
    /// outside every input folder is refused.
    pub fn source_for<'a>(
        &'a self,
        spec: &'a StorageSpec,
        event: &ObjectEvent,
    ) -> Result<&'a Provider, SourceError> {
        if spec.inputs.is_empty() {
            return Err(SourceError::NoInputs);
        }
        let input =
            spec.input_for(&event.bucket, &event.key)
                .ok_or_else(|| SourceError::Outside {
                    bucket: event.bucket.clone(),
                    key: event.key.clone(),
                })?;
        self.provider(spec, &input.provider)
            .ok_or_else(|| SourceError::UnknownProvider(input.provider.clone()))
    }

    /// Downloads the event's object (streamed to a staging file) and makes it the invocation's
    /// input, named after the key's last segment, with FaaS Supervisor's variables. An object
    /// of the embedded store is copied from its folder instead: the same bytes the store would
    /// serve its own root keys, without a signed request to itself over loopback (a third of a
    /// bulk upload's cost per file).
    pub async fn stage(
        &self,
        provider: &Provider,
        event: &ObjectEvent,
    ) -> Result<(Input, u64), ObjectError> {
        let staged = self
            .staging
            .join(format!("{}-download", uuid::Uuid::new_v4().simple()));
        let copied = match &self.embedded_buckets {
            Some(root) if provider.reference == DEFAULT_PROVIDER => {
                let fail = ObjectError::maker("reading", provider, &event.bucket, &event.key);
                let (root, bucket, key, to, staging) = (
                    root.clone(),
                    event.bucket.clone(),
                    event.key.clone(),
                    staged.clone(),
                    self.staging.clone(),
                );
                // The staging folder is made (again, if it went) in the same blocking task as the
                // copy: one hop to the blocking pool per job, not two.
                let copy = move || {
                    std::fs::create_dir_all(&staging)
                        .map_err(|e| format!("creating {}: {e}", staging.display()))?;
                    copy_object(&root, &bucket, &key, &to).map_err(|e| e.to_string())
                };
                tokio::task::spawn_blocking(copy)
                    .await
                    .map_err(|e| fail(e.to_string()))
                    .and_then(|copied| copied.map_err(fail))
            }
            _ => {
                if let Err(e) = tokio::fs::create_dir_all(&self.staging).await {
                    let fail =
                        ObjectError::maker("downloading", provider, &event.bucket, &event.key);
                    return Err(fail(format!("creating {}: {e}", self.staging.display())));
                }
                objects::download(provider, &event.bucket, &event.key, &staged).await
            }
        };
        match copied {
            Ok(size) => Ok((
                Input::Object {
                    staged,
                    name: event.file_name().to_string(),
                    env: vec![
                        ("STORAGE_OBJECT_KEY".into(), event.key.clone()),
                        ("EVENT_TIME".into(), event.time.clone()),
                        ("EVENT".into(), event.event.clone()),
                    ],
                },
                size,
            )),
            Err(e) => {
                let _ = tokio::fs::remove_file(&staged).await;
                Err(e)
            }
        }
    }

    /// Uploads every output file to every output entry whose filters it passes, at
    /// `<folder>/<relative name>`; returns a log line per upload, or the first failure.
    pub async fn upload_outputs(
        &self,
        spec: &StorageSpec,
        files: &[OutputFile],
    ) -> Result<Vec<String>, ObjectError> {
        let mut lines = Vec::new();
        for output in &spec.outputs {
            let Some(provider) = self.provider(spec, &output.provider) else {
                continue;
            };
            for file in files.iter().filter(|f| output.accepts(&f.path)) {
                let key = output.key_for(&file.path);
                objects::upload(provider, &output.bucket, &key, file.bytes.clone()).await?;
                lines.push(format!(
                    "Uploaded {} to {} s3://{}/{key} ({} bytes)",
                    file.path,
                    provider.reference,
                    output.bucket,
                    file.bytes.len()
                ));
            }
        }
        Ok(lines)
    }

    /// Creates the embedded store's buckets that a service's `minio.default` paths name, as
    /// OSCAR creates its MinIO buckets when a service is created. External stores' buckets are
    /// their owners' to create.
    pub fn ensure_buckets(&self, spec: &StorageSpec) -> std::io::Result<()> {
        let Some(root) = &self.embedded_buckets else {
            return Ok(());
        };
        for path in spec.paths() {
            if path.provider == DEFAULT_PROVIDER {
                std::fs::create_dir_all(root.join(&path.bucket))?;
            }
        }
        if let Some(mount) = &spec.mount {
            std::fs::create_dir_all(root.join(&mount.bucket).join(&mount.folder))?;
        }
        Ok(())
    }

    /// Why a service's `mount` cannot be served, if it cannot: its provider must be known.
    pub fn check_mount(&self, spec: &StorageSpec) -> Result<(), String> {
        let Some(mount) = &spec.mount else {
            return Ok(());
        };
        match self.provider(spec, &mount.provider) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{} is not a provider the service declares",
                mount.provider
            )),
        }
    }

    /// Whether `mount` is a folder of the embedded store, preopened in place (read-write);
    /// otherwise it is an external store's, copied read-only ([`mount_mirror`]).
    pub fn mounts_in_place(&self, mount: &spec::StoragePath) -> bool {
        mount.provider == DEFAULT_PROVIDER && self.embedded_buckets.is_some()
    }

    /// The local copy of an external store's `mount` for `service`, up to date; `None` when
    /// the service mounts nothing or a folder of the embedded store.
    pub async fn mount_copy(
        &self,
        service: &str,
        spec: &StorageSpec,
    ) -> Result<Option<PathBuf>, String> {
        let Some(mount) = &spec.mount else {
            return Ok(None);
        };
        if self.mounts_in_place(mount) {
            return Ok(None);
        }
        let provider = self
            .provider(spec, &mount.provider)
            .ok_or_else(|| format!("provider {} is not configured", mount.provider))?;
        self.mirrors
            .sync(service, provider, mount)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Removes staged downloads left by a crash.
    pub fn clean_staging(&self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

#[cfg(test)]
impl Storage {
    /// Settings for unit tests: an unreachable `minio.default`, staging under `dir`.
    pub fn for_tests(dir: &std::path::Path) -> Self {
        Self {
            default_provider: Provider {
                reference: DEFAULT_PROVIDER.into(),
                endpoint: Some("http://127.0.0.1:9".into()),
                region: "us-east-1".into(),
                access_key: "a".into(),
                secret_key: "b".into(),
                verify: true,
            },
            staging: dir.join("staging"),
            embedded_buckets: None,
            mirrors: std::sync::Arc::new(mount_mirror::Mirrors::new(&dir.join("mounts"))),
        }
    }
}

/// Copies the embedded store's object `bucket/key` under `root` to `to`; returns its size.
/// Opened through cap-std on the bucket's folder, so that no key (`..`, an absolute path, a
/// link) reaches outside it.
fn copy_object(
    root: &std::path::Path,
    bucket: &str,
    key: &str,
    to: &std::path::Path,
) -> std::io::Result<u64> {
    names::check_bucket(bucket).map_err(std::io::Error::other)?;
    names::check_key(key).map_err(std::io::Error::other)?;
    let dir = cap_std::fs::Dir::open_ambient_dir(root.join(bucket), cap_std::ambient_authority())?;
    let mut from = dir.open(key)?;
    if !from.metadata()?.is_file() {
        return Err(std::io::Error::other("not an object"));
    }
    let mut file = std::fs::File::create(to)?;
    std::io::copy(&mut from, &mut file)
}

/// A MinIO-shaped event for an object created in the embedded store, as MinIO would post it.
pub fn minio_event(bucket: &str, key: &str) -> ObjectEvent {
    let time = crate::clock::rfc3339_ms(crate::clock::now_ms());
    let quoted: String =
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).collect();
    let event = serde_json::json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("{bucket}/{key}"),
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventTime": time,
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": quoted}}
        }]
    });
    ObjectEvent {
        source: "minio:s3".into(),
        bucket: bucket.to_string(),
        key: key.to_string(),
        time,
        event: event.to_string(),
        version: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_object_is_copied_and_no_key_leaves_its_bucket() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("buckets");
        std::fs::create_dir_all(root.join("photos/in")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("photos/in/a.png"), b"png").unwrap();
        std::fs::write(root.join("other/secret"), b"s").unwrap();
        std::fs::write(tmp.path().join("outside"), b"o").unwrap();
        std::os::unix::fs::symlink(root.join("other/secret"), root.join("photos/in/link")).unwrap();
        let to = tmp.path().join("staged");
        assert_eq!(copy_object(&root, "photos", "in/a.png", &to).unwrap(), 3);
        assert_eq!(std::fs::read(&to).unwrap(), b"png");
        for key in [
            "../other/secret",
            "/etc/passwd",
            "in/link",
            "in",
            "in/missing",
        ] {
            assert!(copy_object(&root, "photos", key, &to).is_err(), "{key}");
        }
        assert!(copy_object(&root, "..", "outside", &to).is_err());
    }
}
