//! Modules' bytes in a cluster: the JetStream object store `oscar_modules`, one object per
//! module named by its hex digest (and script services' packages the same way in
//! `oscar_packages`). Every server compiles and caches its own artifacts (they
//! depend on its wasmtime build and CPU), so only the uploaded bytes are shared. Also the
//! object-store helpers that the job files use.

use super::{Cluster, ClusterError, names, store_error};
use crate::modules::{Digest, ModuleBlobs};
use crate::stores::StoreError;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::Stream;
use base64::Engine as _;
use futures::StreamExt;
use sha2::Digest as _;

/// An object store and its stream, whose chunks are read through the stream's leader.
#[derive(Clone)]
pub struct Objects {
    /// The object store.
    pub store: ObjectStore,
    bucket: String,
    stream: Stream,
}

impl Objects {
    /// Opens (creating) the object store `bucket`.
    pub async fn open(cluster: &Cluster, bucket: &str) -> Result<Self, ClusterError> {
        let store = cluster.object_store(bucket).await?;
        let stream = cluster
            .jetstream
            .get_stream(format!("OBJ_{bucket}"))
            .await
            .map_err(|e| ClusterError::JetStream {
                what: format!("object store {bucket}"),
                reason: e.to_string(),
            })?;
        Ok(Self {
            store,
            bucket: bucket.to_string(),
            stream,
        })
    }
}

/// Modules in an object store.
pub struct NatsModules {
    objects: Objects,
}

impl NatsModules {
    /// Opens (creating) the object store.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            objects: Objects::open(cluster, names::MODULES).await?,
        })
    }

    /// Opens (creating) the object store of script services' packages, `oscar_packages`.
    pub async fn open_packages(cluster: &Cluster) -> Result<Self, ClusterError> {
        Ok(Self {
            objects: Objects::open(cluster, names::PACKAGES).await?,
        })
    }
}

/// An object's size; `None` when there is none (or it was deleted).
pub(super) async fn size(store: &ObjectStore, name: &str) -> Result<Option<u64>, StoreError> {
    match store.info(name).await {
        Ok(info) if !info.deleted => Ok(Some(info.size as u64)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(store_error(name, e)),
    }
}

/// An object's bytes, checked against its digest; `None` when there is none.
///
/// The chunks are read one by one through the stream's leader (which holds every
/// acknowledged write; a replica that lost unflushed writes in a crash may not yet), rather
/// than through the client's `get`: that creates a consumer per read, and NATS 2.9 may place
/// it on a server that is down, so reads time out while a NATS server is missing.
pub(super) async fn read(objects: &Objects, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let info = match objects.store.info(name).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store_error(name, e)),
    };
    let subject = format!("$O.{}.C.{}", objects.bucket, info.nuid);
    let mut bytes = Vec::with_capacity(info.size);
    let mut next = 1;
    for _ in 0..info.chunks {
        let chunk = objects
            .stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(subject.as_str())
            .send()
            .await
            .map_err(|e| store_error(name, e))?;
        if bytes.len() + chunk.payload.len() > info.size {
            return Err(store_error(
                name,
                "the stored object is larger than its size",
            ));
        }
        bytes.extend_from_slice(&chunk.payload);
        next = chunk.sequence + 1;
    }
    let digest = format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(&bytes))
    );
    if bytes.len() != info.size || info.digest.as_deref().is_some_and(|d| d != digest) {
        return Err(store_error(
            name,
            "the stored object does not match its digest",
        ));
    }
    Ok(Some(bytes))
}

/// Stores an object (replicated when this returns).
pub(super) async fn write(store: &ObjectStore, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let mut reader = bytes;
    store
        .put(name, &mut reader)
        .await
        .map_err(|e| store_error(name, e))?;
    Ok(())
}

/// Removes an object; `false` when there was none.
pub(super) async fn delete(store: &ObjectStore, name: &str) -> Result<bool, StoreError> {
    match store.delete(name).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(false),
        Err(e) => Err(store_error(name, e)),
    }
}

#[async_trait::async_trait]
impl ModuleBlobs for NatsModules {
    async fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(size(&self.objects.store, &digest.hex()).await?.is_some())
    }

    async fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        read(&self.objects, &digest.hex()).await
    }

    async fn write(&self, digest: &Digest, wasm: &[u8]) -> Result<(), StoreError> {
        write(&self.objects.store, &digest.hex(), wasm).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        delete(&self.objects.store, &digest.hex()).await
    }

    async fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut list = self
            .objects
            .store
            .list()
            .await
            .map_err(|e| store_error("list", e))?;
        let mut out = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| store_error("list", e))?;
            if let Ok(digest) = Digest::parse(&info.name)
                && !info.deleted
            {
                out.push((digest, info.size as u64));
            }
        }
        Ok(out)
    }
}
