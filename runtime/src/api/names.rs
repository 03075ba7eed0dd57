//! Service and job names taken from the URL, validated once here: a name that cannot be one
//! answers 404 before any handler looks it up, let alone joins it to a path. An OIDC user
//! naming a service they may not see (OSCAR's visibility rules) gets 403 here too, so every
//! route under a service (its definition, jobs, logs, outputs, deployment) follows one rule.

use super::{ApiError, AppState};
use crate::access::Caller;
use crate::protocol::{JobName, ServiceName};
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

/// The `{name}` or `{service}` of a route.
pub struct ServicePath(pub ServiceName);

/// The `{service}` and `{job}` of a route.
pub struct JobPath {
    /// The service.
    pub service: ServiceName,
    /// One of its jobs.
    pub job: JobName,
}

async fn param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    keys: &[&str],
) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    params
        .iter()
        .find(|(key, _)| keys.contains(key))
        .map(|(_, value)| value.to_string())
        .ok_or_else(|| ApiError::Internal(format!("the route has no {keys:?} parameter")))
}

async fn service(parts: &mut Parts, app: &AppState) -> Result<ServiceName, ApiError> {
    let raw = param(parts, app, &["name", "service"]).await?;
    let name = ServiceName::parse(&raw)
        .ok_or_else(|| ApiError::NotFound(format!("service {raw:?} not found")))?;
    if let Some(caller @ Caller::User(_)) = parts.extensions.get::<Caller>()
        && let Some(deployed) = app.services.registry.get(&name)
        && !caller.may_use(&deployed.service.definition)
    {
        return Err(ApiError::Forbidden(format!(
            "{} may not use the service {name}",
            caller.describe()
        )));
    }
    Ok(name)
}

impl FromRequestParts<AppState> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        service(parts, state).await.map(Self)
    }
}

impl FromRequestParts<AppState> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let service = service(parts, state).await?;
        let raw = param(parts, state, &["job"]).await?;
        let job = JobName::parse(&service, &raw)
            .ok_or_else(|| ApiError::NotFound(format!("job {raw:?} not found")))?;
        Ok(Self { service, job })
    }
}
