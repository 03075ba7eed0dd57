//! The server's reads from registries (manifests, indexes, configs, layers, token answers),
//! each bounded before it is read and each address checked before it is connected to.
//!
//! oci-client reads manifests and token answers whole, whatever their size, and follows
//! redirects and token realms wherever they point; a registry a user names would then make
//! the server allocate what it chose or reach this machine's own services. This client speaks
//! the distribution protocol's read side itself (anonymous, Basic, and Bearer token auth):
//!
//! - every answer is refused when its Content-Length is over the bound for its kind, and read
//!   chunk by chunk up to that bound otherwise ([`MAX_MANIFEST`], [`MAX_TOKEN`], the caller's
//!   bound for blobs);
//! - a registry, a redirect target and a token realm on this machine or its link-local
//!   network are refused before connecting ([`crate::storage::spec::local_endpoint`]'s rule),
//!   unless the operator listed that exact `host:port` with `--insecure-registry` or runs the
//!   server with `--allow-local-endpoints`;
//! - manifests and blobs are checked against their digests.
//!
//! `oscar-wasm push` (the client side, run by the user) still uses oci-client.

use super::OciError;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest manifest or index read (the distribution spec's own advice to registries).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest token answer read.
pub const MAX_TOKEN: u64 = 64 << 10;
/// The largest error body read, for messages.
const MAX_ERROR_BODY: u64 = 16 << 10;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// Token lifetime when the answer names none (the distribution spec's default).
const DEFAULT_TOKEN_SECS: u64 = 60;
/// Tokens kept at most, by registry and repository.
const MAX_TOKENS: usize = 1024;

/// The manifest media types asked for.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Which addresses may be reached.
#[derive(Debug, Clone, Default)]
pub struct AddressRule {
    /// `host:port`s the operator listed (`--insecure-registry`): reached even when local.
    pub listed: Vec<String>,
    /// `--allow-local-endpoints`: everything may be reached.
    pub allow_local: bool,
}

impl AddressRule {
    /// Why `url` may not be reached; `None` when it may.
    pub fn refusal(&self, url: &reqwest::Url) -> Option<String> {
        if self.allow_local {
            return None;
        }
        let host_port = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => return Some(format!("{url} names no host")),
        };
        let listed = self.listed.iter().any(|l| {
            l.eq_ignore_ascii_case(&host_port)
                || url.port().is_none() && url.host_str().is_some_and(|h| l.eq_ignore_ascii_case(h))
        });
        if listed {
            return None;
        }
        crate::storage::spec::local_endpoint(url.as_str()).map(|_| {
            format!(
                "{host_port} is on this machine or its link-local network; this server reaches a registry there only when --insecure-registry lists it, or with --allow-local-endpoints"
            )
        })
    }
}

