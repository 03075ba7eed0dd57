//! /system/services/{name}/secrets: which secrets a service has (names, never values), and
//! setting some of them without resending the definition, in the shape OSCAR's pull request
//! 623 gives PUT (a JSON map of names to values, merged into the stored ones, 204). The
//! service's owner or the administrator only. A change goes through the same update as PUT
//! /system/services (sealed, stored, applied on every cluster member); the next invocation
//! sees it, and no module is recompiled.

use super::names::ServicePath;
use super::{ApiError, AppState};
use crate::access::Caller;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// Most secrets a service may hold, and the longest name and value.
const MAX_SECRETS: usize = 256;
const MAX_NAME: usize = 256;
const MAX_VALUE: usize = 64 << 10;

pub fn routes() -> Router<AppState> {
    Router::new().route("/system/services/{name}/secrets", get(names).put(set))
}

/// The names of the service's secrets.
async fn names(
    State(app): State<AppState>,
    caller: Caller,
    ServicePath(name): ServicePath,
) -> Result<Json<Value>, ApiError> {
    let deployed = super::services::changeable(&app, &caller, &name)?;
    let names: Vec<&String> = secrets(&deployed.service.definition)
        .map(|s| s.keys().collect())
        .unwrap_or_default();
    Ok(Json(json!({"service": name, "secrets": names})))
}

fn secrets(definition: &Map<String, Value>) -> Option<&Map<String, Value>> {
    definition.get("environment")?.get("secrets")?.as_object()
}

/// Sets the given secrets (others are kept).
async fn set(
    State(app): State<AppState>,
    caller: Caller,
    ServicePath(name): ServicePath,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<StatusCode, ApiError> {
    let deployed = super::services::changeable(&app, &caller, &name)?;
    let given = match serde_json::from_slice(&body) {
        Ok(Value::Object(given)) => given,
        Ok(_) => {
            return Err(bad(
                "the body must be a JSON object of secret names to values",
            ));
        }
        Err(e) => return Err(bad(&format!("the body is not valid JSON: {e}"))),
    };
    if given.is_empty() {
        return Err(bad("the body must name at least one secret"));
    }
    for (key, value) in &given {
        let ok = key.len() <= MAX_NAME
            && !key.is_empty()
            && !key.contains(['=', '\0'])
            && value.as_str().is_some_and(|v| v.len() <= MAX_VALUE);
        if !ok {
            return Err(bad(&format!(
                "secrets are names (up to {MAX_NAME} bytes, no '=') with text values (up to {MAX_VALUE} bytes); {key:?} is not"
            )));
        }
    }
    let mut definition = deployed.service.definition.clone();
    // A null environment or secrets (as a YAML definition's empty key reads) is none yet.
    let environment = definition
        .entry("environment")
        .or_insert_with(|| json!({"variables": {}, "secrets": {}}));
    if environment.is_null() {
        *environment = json!({"variables": {}, "secrets": {}});
    }
    let Some(environment) = environment.as_object_mut() else {
        return Err(bad("the service's environment is not an object"));
    };
    let stored = environment
        .entry("secrets")
        .or_insert_with(|| Value::Object(Map::new()));
    if stored.is_null() {
        *stored = Value::Object(Map::new());
    }
    let Some(stored) = stored.as_object_mut() else {
        return Err(bad("the service's environment.secrets is not an object"));
    };
    stored.extend(given);
    if stored.len() > MAX_SECRETS {
        return Err(bad(&format!(
            "a service holds at most {MAX_SECRETS} secrets"
        )));
    }
    app.services
        .deployer
        .update_service(Value::Object(definition))
        .await?;
    tracing::info!(service = %name, "secrets set");
    Ok(StatusCode::NO_CONTENT)
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(why.to_string())
}
