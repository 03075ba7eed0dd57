//! Authentication at the HTTP edge: reads the Authorization header, asks [`crate::auth`], and
//! answers 401 (with a Basic challenge) or 403.

use super::AppState;
use crate::access::Caller;
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

/// The answer to a refused OIDC token: 401 (with a Bearer challenge naming the error) for a
/// token that proves nobody, 403 for a user outside the allowed groups, 502 when the issuer
/// could not be asked.
pub fn oidc_refusal(error: &crate::oidc::OidcError) -> Response {
    use crate::oidc::OidcError as E;
    let status = match error {
        E::NotInGroup { .. } => StatusCode::FORBIDDEN,
        E::IssuerFailed { .. } => StatusCode::BAD_GATEWAY,
        E::Malformed(_) | E::UnknownIssuer(_) | E::Invalid { .. } => StatusCode::UNAUTHORIZED,
    };
    if status.is_server_error() {
        tracing::error!(error = %error, "an OIDC issuer could not be asked");
    }
    let mut response = (status, format!("{error}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// The user a bearer token proves, when the server trusts OIDC issuers and the token is
/// not a service's (those are for /run and /job); their store keys are made at first login.
pub async fn oidc_user(app: &AppState, token: &[u8]) -> Result<Caller, Response> {
    let token = std::str::from_utf8(token)
        .map_err(|_| oidc_refusal(&crate::oidc::OidcError::Malformed("not UTF-8".into())))?;
    let user = app
        .users
        .oidc
        .verify(token)
        .await
        .map_err(|e| oidc_refusal(&e))?;
    if app.users.store_users.get(&user.sub).is_none() {
        app.users
            .store_users
            .ensure(&user.sub)
            .await
            .map_err(|e| super::ApiError::store(e).into_response())?;
    }
    if let Some(sync) = app
        .users
        .minio_users
        .as_ref()
        .filter(|users| !users.is_provisioned(&user.sub))
        .and_then(|_| app.minio_sync())
    {
        crate::minio_sync::provision(&sync, &user.sub)
            .await
            .map_err(|e| {
                super::ApiError::Storage(format!("making you a user of the MinIO store: {e}"))
                    .into_response()
            })?;
    }
    Ok(Caller::User(std::sync::Arc::new(user)))
}

/// Middleware of /system/*: the administrator, or an OIDC user; the [`Caller`] is put in the
/// request for handlers and extractors, which apply OSCAR's rules per service and bucket.
pub async fn authenticate(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = presented(request.headers());
    let caller = match &presented {
        Presented::Bearer(token) if app.users.oidc.enabled() => {
            match oidc_user(&app, token).await {
                Ok(caller) => caller,
                Err(refused) => return refused,
            }
        }
        _ => match auth::admin(&app.users.admin, &presented) {
            Decision::Allow => Caller::Admin,
            refused => return refusal(refused),
        },
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The administrator's own routes (metrics, module management, settings, the execution
/// log): an OIDC user gets 403.
pub fn admin_only(caller: &Caller, what: &str) -> Result<(), super::ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        user => Err(super::ApiError::Forbidden(format!(
            "{} may not {what}: only the administrator may",
            user.describe()
        ))),
    }
}

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| refusal(Decision::Unauthenticated))
    }
}

/// Checks an invocation of `name`: the administrator, the service's token, or an OIDC user
/// the service is open to (OSCAR's hasPermission); the refusal to send otherwise. Allowed, it
/// answers the OIDC user's subject when one called (whom the invocation is accounted to), else
/// an empty string (the service's owner is).
pub async fn authorize_invocation(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<String, Response> {
    if app.users.admin.is_open() && !app.users.oidc.enabled() {
        return Ok(String::new());
    }
    let deployed = app.services.registry.get(name);
    let token = deployed.as_ref().map(|d| d.service.spec.token.as_str());
    let mut presented = presented(headers);
    // Webhooks that can only carry credentials in their URL (SNS's http subscriptions:
    // `http://token:TOKEN@host/job/NAME`) present the service's token as a basic password.
    if let Presented::Basic { password, .. } = &presented
        && token.is_some_and(|t| auth::secrets_equal(password, t.as_bytes()))
    {
        presented = Presented::Bearer(password.clone());
    }
    // Whose token a bearer is: one hash and one lookup, whatever the number of services.
    let owner = match &presented {
        Presented::Bearer(bearer) => app.services.registry.owner_of_token(bearer),
        _ => None,
    };
    if let Presented::Bearer(bearer) = &presented
        && app.users.oidc.enabled()
        && owner.is_none()
    {
        let caller = oidc_user(app, bearer).await?;
        let sub = caller.user().map(|u| u.sub.clone()).unwrap_or_default();
        return match deployed {
            // An unknown service: the handler answers 404.
            None => Ok(sub),
            Some(d) if caller.may_use(&d.service.definition) => Ok(sub),
            Some(_) => Err((
                StatusCode::FORBIDDEN,
                format!("{} may not use the service {name}\n", caller.describe()),
            )
                .into_response()),
        };
    }
    if app.users.admin.is_open() {
        return Ok(String::new());
    }
    let owner_token = owner.as_ref().map(|d| d.service.spec.token.as_str());
    match auth::invoke(&app.users.admin, &presented, token, owner_token.into_iter()) {
        Decision::Allow => Ok(String::new()),
        // A token of another service asking for one that does not exist: say it does not.
        Decision::Forbidden if deployed.is_none() => Ok(String::new()),
        refused => Err(refusal(refused)),
    }
}

/// The service of an invocation (/run, /job), once its caller is allowed, and the OIDC subject
/// that called (empty otherwise): an extractor that runs before the body is read, so that
/// nobody without credentials gets a body read.
pub struct Invocation(pub std::sync::Arc<crate::registry::Deployed>, pub String);

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
            .await
            .map(|(deployed, user)| Invocation(deployed, user))
            .map_err(|answer| *answer)
    }
}

/// The service an invocation (/run, /job) names and the OIDC subject that called, once the
/// caller may invoke it; otherwise the answer to send (401/403, or 404 for an unknown
/// service).
pub async fn invocation_target(
    app: &AppState,
    name: &str,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<crate::registry::Deployed>, String), Box<Response>> {
    let user = authorize_invocation(app, name, headers)
        .await
        .map_err(Box::new)?;
    let deployed = app.services.registry.get(name).ok_or_else(|| {
        Box::new(
            super::ApiError::from(crate::registry::RegistryError::NotFound(name.to_string()))
                .into_response(),
        )
    })?;
    Ok((deployed, user))
}
