//! Answers of outbound HTTP requests (registries, identity providers, S3 stores, MinIO's admin
//! API) read within a bound: refused by their Content-Length before a byte is read, and read
//! chunk by chunk up to the bound otherwise, so that no peer makes the server allocate what
//! it chose.

/// Why an answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Over the bound: `size` is what was declared or read so far.
    #[error("an answer of {size} bytes or more is over the limit of {limit} bytes")]
    TooLarge {
        /// Bytes declared or read.
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// The connection failed while reading.
    #[error("reading the answer failed: {0}")]
    Read(#[source] reqwest::Error),
}

/// The whole body of `response`, at most `limit` bytes.
pub async fn read(mut response: reqwest::Response, limit: u64) -> Result<bytes::Bytes, ReadError> {
    if let Some(size) = response.content_length()
        && size > limit
    {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Read)? {
        let size = (bytes.len() + chunk.len()) as u64;
        if size > limit {
            return Err(ReadError::TooLarge { size, limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}
