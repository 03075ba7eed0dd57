//! The web dashboard at /ui, as OSCAR serves its own: static assets compiled into the binary
//! (no Node at run time, no CDN), a single page that does everything through the public API
//! with the user's own credentials. `/` redirects here.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
/// js-yaml 4, vendored by scripts/vendor-ui.sh (MIT; ui/vendor/LICENSE-js-yaml).
const JS_YAML: &str = include_str!("../../ui/vendor/js-yaml.min.js");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript") }),
        )
        .route("/ui/app.css", get(|| async { asset(APP_CSS, "text/css") }))
        .route(
            "/ui/vendor/js-yaml.min.js",
            get(|| async { asset(JS_YAML, "text/javascript") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page loads only its own scripts; it talks to this server and, for presigned
    // transfers, to the store; images it shows are blobs it made.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' http: https:; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
