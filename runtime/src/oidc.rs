//! OIDC access tokens from the issuers the server trusts (EGI Check-in, a Keycloak realm), as
//! OSCAR accepts them: the token's signature is checked locally against its issuer's keys
//! (the JWKS its discovery document names, fetched once and again when a token names an
//! unknown key, so rotation needs no restart), then its issuer, expiry and start; the user's
//! name and groups come from the issuer's userinfo endpoint, cached until the token expires;
//! the user must be in one of the allowed groups.
//!
//! Verification is jsonwebtoken's; only the issuer claim is read before it, to pick the keys.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use sha2::Digest as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// EGI entitlements name groups as `urn:mace:egi.eu:group:<vo>:...`.
const EGI_GROUP_PREFIX: &str = "urn:mace:egi.eu:group:";
/// At most this many users' tokens are remembered.
const MAX_CACHED_TOKENS: usize = 10_000;
/// A token naming an unknown key refetches its issuer's keys at most this often.
const MIN_KEY_REFRESH: Duration = Duration::from_secs(1);
/// A token longer than this is not a token.
const MAX_TOKEN_LEN: usize = 16 << 10;

/// A user an OIDC token proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The subject: OSCAR's user id, owner of what the user creates.
    pub sub: String,
    /// The display name (the `name` claim), possibly empty.
    pub name: String,
    /// The user's groups (EGI VOs, Keycloak groups).
    pub groups: Vec<String>,
}

/// Why a bearer token is refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT at all (401).
    #[error("the bearer token is neither a service token nor an OIDC access token: {0}")]
    Malformed(String),
    /// An issuer not in the server's list (401).
    #[error("the token's issuer '{0}' is not one this server trusts (--oidc-issuer)")]
    UnknownIssuer(String),
    /// Expired, not yet valid, badly signed... (401).
    #[error("the token from {issuer} is not valid: {reason}")]
    Invalid {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The issuer's discovery, keys or userinfo could not be read (502).
    #[error("the issuer {issuer} could not be asked: {reason}")]
    IssuerFailed {
        /// The issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// A valid user outside every allowed group (403).
    #[error("user {sub} is in none of the groups this server allows ({allowed})")]
    NotInGroup {
        /// The user.
        sub: String,
        /// The allowed groups.
        allowed: String,
    },
}

/// The issuers and groups flags, checked.
#[derive(Debug, Clone, Default)]
pub struct OidcSettings {
    /// Issuer URLs as their tokens' `iss` says them.
    pub issuers: Vec<String>,
    /// Groups (VOs) whose members may log in.
    pub groups: Vec<String>,
}

impl OidcSettings {
    /// Checks the flags: issuers are HTTPS URLs (HTTP only on loopback), and groups are given
    /// when issuers are, as OSCAR admits no user outside its groups.
    pub fn check(&self) -> Result<(), String> {
        for issuer in &self.issuers {
            let url = url::Url::parse(issuer)
                .map_err(|e| format!("--oidc-issuer {issuer} is not a URL: {e}"))?;
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(format!(
                    "--oidc-issuer {issuer}: an issuer's keys are fetched over https (http only on loopback)"
                ));
            }
        }
        if !self.issuers.is_empty() && self.groups.is_empty() {
            return Err(
                "--oidc-issuer needs at least one --oidc-group: as in OSCAR, only members of the allowed groups (VOs) may log in".into(),
            );
        }
        Ok(())
    }
}

