//! A test identity provider on loopback (discovery document, JWKS, userinfo) that signs real
//! RS256 tokens with keys made at test time, and rotates them.

use super::rt;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub struct Key {
    pub kid: String,
    pub pair: aws_lc_rs::rsa::KeyPair,
}

impl Key {
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            pair: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap(),
        }
    }

    pub fn jwk(&self) -> Value {
        use aws_lc_rs::signature::KeyPair as _;
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
            "e": b64url(public.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        format!("{input}.{}", b64url(&signature))
    }
}

#[derive(Default)]
pub struct IdpState {
    /// The signing key, and the keys the JWKS publishes.
    keys: Vec<Arc<Key>>,
    /// userinfo answers by subject.
    users: HashMap<String, Value>,
}

/// The identity provider: an issuer URL on loopback.
pub struct Idp {
    /// The issuer URL.
    pub issuer: String,
    state: Arc<Mutex<IdpState>>,
}

impl Idp {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}/realms/test", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IdpState {
            keys: vec![Arc::new(Key::new("key-1"))],
            users: HashMap::new(),
        }));
        let (shared, base) = (state.clone(), issuer.clone());
        std::thread::spawn(move || {
            use axum::routing::get;
            let discovery = {
                let base = base.clone();
                move || async move {
                    axum::Json(json!({
                        "issuer": base, "jwks_uri": format!("{base}/jwks"),
                        "userinfo_endpoint": format!("{base}/userinfo"),
                        "token_endpoint": format!("{base}/token"),
                    }))
                }
            };
            let jwks = {
                let state = shared.clone();
                move || async move {
                    let keys: Vec<Value> =
                        state.lock().unwrap().keys.iter().map(|k| k.jwk()).collect();
                    axum::Json(json!({"keys": keys}))
                }
            };
            let userinfo = {
                let state = shared.clone();
                move |headers: axum::http::HeaderMap| async move {
                    // The provider trusts its own tokens: it reads the subject back.
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default()
                        .to_string();
                    let payload = token.split('.').nth(1).unwrap_or_default();
                    let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(payload)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or(Value::Null);
                    let sub = claims["sub"].as_str().unwrap_or_default().to_string();
                    match state.lock().unwrap().users.get(&sub) {
                        Some(info) => Ok(axum::Json(info.clone())),
                        None => Err(axum::http::StatusCode::UNAUTHORIZED),
                    }
                }
            };
            let app = axum::Router::new()
                .route(
                    "/realms/test/.well-known/openid-configuration",
                    get(discovery),
                )
                .route("/realms/test/jwks", get(jwks))
                .route("/realms/test/userinfo", get(userinfo));
            listener.set_nonblocking(true).unwrap();
            rt().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { issuer, state }
    }

    /// Registers a user's userinfo answer.
    pub fn user(&self, sub: &str, info: Value) {
        let mut info = info;
        info["sub"] = json!(sub);
        self.state.lock().unwrap().users.insert(sub.into(), info);
    }

    /// A token for `sub`, valid for an hour, with `extra` claims over the defaults.
    pub fn token(&self, sub: &str, extra: Value) -> String {
        let key = self.state.lock().unwrap().keys[0].clone();
        let mut claims = json!({"iss": self.issuer, "sub": sub, "iat": now(), "exp": now() + 3600});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        key.sign(&claims)
    }

    /// A new signing key; only it is published from now on.
    pub fn rotate(&self, kid: &str) -> Arc<Key> {
        let mut state = self.state.lock().unwrap();
        let old = state.keys[0].clone();
        state.keys = vec![Arc::new(Key::new(kid))];
        old
    }
}

/// Sends `request` with `token` as Bearer; (status, body).
pub fn with(token: &str, request: reqwest::blocking::RequestBuilder) -> (u16, String) {
    let r = request.bearer_auth(token).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Sends `request` as the administrator of a server whose password is `pw`; (status, body).
pub fn as_admin(request: reqwest::blocking::RequestBuilder) -> (u16, String) {
    let r = request.basic_auth("oscar", Some("pw")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}
