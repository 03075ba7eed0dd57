//! The HTTP edge: OSCAR's routes plus the module routes, composed into one router. Names,
//! credentials and bodies are checked before handlers ([`names`], [`auth`], [`body`]); handlers
//! call the deployer or the executor and shape the answer; statuses are decided in [`error`].

mod auth;
mod body;
mod buckets;
pub(crate) mod cluster;
pub mod error;
pub mod executions;
mod exposed;
mod info;
mod isolation;
mod jobs;
mod modules;
mod names;
mod packages;

mod pods;
mod quotas;
pub mod request_span;
mod run;
mod secrets;
mod services;
mod trigger;
mod ui;
mod usage;

#[cfg(test)]
mod test_idp;
#[cfg(test)]
mod tests;

use crate::app::App;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::sync::Arc;

pub use error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// The API as one service: what [`service`] returns.
pub type Service<B> = tower::util::MapRequest<
    tower_http::normalize_path::NormalizePath<Router>,
    fn(axum::http::Request<B>) -> axum::http::Request<B>,
>;

/// The whole API as one service: the router, with trailing slashes trimmed before routing
/// (`GET /system/config/` is `/system/config`, as OSCAR's gin router serves it); the URI as
/// sent is kept for HTTP services, which see their paths unchanged.
pub fn service<B>(app: AppState, max_body: u64) -> Service<B> {
    fn keep_sent_uri<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
        let sent = exposed::SentUri(request.uri().clone());
        request.extensions_mut().insert(sent);
        request
    }
    tower::util::MapRequest::new(
        tower_http::normalize_path::NormalizePath::trim_trailing_slash(router(app, max_body)),
        keep_sent_uri::<B>,
    )
}

/// The whole API.
pub fn router(app: AppState, max_body: u64) -> Router {
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    // /system/* is the administrator's and OIDC users' (handlers apply OSCAR's rules to the
    // caller); /run and /job check the caller themselves; /health is open.
    let system = Router::new()
        .merge(info::routes())
        .merge(cluster::routes())
        .merge(buckets::routes())
        .merge(services::routes())
        .merge(secrets::routes())
        .merge(modules::routes())
        .merge(packages::routes())
        .merge(jobs::system_routes())
        .merge(usage::routes())
        .merge(quotas::routes())
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(ui::routes())
        .merge(system)
        .merge(
            // Invocations are recorded in OSCAR's execution log (GET /system/logs).
            Router::new()
                .merge(run::routes())
                .merge(jobs::invoke_routes())
                .merge(exposed::routes())
                .route_layer(axum::middleware::from_fn_with_state(
                    app.clone(),
                    executions::record,
                )),
        )
        .merge(services::auth_routes())
        .merge(pods::routes())
        .layer(axum::middleware::from_fn(no_challenge_for_scripts))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(request_span::trace_request))
        .with_state(app)
}

/// Browsers answer a 401 carrying a Basic challenge with their own login prompt, even for
/// a page's script; scripts that say so (`X-Requested-With: XMLHttpRequest`, as the dashboard
/// does) get the 401 without the challenge and show their own message.
async fn no_challenge_for_scripts(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let script = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let mut response = next.run(request).await;
    if script {
        response
            .headers_mut()
            .remove(axum::http::header::WWW_AUTHENTICATE);
    }
    response
}

/// GET /health: `Ok`, or 503 while a cluster member has lost NATS (its readiness: a load
/// balancer sends requests elsewhere meanwhile).
async fn health(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> (axum::http::StatusCode, &'static str) {
    if ready(&app) {
        (axum::http::StatusCode::OK, "Ok")
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "NATS is unreachable",
        )
    }
}

/// Whether this server can serve: always alone; a cluster member while it reaches NATS.
pub(crate) fn ready(app: &AppState) -> bool {
    app.operations.cluster.as_ref().is_none_or(|cluster| {
        cluster.client.connection_state() == async_nats::connection::State::Connected
    })
}

/// GET /metrics: Prometheus text format (the administrator's).
async fn metrics(
    axum::extract::State(app): axum::extract::State<AppState>,
    caller: crate::access::Caller,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    auth::admin_only(&caller, "read the metrics")?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.operations.metrics.render(),
    ))
}