/// One issuer's discovery and keys.
#[derive(Default)]
struct IssuerState {
    userinfo: Option<String>,
    jwks_uri: Option<String>,
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

/// The verifier.
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    issuers: HashMap<String, tokio::sync::Mutex<IssuerState>>,
    /// sha256(token) -> (user, expiry as Unix seconds).
    users: Mutex<HashMap<[u8; 32], (User, u64)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuers", &self.settings.issuers)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(serde::Deserialize)]
struct Peek {
    iss: Option<String>,
}

impl Oidc {
    /// A verifier for `settings` (already checked).
    pub fn new(settings: OidcSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("building the OIDC client: {e}"))?;
        let issuers = settings
            .issuers
            .iter()
            .map(|i| (i.clone(), tokio::sync::Mutex::new(IssuerState::default())))
            .collect();
        Ok(Self {
            settings,
            http,
            issuers,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// The groups whose members may log in.
    pub fn groups(&self) -> &[String] {
        &self.settings.groups
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[String] {
        &self.settings.issuers
    }

    /// Whether any issuer is trusted.
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The user `token` proves, or why not.
    pub async fn verify(&self, token: &str) -> Result<User, OidcError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(OidcError::Malformed(format!(
                "{} bytes is longer than any token",
                token.len()
            )));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Malformed(e.to_string()))?;
        // Only the issuer is read before verification, to know whose keys check it.
        let issuer = jsonwebtoken::dangerous::insecure_decode::<Peek>(token)
            .map_err(|e| OidcError::Malformed(e.to_string()))?
            .claims
            .iss
            .ok_or_else(|| OidcError::Malformed("it has no issuer (iss)".into()))?;
        let state = self
            .issuers
            .get(&issuer)
            .ok_or_else(|| OidcError::UnknownIssuer(issuer.clone()))?;
        let invalid = |reason: String| OidcError::Invalid {
            issuer: issuer.clone(),
            reason,
        };
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(user) = self.cached(&digest, now) {
            return Ok(user);
        }
        let kid = header
            .kid
            .clone()
            .ok_or_else(|| invalid("its header names no key (kid)".into()))?;
        let (key, userinfo) = self.key(&issuer, state, &kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.as_str()]);
        // Access tokens name their audience inconsistently across issuers; OSCAR does not
        // check it either.
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| invalid(describe(&e)))?
            .claims;
        let user = self
            .userinfo(&issuer, &userinfo, token, &claims.sub)
            .await?;
        if !user.groups.iter().any(|g| self.settings.groups.contains(g)) {
            return Err(OidcError::NotInGroup {
                sub: user.sub,
                allowed: self.settings.groups.join(", "),
            });
        }
        self.remember(digest, user.clone(), claims.exp, now);
        Ok(user)
    }