/// A read-only registry client with bounded reads and checked addresses.
pub struct Puller {
    http: reqwest::Client,
    rule: AddressRule,
    /// Bearer tokens by (registry, repository), until they expire.
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

/// A manifest or index as read.
pub struct RawManifest {
    /// `sha256:...` of its bytes.
    pub digest: String,
    /// Its media type, from the answer (else from its own `mediaType`).
    pub media_type: String,
    /// Its bytes.
    pub bytes: bytes::Bytes,
}

impl Puller {
    /// A client that reaches what `rule` allows.
    pub fn new(rule: AddressRule) -> Self {
        let redirect_rule = rule.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                let downgrade = attempt.url().scheme() == "http"
                    && attempt.previous().iter().any(|u| u.scheme() == "https");
                if downgrade {
                    return attempt.error("a redirect from https to http");
                }
                match redirect_rule.refusal(attempt.url()) {
                    Some(reason) => attempt.error(reason),
                    None => attempt.follow(),
                }
            }))
            .build()
            .unwrap_or_default();
        Self {
            http,
            rule,
            tokens: Mutex::default(),
        }
    }

    /// The base URL of `reference`'s registry (`http` only for listed registries).
    fn base(&self, image: &str, reference: &Reference) -> Result<String, OciError> {
        let registry = reference.resolve_registry();
        let scheme = if self.rule.listed.iter().any(|l| l == registry) {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{registry}");
        let url = reqwest::Url::parse(&base).map_err(|e| bad(image, e.to_string()))?;
        if let Some(reason) = self.rule.refusal(&url) {
            return Err(OciError::Refused {
                reference: image.to_string(),
                reason,
            });
        }
        Ok(base)
    }

    /// The manifest or index `reference` names, at most [`MAX_MANIFEST`] bytes, checked
    /// against the reference's digest when it pins one.
    pub async fn manifest(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<RawManifest, OciError> {
        let response = self
            .manifest_request(image, reference, auth, reqwest::Method::GET)
            .await?;
        let media_type = content_type(&response);
        let bytes = read_bounded(image, response, MAX_MANIFEST, "a manifest").await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(OciError::Invalid {
                reference: image.to_string(),
                reason: format!("the registry sent a manifest of digest {digest}, not {pinned}"),
            });
        }
        let media_type = media_type
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            })
            .unwrap_or_default();
        Ok(RawManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// The digest `reference` names now: one manifest HEAD, or a bounded GET when the
    /// registry sends no `Docker-Content-Digest`.
    pub async fn current_digest(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<String, OciError> {
        let response = self
            .manifest_request(image, reference, auth, reqwest::Method::HEAD)
            .await?;
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_string);
        match header {
            Some(digest) => Ok(digest),
            None => Ok(self.manifest(image, reference, auth).await?.digest),
        }
    }

    /// The blob `digest` of `reference`'s repository, at most `limit` bytes, checked against
    /// its digest.
    pub async fn blob(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
        digest: &str,
        limit: u64,
    ) -> Result<Vec<u8>, OciError> {
        let Some(expected) = digest.strip_prefix("sha256:") else {
            return Err(OciError::Invalid {
                reference: image.to_string(),
                reason: format!("the layer digest {digest} is not a sha256 digest"),
            });
        };
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base(image, reference)?,
            reference.repository()
        );
        let response = self
            .send(image, reference, auth, reqwest::Method::GET, &url, None)
            .await?;
        let bytes = read_bounded(image, response, limit, "a layer").await?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected {
            return Err(OciError::Invalid {
                reference: image.to_string(),
                reason: format!("layer {digest} arrived with digest sha256:{actual}"),
            });
        }
        Ok(bytes.to_vec())
    }

    /// `method` on the manifest `reference` names, asking for every manifest type.
    async fn manifest_request(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
        method: reqwest::Method,
    ) -> Result<reqwest::Response, OciError> {
        let url = self.manifest_url(image, reference)?;
        self.send(image, reference, auth, method, &url, Some(MANIFEST_TYPES))
            .await
    }

    fn manifest_url(&self, image: &str, reference: &Reference) -> Result<String, OciError> {
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        Ok(format!(
            "{}/v2/{}/manifests/{target}",
            self.base(image, reference)?,
            reference.repository()
        ))
    }

    /// Sends a request with the credentials the registry asks for: the cached token, else
    /// none, then (on 401) Basic credentials or a Bearer token from the challenge's realm.
    async fn send(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
        method: reqwest::Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, OciError> {
        let key = (
            reference.resolve_registry().to_string(),
            reference.repository().to_string(),
        );
        let request = |credentials: Option<Credentials>| {
            let mut builder = self.http.request(method.clone(), url);
            if let Some(accept) = accept {
                builder = builder.header(reqwest::header::ACCEPT, accept);
            }
            match credentials {
                Some(Credentials::Bearer(token)) => builder.bearer_auth(token),
                Some(Credentials::Basic(user, password)) => {
                    builder.basic_auth(user, Some(password))
                }
                None => builder,
            }
        };
        let cached = self.cached_token(&key).map(Credentials::Bearer);
        let response = request(cached)
            .send()
            .await
            .map_err(|e| unreachable(image, &e))?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return check_status(image, response).await;
        }
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        let credentials = match Challenge::parse(&challenge) {
            Challenge::Bearer { realm, service } => {
                let token = self
                    .token(image, reference, auth, &realm, service.as_deref())
                    .await?;
                self.keep_token(key, token.clone());
                Credentials::Bearer(token.0)
            }
            Challenge::Basic => match auth {
                RegistryAuth::Basic(user, password) => {
                    Credentials::Basic(user.clone(), password.clone())
                }
                _ => {
                    return Err(denied(
                        image,
                        "the registry asks for credentials; none are configured for it",
                    ));
                }
            },
        };
        let response = request(Some(credentials))
            .send()
            .await
            .map_err(|e| unreachable(image, &e))?;
        check_status(image, response).await
    }

    /// A pull token from `realm`, whose address is checked like the registry's.
    async fn token(
        &self,
        image: &str,
        reference: &Reference,
        auth: &RegistryAuth,
        realm: &str,
        service: Option<&str>,
    ) -> Result<(String, Instant), OciError> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            denied(
                image,
                &format!("the registry's token realm {realm:?} is not a URL: {e}"),
            )
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(denied(
                image,
                &format!("the token realm {realm:?} is not http(s)"),
            ));
        }
        if let Some(reason) = self.rule.refusal(&url) {
            return Err(OciError::Refused {
                reference: image.to_string(),
                reason: format!("its token realm: {reason}"),
            });
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(
                "scope",
                &format!("repository:{}:pull", reference.repository()),
            );
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let mut builder = self.http.get(url);
        if let RegistryAuth::Basic(user, password) = auth {
            builder = builder.basic_auth(user, Some(password));
        }
        let response = builder.send().await.map_err(|e| unreachable(image, &e))?;
        let response = check_status(image, response).await?;
        let body = read_bounded(image, response, MAX_TOKEN, "a token answer").await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| denied(image, &format!("the token answer is not valid: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| denied(image, "the token answer holds no token"))?;
        let lifetime = Duration::from_secs(
            answer
                .expires_in
                .unwrap_or(DEFAULT_TOKEN_SECS)
                .clamp(1, 3600),
        );
        Ok((token, Instant::now() + lifetime))
    }

    fn cached_token(&self, key: &(String, String)) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() + Duration::from_secs(5) < *until)
            .map(|(token, _)| token.clone())
    }

    fn keep_token(&self, key: (String, String), token: (String, Instant)) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, (_, until)| *until > now);
        if tokens.len() < MAX_TOKENS {
            tokens.insert(key, token);
        }
    }
}

