//! The embedded store's S3 operations: s3s-fs's, except listings, which
//! [`super::listing`] pages as S3 does (s3s-fs reads, `stat`s and sorts the whole bucket for
//! every page, and returns as many keys as a client asks for).

use s3s::dto::{
    ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, Timestamp,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use std::path::PathBuf;

/// s3s-fs over `root`, with paged listings.
pub struct PagedFs {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
}

impl PagedFs {
    /// The store over `root` (an existing folder).
    pub fn new(root: &std::path::Path) -> std::io::Result<Self> {
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        Ok(Self {
            fs,
            root: root.canonicalize()?,
        })
    }
}

impl PagedFs {
    /// Refuses a key whose path in the bucket passes through a symlink (its last part only
    /// when `last_too`). Only a guest can make one, in a mounted folder (relative targets:
    /// WASI refuses absolute ones), and the store, unlike the guest's sandbox, would follow
    /// it: out of the bucket to another bucket or the host.
    fn no_symlink(&self, bucket: &str, key: &str, last_too: bool) -> S3Result<()> {
        let mut path = self.root.join(bucket);
        let parts: Vec<&str> = key.split('/').collect();
        let checked = if last_too {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        if is_symlink(&path) {
            return Err(s3_error!(AccessDenied, "the bucket is a symbolic link"));
        }
        for part in &parts[..checked] {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(s3_error!(
                        AccessDenied,
                        "the key passes through a symbolic link, which the store does not follow"
                    ));
                }
                Ok(_) => {}
                // Nothing further exists: nothing further can be a link.
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// [`PagedFs::no_symlink`] for a copy's source.
    fn no_symlink_source(&self, source: &s3s::dto::CopySource) -> S3Result<()> {
        match source {
            s3s::dto::CopySource::Bucket { bucket, key, .. } => self.no_symlink(bucket, key, true),
            _ => Ok(()),
        }
    }
}

fn is_symlink(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The S3 implementation: the `forward` operations go to s3s-fs unchanged, the others are
/// written out. (One macro for the whole impl: `async_trait` must see every method.)
macro_rules! s3_impl {
    (forward { $($op:ident: $input:ident => $output:ident),* $(,)? } $($own:tt)*) => {
        #[async_trait::async_trait]
        impl S3 for PagedFs {
            $(
                async fn $op(
                    &self,
                    req: S3Request<s3s::dto::$input>,
                ) -> S3Result<S3Response<s3s::dto::$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($own)*
        }
    };
}

s3_impl! {
    forward {
        create_bucket: CreateBucketInput => CreateBucketOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        list_parts: ListPartsInput => ListPartsOutput,
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
    }

    // Object operations, once no symlink lies on the key's path (see `no_symlink`).
    async fn get_object(
        &self,
        req: S3Request<s3s::dto::GetObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::GetObjectOutput>> {
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<s3s::dto::HeadObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::HeadObjectOutput>> {
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.head_object(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<s3s::dto::PutObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::PutObjectOutput>> {
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.put_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<s3s::dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectOutput>> {
        // A link itself may go; not what lies behind a linked folder.
        self.no_symlink(&req.input.bucket, &req.input.key, false)?;
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<s3s::dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<s3s::dto::DeleteObjectsOutput>> {
        for object in &req.input.delete.objects {
            self.no_symlink(&req.input.bucket, &object.key, false)?;
        }
        self.fs.delete_objects(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<s3s::dto::CopyObjectInput>,
    ) -> S3Result<S3Response<s3s::dto::CopyObjectOutput>> {
        self.no_symlink_source(&req.input.copy_source)?;
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.copy_object(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<s3s::dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<s3s::dto::UploadPartCopyOutput>> {
        self.no_symlink_source(&req.input.copy_source)?;
        self.fs.upload_part_copy(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<s3s::dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CreateMultipartUploadOutput>> {
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.create_multipart_upload(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<s3s::dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<s3s::dto::CompleteMultipartUploadOutput>> {
        self.no_symlink(&req.input.bucket, &req.input.key, true)?;
        self.fs.complete_multipart_upload(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let v2 = self.list_objects_v2(req.map_input(Into::into)).await?;
        Ok(v2.map_output(|v2| ListObjectsOutput {
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: v2.delimiter,
            encoding_type: v2.encoding_type,
            name: v2.name,
            prefix: v2.prefix,
            marker: v2.start_after,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            next_marker: v2.next_continuation_token,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        // Bucket names were checked canonical (no `/`, no `..`) by the store's access rule.
        let bucket_root = self.root.join(&input.bucket);
        if !bucket_root.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        let max_keys = input
            .max_keys
            .map_or(super::listing::MAX_KEYS, |n| usize::try_from(n).unwrap_or(0))
            .min(super::listing::MAX_KEYS);
        let after = match (
            input.continuation_token.clone(),
            input.start_after.clone(),
        ) {
            (Some(token), Some(start)) => Some(token.max(start)),
            (token, start) => token.or(start),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone();
        let page = tokio::task::spawn_blocking(move || {
            super::listing::list(
                &bucket_root,
                &super::listing::Query {
                    prefix: &prefix,
                    delimiter: delimiter.as_deref(),
                    after: after.as_deref(),
                    max_keys,
                },
            )
        })
        .await
        .map_err(|e| s3_error!(InternalError, "the listing stopped: {e}"))?
        .map_err(|e| s3_error!(InternalError, "the bucket could not be listed: {e}"))?;
        let count = page.objects.len() + page.prefixes.len();
        let contents: Vec<s3s::dto::Object> = page
            .objects
            .into_iter()
            .map(|o| s3s::dto::Object {
                key: Some(o.key),
                size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                last_modified: Some(Timestamp::from(o.modified)),
                ..Default::default()
            })
            .collect();
        let prefixes: Vec<s3s::dto::CommonPrefix> = page
            .prefixes
            .into_iter()
            .map(|p| s3s::dto::CommonPrefix { prefix: Some(p) })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(i32::try_from(count).unwrap_or(i32::MAX)),
            max_keys: Some(i32::try_from(max_keys).unwrap_or(i32::MAX)),
            is_truncated: Some(page.truncated),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..Default::default()
        }))
    }
}
