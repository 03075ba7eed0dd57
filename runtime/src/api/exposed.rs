//! OSCAR's exposed services: every method on `/system/services/{name}/exposed/{path...}` is
//! handed to the service's `wasi:http/proxy` component, as OSCAR's ingress hands it to the
//! service's pods.
//!
//! As in OSCAR, the route is open unless the definition's `expose.set_auth` is true; then it
//! takes basic auth with the service's name and token (what OSCAR's ingress checks), and also
//! the service's other callers (the administrator, the token as a bearer, OIDC users it is
//! open to). The guest sees what OSCAR's ingress hands a pod: the path after `/exposed`
//! (`/` for the service's root), or with `expose.rewrite_target` the whole path; the query
//! as sent. The credentials the route checked are not passed on.
//! The body streams both ways, within `--max-body` on the way in.
//!
//! An image service's requests go, the same way, to its Deployment's pods through the
//! cluster address of its Service (`kube/exposed.rs`), as OSCAR's ingress sends them.

use super::{ApiError, AppState};
use crate::protocol::ServiceName;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::BodyExt;

/// The original URI of a request, before trailing slashes were trimmed for routing: an HTTP
/// service sees its paths exactly as sent.
#[derive(Debug, Clone)]
pub struct SentUri(pub Uri);

/// The exposed routes (outside `/system`'s authentication: the handler decides).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/services/{name}/exposed", any(exposed))
        .route("/system/services/{name}/exposed/{*path}", any(exposed))
}

async fn exposed(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let sent = request
        .extensions()
        .get::<SentUri>()
        .map(|s| s.0.clone())
        .unwrap_or_else(|| request.uri().clone());
    let (name, rest) = split_exposed(sent.path())
        .ok_or_else(|| ApiError::NotFound(format!("no exposed service at {}", sent.path())))?;
    let deployed = ServiceName::parse(name)
        .and_then(|n| app.services.registry.get(&n))
        .ok_or_else(|| ApiError::NotFound(format!("service {name:?} not found")))?;
    let expose = deployed.service.spec.expose.unwrap_or_default();
    let (mut parts, body) = request.into_parts();
    let mut user = String::new();
    if expose.set_auth {
        match super::auth::authorize_invocation(&app, name, &parts.headers).await {
            Ok(sub) => user = sub,
            Err(refused) => return Ok(refused),
        }
        parts.headers.remove(header::AUTHORIZATION);
    }
    // OSCAR's ingress rewrites to `/$1`, or with rewrite_target to the whole API path.
    let path = if expose.rewrite_target {
        sent.path()
    } else if rest.is_empty() {
        "/"
    } else {
        rest
    };
    parts.uri = match sent.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
    .parse()
    .map_err(|e| ApiError::BadRequest(format!("the request's path: {e}")))?;
    // wasi:http takes the authority from the Host header; HTTP/1.0 clients may send none.
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    if let crate::service::Backend::Image { .. } = deployed.service.spec.backend {
        let timeout = deployed.service.spec.timeout;
        return forward(
            &app,
            name,
            axum::http::Request::from_parts(parts, body),
            timeout,
        )
        .await;
    }
    let limit = usize::try_from(app.invocations.requests.max_body).unwrap_or(usize::MAX);
    let body = http_body_util::Limited::new(body, limit)
        .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
        .boxed_unsync();
    let request_id = parts
        .extensions
        .get::<super::request_span::RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let response = app
        .invocations
        .executor
        .serve_http(
            deployed,
            axum::http::Request::from_parts(parts, body),
            request_id,
            user,
        )
        .await?;
    Ok(response.map(axum::body::Body::new).into_response())
}

/// Sends `request` to the pods of image service `name` and streams their answer back.
async fn forward(
    app: &AppState,
    name: &str,
    request: Request,
    timeout: Option<std::time::Duration>,
) -> Result<Response, ApiError> {
    let kube = app.invocations.kube.as_ref().ok_or_else(|| {
        ApiError::Unavailable("image services need a Kubernetes cluster, and none answered".into())
    })?;
    let address = kube
        .exposed_address(name)
        .await
        .map_err(|e| ApiError::Upstream(e.to_string()))?
        .ok_or_else(|| {
            ApiError::Unavailable(format!("{name}'s Service has no cluster address yet"))
        })?;
    let connect = async {
        let stream = tokio::net::TcpStream::connect(&address).await?;
        let _ = stream.set_nodelay(true);
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)
    };
    let (mut sender, connection) =
        tokio::time::timeout(std::time::Duration::from_secs(10), connect)
            .await
            .map_err(|_| ApiError::Upstream(format!("{name}'s pods at {address} did not answer")))?
            .map_err(|e| ApiError::Upstream(format!("{name}'s pods at {address}: {e}")))?;
    tokio::spawn(connection);
    let send = sender.send_request(request);
    let response = match timeout {
        Some(limit) => tokio::time::timeout(limit, send).await.map_err(|_| {
            ApiError::GatewayTimeout(format!(
                "{name} did not answer within its timeout of {:.3} s",
                limit.as_secs_f64()
            ))
        })?,
        None => send.await,
    }
    .map_err(|e| ApiError::Upstream(format!("{name}'s pods at {address}: {e}")))?;
    Ok(response.map(axum::body::Body::new).into_response())
}

/// `("name", "/rest")` of `/system/services/name/exposed/rest`; `rest` is empty for the
/// service's root.
fn split_exposed(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix("/system/services/")?;
    let (name, tail) = tail.split_once('/')?;
    let rest = tail.strip_prefix("exposed")?;
    (rest.is_empty() || rest.starts_with('/')).then_some((name, rest))
}

#[cfg(test)]
mod tests {
    use super::split_exposed;

    #[test]
    fn the_service_and_the_rest_of_the_path() {
        assert_eq!(
            split_exposed("/system/services/web/exposed/a/b/"),
            Some(("web", "/a/b/"))
        );
        assert_eq!(
            split_exposed("/system/services/web/exposed"),
            Some(("web", ""))
        );
        assert_eq!(
            split_exposed("/system/services/web/exposed/"),
            Some(("web", "/"))
        );
        assert_eq!(split_exposed("/system/services/web/exposedx"), None);
        assert_eq!(split_exposed("/system/services/web"), None);
    }
}