enum Credentials {
    Bearer(String),
    Basic(String, String),
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
}

impl Challenge {
    /// Reads `Bearer realm="...",service="..."`; anything else is Basic.
    fn parse(header: &str) -> Self {
        let header = header.trim();
        let Some(params) = header
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("bearer "))
            .map(|_| &header[7..])
        else {
            return Self::Basic;
        };
        let mut realm = None;
        let mut service = None;
        for part in split_params(params) {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value),
                "service" => service = Some(value),
                _ => {}
            }
        }
        match realm {
            Some(realm) => Self::Bearer { realm, service },
            None => Self::Basic,
        }
    }
}

/// Splits `a="x,y",b=z` at the commas outside quotes.
fn split_params(params: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in params.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&params[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&params[start..]);
    parts
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The answer when it succeeded; its status as an [`OciError`] otherwise.
async fn check_status(
    image: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, OciError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_bounded(image, response, MAX_ERROR_BODY, "an error")
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let reason = format!("{status}: {}", body.trim());
    let reference = image.to_string();
    Err(match status.as_u16() {
        404 => OciError::NotFound { reference, reason },
        401 | 403 => OciError::Denied { reference, reason },
        _ => OciError::Unreachable { reference, reason },
    })
}

/// The whole body of `response`, refused over `limit` bytes before (by its Content-Length)
/// or while reading.
async fn read_bounded(
    image: &str,
    response: reqwest::Response,
    limit: u64,
    what: &str,
) -> Result<bytes::Bytes, OciError> {
    crate::bounded::read(response, limit)
        .await
        .map_err(|e| match e {
            crate::bounded::ReadError::TooLarge { size, limit } => OciError::Invalid {
                reference: image.to_string(),
                reason: format!(
                    "{what} of {size} bytes or more is over this server's limit of {limit} bytes"
                ),
            },
            crate::bounded::ReadError::Read(e) => unreachable(image, &e),
        })
}

fn bad(image: &str, reason: String) -> OciError {
    OciError::BadReference {
        reference: image.to_string(),
        reason,
    }
}

fn denied(image: &str, reason: &str) -> OciError {
    OciError::Denied {
        reference: image.to_string(),
        reason: reason.to_string(),
    }
}

/// A failed request: a refused redirect is the reference's fault (400), anything else the
/// registry's (502).
fn unreachable(image: &str, error: &reqwest::Error) -> OciError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        reason = format!("{reason}: {e}");
        source = e.source();
    }
    if error.is_redirect() {
        return OciError::Refused {
            reference: image.to_string(),
            reason,
        };
    }
    OciError::Unreachable {
        reference: image.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a,b:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        assert_eq!(Challenge::parse(r#"Basic realm="x""#), Challenge::Basic);
        assert_eq!(Challenge::parse(""), Challenge::Basic);
    }

    #[test]
    fn local_addresses_are_refused_unless_listed_or_allowed() {
        let rule = AddressRule {
            listed: vec!["127.0.0.1:5000".into()],
            allow_local: false,
        };
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(rule.refusal(&url("http://127.0.0.1:5000/v2/")).is_none());
        for local in [
            "http://127.0.0.1:5001/v2/",
            "http://127.0.0.2/token",
            "http://169.254.169.254/latest/meta-data",
            "https://localhost/v2/",
            "http://[::1]:5000/",
        ] {
            assert!(rule.refusal(&url(local)).is_some(), "{local}");
        }
        assert!(rule.refusal(&url("https://ghcr.io/v2/")).is_none());
        let open = AddressRule {
            listed: vec![],
            allow_local: true,
        };
        assert!(open.refusal(&url("http://127.0.0.2/token")).is_none());
    }
}
