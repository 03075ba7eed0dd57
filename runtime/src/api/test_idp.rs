//! For the in-process tests: an OIDC issuer on loopback in the test's own runtime (discovery
//! document, JWKS, userinfo), signing RS256 tokens with a key made at test time, so routes
//! are called as OIDC users without a server process.

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    crate::clock::now_ms() / 1000
}

/// The issuer.
pub struct TestIdp {
    /// Its URL, for `--oidc-issuer`.
    pub issuer: String,
    key: Arc<aws_lc_rs::rsa::KeyPair>,
    users: Arc<Mutex<HashMap<String, Value>>>,
}

impl TestIdp {
    /// Serves the issuer on a free loopback port, in the current runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realms/test", listener.local_addr().unwrap());
        let key =
            Arc::new(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap());
        let users: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let jwk = {
            use aws_lc_rs::signature::KeyPair as _;
            let public = key.public_key();
            json!({"keys": [{
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k",
                "n": b64url(public.modulus().big_endian_without_leading_zero()),
                "e": b64url(public.exponent().big_endian_without_leading_zero()),
            }]})
        };
        let base = issuer.clone();
        let discovery = json!({
            "issuer": base, "jwks_uri": format!("{base}/jwks"),
            "userinfo_endpoint": format!("{base}/userinfo"),
        });
        let known = users.clone();
        let userinfo = move |headers: axum::http::HeaderMap| {
            let known = known.clone();
            async move {
                // The provider trusts its own tokens: it reads the subject back.
                let claims: Value = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .and_then(|t| t.split('.').nth(1))
                    .and_then(|p| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(p)
                            .ok()
                    })
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let sub = claims["sub"].as_str().unwrap_or_default();
                let info = known.lock().unwrap().get(sub).cloned();
                info.map(axum::Json)
                    .ok_or(axum::http::StatusCode::UNAUTHORIZED)
            }
        };
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/realms/test/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/realms/test/jwks",
                get(move || async move { axum::Json(jwk) }),
            )
            .route("/realms/test/userinfo", get(userinfo));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { issuer, key, users }
    }

    /// Registers a user in `group` (userinfo's `group_membership`); returns their token.
    pub fn user(&self, sub: &str, group: &str) -> String {
        self.users.lock().unwrap().insert(
            sub.into(),
            json!({"sub": sub, "group_membership": [format!("/{group}")]}),
        );
        let claims = json!({"iss": self.issuer, "sub": sub, "iat": now(), "exp": now() + 3600});
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k"});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
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