    fn cached(&self, digest: &[u8; 32], now: u64) -> Option<User> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .get(digest)
            .filter(|(_, exp)| *exp > now)
            .map(|(user, _)| user.clone())
    }

    fn remember(&self, digest: [u8; 32], user: User, exp: u64, now: u64) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_CACHED_TOKENS {
            users.retain(|_, (_, e)| *e > now);
            if users.len() >= MAX_CACHED_TOKENS {
                users.clear();
            }
        }
        users.insert(digest, (user, exp));
    }

    /// The key `kid` of `issuer` and its userinfo endpoint; discovery and keys are fetched on
    /// first use, and the keys again when `kid` is unknown (a rotation).
    async fn key(
        &self,
        issuer: &str,
        state: &tokio::sync::Mutex<IssuerState>,
        kid: &str,
    ) -> Result<(DecodingKey, String), OidcError> {
        let failed = |reason: String| OidcError::IssuerFailed {
            issuer: issuer.to_string(),
            reason,
        };
        let mut state = state.lock().await;
        if state.jwks_uri.is_none() {
            #[derive(serde::Deserialize)]
            struct Discovery {
                jwks_uri: String,
                userinfo_endpoint: Option<String>,
            }
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let discovery: Discovery = self.get_json(&url, None).await.map_err(&failed)?;
            state.jwks_uri = Some(discovery.jwks_uri);
            state.userinfo = discovery.userinfo_endpoint;
        }
        let known = state.keys.as_ref().is_some_and(|k| k.find(kid).is_some());
        let may_refresh = state.fetched.is_none_or(|t| t.elapsed() >= MIN_KEY_REFRESH);
        if !known && may_refresh {
            let uri = state.jwks_uri.clone().unwrap_or_default();
            let keys: JwkSet = self.get_json(&uri, None).await.map_err(&failed)?;
            state.keys = Some(keys);
            state.fetched = Some(Instant::now());
        }
        let jwk = state
            .keys
            .as_ref()
            .and_then(|k| k.find(kid))
            .ok_or_else(|| OidcError::Invalid {
                issuer: issuer.to_string(),
                reason: format!("it is signed with key '{kid}', which the issuer does not publish"),
            })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Invalid {
            issuer: issuer.to_string(),
            reason: format!("the issuer's key '{kid}' is not usable: {e}"),
        })?;
        let userinfo = state
            .userinfo
            .clone()
            .ok_or_else(|| failed("its discovery document names no userinfo_endpoint".into()))?;
        Ok((key, userinfo))
    }

    /// The user behind `token`, from the issuer's userinfo endpoint.
    async fn userinfo(
        &self,
        issuer: &str,
        endpoint: &str,
        token: &str,
        sub: &str,
    ) -> Result<User, OidcError> {
        let info: serde_json::Value =
            self.get_json(endpoint, Some(token))
                .await
                .map_err(|reason| OidcError::IssuerFailed {
                    issuer: issuer.to_string(),
                    reason,
                })?;
        if info.get("sub").and_then(|s| s.as_str()) != Some(sub) {
            return Err(OidcError::Invalid {
                issuer: issuer.to_string(),
                reason: "the issuer's userinfo names another subject".into(),
            });
        }
        Ok(User {
            sub: sub.to_string(),
            name: info
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string(),
            groups: groups_of(&info),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, String> {
        let mut request = self.http.get(url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {url}: {status}"));
        }
        let bytes = crate::bounded::read(response, 1 << 20)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: {e}"))
    }
}

/// The user's groups, as OSCAR reads them: EGI `entitlements` (the VO of each
/// `urn:mace:egi.eu:group:<vo>:...`), Keycloak `group_membership` (with or without a leading
/// `/`), and `groups`.
pub fn groups_of(info: &serde_json::Value) -> Vec<String> {
    let strings = |key: &str| -> Vec<String> {
        info.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut groups = Vec::new();
    for urn in strings("entitlements") {
        let urn = urn.trim().to_ascii_lowercase();
        if let Some(rest) = urn.strip_prefix(EGI_GROUP_PREFIX)
            && let Some(vo) = rest.split(':').next().filter(|vo| !vo.is_empty())
        {
            groups.push(vo.to_string());
        }
    }
    for key in ["group_membership", "groups"] {
        groups.extend(
            strings(key)
                .into_iter()
                .map(|g| g.trim_start_matches('/').to_string()),
        );
    }
    groups.sort();
    groups.dedup();
    groups
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match error.kind() {
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet (nbf)".into(),
        K::InvalidSignature => "its signature does not match the issuer's key".into(),
        K::InvalidIssuer => "its issuer does not match".into(),
        K::InvalidAlgorithm => "its algorithm does not match the issuer's key".into(),
        other => format!("{other:?}"),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_read_as_oscar_reads_them() {
        let info = serde_json::json!({
            "entitlements": [
                "urn:mace:egi.eu:group:vo.example.eu:role=member#aai.egi.eu",
                "urn:mace:egi.eu:group:Other.VO:sub:role=vm_operator#aai.egi.eu",
                "urn:example:not-a-group"
            ],
            "group_membership": ["/lab", "team"]
        });
        assert_eq!(
            groups_of(&info),
            ["lab", "other.vo", "team", "vo.example.eu"]
        );
    }

    #[test]
    fn settings_need_groups_and_https() {
        let ok = OidcSettings {
            issuers: vec!["https://aai.egi.eu/auth/realms/egi".into()],
            groups: vec!["vo.example.eu".into()],
        };
        assert!(ok.check().is_ok());
        let no_groups = OidcSettings {
            groups: vec![],
            ..ok.clone()
        };
        assert!(no_groups.check().unwrap_err().contains("--oidc-group"));
        let plain = OidcSettings {
            issuers: vec!["http://idp.example".into()],
            ..ok.clone()
        };
        assert!(plain.check().is_err());
        let local = OidcSettings {
            issuers: vec!["http://127.0.0.1:8081/realms/test".into()],
            ..ok
        };
        assert!(local.check().is_ok());
    }

    #[tokio::test]
    async fn tokens_that_are_not_jwts_or_from_unknown_issuers_are_refused_offline() {
        let oidc = Oidc::new(OidcSettings {
            issuers: vec!["https://idp.example".into()],
            groups: vec!["g".into()],
        })
        .unwrap();
        assert!(matches!(
            oidc.verify("not-a-jwt").await,
            Err(OidcError::Malformed(_))
        ));
        // {"alg":"RS256","kid":"k"}.{"iss":"https://elsewhere"}.sig
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2Vsc2V3aGVyZSJ9.c2ln";
        match oidc.verify(token).await {
            Err(OidcError::UnknownIssuer(i)) => assert_eq!(i, "https://elsewhere"),
            other => panic!("{other:?}"),
        }
    }
}
