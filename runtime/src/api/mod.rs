//! The HTTP edge: OSCAR's routes plus the module routes, composed into one router. Handlers
//! parse, call [`App`], and shape the answer; status codes are decided in [`error`].

pub mod error;
mod info;
mod modules;
mod run;
mod services;

use crate::app::App;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;

pub use error::ApiError;

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// The whole API.
pub fn router(app: AppState, max_body: u64) -> Router {
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    Router::new()
        .merge(info::routes())
        .merge(services::routes())
        .merge(modules::routes())
        .merge(run::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}
