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
        copy_object: CopyObjectInput => CopyObjectOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        delete_object: DeleteObjectInput => DeleteObjectOutput,
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        get_object: GetObjectInput => GetObjectOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        head_object: HeadObjectInput => HeadObjectOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        put_object: PutObjectInput => PutObjectOutput,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
        upload_part: UploadPartInput => UploadPartOutput,
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
        list_parts: ListPartsInput => ListPartsOutput,
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
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
