//! Authentication at the HTTP edge: reads the Authorization header, asks [`crate::auth`], and
//! answers 401 (with a Basic challenge) or 403.

use super::AppState;
use crate::auth::{self, Decision, Presented};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// Reads `Authorization: Basic ...` or `Authorization: Bearer ...`.
pub fn presented(headers: &HeaderMap) -> Presented {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Presented::Nothing;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Presented::Bearer(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
        && let Some(colon) = decoded.iter().position(|b| *b == b':')
    {
        return Presented::Basic {
            user: decoded[..colon].to_vec(),
            password: decoded[colon + 1..].to_vec(),
        };
    }
    Presented::Nothing
}

/// The response to a refusal.
pub fn refusal(decision: Decision) -> Response {
    match decision {
        Decision::Allow => StatusCode::OK.into_response(),
        Decision::Forbidden => (
            StatusCode::FORBIDDEN,
            "this token is not valid for this service\n",
        )
            .into_response(),
        Decision::Unauthenticated => {
            let mut response =
                (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oscar-wasm\""),
            );
            response
        }
    }
}

/// Middleware of /system/*: the administrator only.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    match auth::admin(&app.admin, &presented(request.headers())) {
        Decision::Allow => next.run(request).await,
        refused => refusal(refused),
    }
}

/// Checks an invocation of `name`; the refusal to send otherwise ([`refusal`]).
pub fn authorize_invocation(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<(), Decision> {
    if app.admin.is_open() {
        return Ok(());
    }
    let deployed = app.registry.get(name);
    let services = app.registry.list();
    let tokens = services.iter().map(|d| d.service.spec.token.as_str());
    let token = deployed.as_ref().map(|d| d.service.spec.token.as_str());
    let mut presented = presented(headers);
    // Webhooks that can only carry credentials in their URL (SNS's http subscriptions:
    // `http://token:TOKEN@host/job/NAME`) present the service's token as a basic password.
    if let Presented::Basic { password, .. } = &presented
        && token.is_some_and(|t| auth::secrets_equal(password, t.as_bytes()))
    {
        presented = Presented::Bearer(password.clone());
    }
    match auth::invoke(&app.admin, &presented, token, tokens) {
        Decision::Allow => Ok(()),
        // A token of another service asking for one that does not exist: say it does not.
        Decision::Forbidden if deployed.is_none() => Ok(()),
        refused => Err(refused),
    }
}

/// The service of an invocation (/run, /job), once its caller is allowed: an extractor that
/// runs before the body is read, so that nobody without credentials gets a body read.
pub struct Invocation(pub std::sync::Arc<crate::registry::Deployed>);

impl axum::extract::FromRequestParts<AppState> for Invocation {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(name) =
            axum::extract::Path::<String>::from_request_parts(parts, app)
                .await
                .map_err(IntoResponse::into_response)?;
        invocation_target(app, &name, &parts.headers)
            .map(Invocation)
            .map_err(|answer| *answer)
    }
}

/// The service an invocation (/run, /job) names, once the caller may invoke it; otherwise the
/// answer to send (401/403, or 404 for an unknown service).
pub fn invocation_target(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<crate::registry::Deployed>, Box<Response>> {
    if let Err(decision) = authorize_invocation(app, name, headers) {
        return Err(Box::new(refusal(decision)));
    }
    app.registry.get(name).ok_or_else(|| {
        Box::new(
            super::ApiError::from(crate::registry::RegistryError::NotFound(name.to_string()))
                .into_response(),
        )
    })
}
