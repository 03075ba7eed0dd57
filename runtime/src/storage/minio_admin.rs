//! MinIO's admin API, as OSCAR uses it through madmin: with `--storage-admin minio`, each OIDC
//! user gets a user of their own on the external MinIO (their keys from [`super::store_users`]),
//! and a canned policy named after them listing the buckets they may reach, attached to that
//! user; the policy is rewritten whenever those buckets change. GET /system/config then hands
//! users their own keys for the external store, as it does for the embedded one.
//!
//! Requests are signed with SigV4 in headers (MinIO refuses presigned admin requests) by
//! aws-sigv4; `add-user`'s body is encrypted as madmin's `EncryptData` does: an Argon2id key
//! (from the admin's secret key and a random salt) and AES-256-GCM over 16 KiB chunks in
//! sio's DARE format, whose additional data marks the last chunk.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use std::time::Duration;

/// Why the admin API refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request could not be sent or answered.
    #[error("MinIO's admin API at {endpoint} could not be reached: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// MinIO answered with an error.
    #[error("MinIO's admin API refused {what}: HTTP {status}: {body}")]
    Refused {
        what: String,
        status: u16,
        body: String,
    },
    /// Signing or encrypting failed (a key MinIO would refuse too).
    #[error("could not prepare a MinIO admin request: {0}")]
    Request(String),
}

/// A client of one MinIO's admin API, with its root (or admin) credentials.
pub struct MinioAdmin {
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    http: reqwest::Client,
}

/// Bytes of plaintext per encrypted chunk (sio's DARE package size).
const CHUNK: usize = 16 * 1024;

impl MinioAdmin {
    /// A client for `endpoint` (`http(s)://host:port`), signing as `access_key`.
    pub fn new(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        verify_tls: bool,
    ) -> Result<Self, AdminError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(!verify_tls)
            .build()
            .map_err(|e| AdminError::Request(e.to_string()))?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            http,
        })
    }

    /// Creates (or re-enables, with this secret) user `access_key`.
    pub async fn add_user(&self, access_key: &str, secret_key: &str) -> Result<(), AdminError> {
        let body = serde_json::json!({"secretKey": secret_key, "status": "enabled"}).to_string();
        let sealed = encrypt(body.as_bytes(), &self.secret_key)?;
        self.call(
            "add-user",
            &[("accessKey", access_key)],
            sealed,
            &format!("creating user {access_key}"),
        )
        .await
    }

    /// Makes `name` a canned policy granting every S3 action on `buckets` (none: no access),
    /// and the only policy of user `access_key`.
    pub async fn set_user_buckets(
        &self,
        name: &str,
        access_key: &str,
        buckets: &[String],
    ) -> Result<(), AdminError> {
        self.call(
            "add-canned-policy",
            &[("name", name)],
            bucket_policy(buckets).into_bytes(),
            &format!("writing policy {name}"),
        )
        .await?;
        self.call(
            "set-user-or-group-policy",
            &[
                ("policyName", name),
                ("userOrGroup", access_key),
                ("isGroup", "false"),
            ],
            Vec::new(),
            &format!("attaching policy {name} to user {access_key}"),
        )
        .await
    }

    async fn call(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
        what: &str,
    ) -> Result<(), AdminError> {
        let mut url = reqwest::Url::parse(&format!("{}/minio/admin/v3/{path}", self.endpoint))
            .map_err(|e| AdminError::Request(e.to_string()))?;
        url.query_pairs_mut().extend_pairs(query);
        let headers = self.sign(url.as_str(), &body)?;
        let mut request = self.http.put(url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| AdminError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = crate::bounded::read(response, 64 << 10)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(AdminError::Refused {
            what: what.to_string(),
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        })
    }

    /// The SigV4 headers (Authorization, X-Amz-Date, X-Amz-Content-Sha256) for a PUT.
    fn sign(&self, url: &str, body: &[u8]) -> Result<Vec<(String, String)>, AdminError> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
        };
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "oscar-wasm",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| AdminError::Request(e.to_string()))?
            .into();
        let signable =
            SignableRequest::new("PUT", url, std::iter::empty(), SignableBody::Bytes(body))
                .map_err(|e| AdminError::Request(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| AdminError::Request(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

/// An IAM policy granting every S3 action on `buckets` and what is in them; with no bucket,
/// a statement on a bucket name no bucket can have, since MinIO wants at least one.
fn bucket_policy(buckets: &[String]) -> String {
    let resources: Vec<String> = if buckets.is_empty() {
        vec!["arn:aws:s3:::oscar-wasm-no-bucket-/*".into()]
    } else {
        buckets
            .iter()
            .flat_map(|b| [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")])
            .collect()
    };
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": resources}]
    })
    .to_string()
}

/// madmin's `EncryptData`: `salt (32) | AEAD id (1, 0 = AES-256-GCM) | nonce (8)`, then each
/// 16 KiB chunk sealed with the chunk's sequence number (from 1) in the nonce's last four
/// bytes and additional data `0x00 | tag of nothing` (`0x80 | ...` on the last chunk).
pub fn encrypt(plaintext: &[u8], password: &str) -> Result<Vec<u8>, AdminError> {
    let fail = |e: &dyn std::fmt::Display| AdminError::Request(format!("encrypting: {e}"));
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut salt).map_err(|e| fail(&e))?;
    aws_lc_rs::rand::fill(&mut nonce).map_err(|e| fail(&e))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64 * 1024, 1, 4, Some(32)).map_err(|e| fail(&e))?,
    )
    .hash_password_into(password.as_bytes(), &salt, &mut key)
    .map_err(|e| fail(&e))?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|e| fail(&e))?);
    let nonce_for = |sequence: u32| {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&nonce);
        n[8..].copy_from_slice(&sequence.to_le_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let header_tag = key
        .seal_in_place_separate_tag(nonce_for(0), Aad::empty(), &mut [])
        .map_err(|e| fail(&e))?;
    let mut additional = vec![0u8];
    additional.extend_from_slice(header_tag.as_ref());

    let mut out = Vec::with_capacity(41 + plaintext.len() + 16 * (plaintext.len() / CHUNK + 1));
    out.extend_from_slice(&salt);
    out.push(0);
    out.extend_from_slice(&nonce);
    let chunks: Vec<&[u8]> = plaintext.chunks(CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if i + 1 == chunks.len() {
            additional[0] = 0x80;
        }
        let sequence = u32::try_from(i + 1).map_err(|e| fail(&e))?;
        let mut sealed = chunk.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                nonce_for(sequence),
                Aad::from(&additional[..]),
                &mut sealed,
            )
            .map_err(|e| fail(&e))?;
        out.extend_from_slice(&sealed);
        out.extend_from_slice(tag.as_ref());
    }
    Ok(out)
}
