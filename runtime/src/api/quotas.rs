//! OSCAR's quota API over [`crate::quotas`]: `GET /system/quotas/user` (the caller's own),
//! `GET` and `PUT /system/quotas/user/{id}` (the administrator's), in the shapes of OSCAR's
//! pkg/handlers/quotas.go: `{"user_id", "resources": {"cpu": {"max", "used"}, "memory":
//! ...}, "minio": {"buckets": {"max", "used"}, "storage_per_bucket": {"max"},
//! "storage_total": {"used"}}}`, CPU in millicores and memory in bytes, plus our
//! `invocations`. A `max` of 0 is no limit (for `minio.buckets`, as in OSCAR, unless set).
//! OSCAR's `ephemeral_storage`, `gpu` and `volumes` quotas are refused with the reason (no
//! guest has a disk, a GPU or a volume here).

use super::{ApiError, AppState};
use crate::access::Caller;
use crate::quotas::{BucketLimits, Limits, QuotaSetError};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

/// The longest user id taken.
const MAX_USER_ID: usize = 512;

/// Routes of /system/quotas.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/quotas/user", get(own))
        .route("/system/quotas/user/{id}", get(of_user).put(set))
}

/// A user's quotas and what their running invocations hold, as OSCAR's QuotaResponse.
fn answer(app: &AppState, user: &str) -> Json<Value> {
    let quotas = &app.operations.quotas;
    let (limits, held) = (quotas.limits(user), quotas.held(user));
    let pair = |max: Option<u64>, used: u64| json!({"max": max.unwrap_or(0), "used": used});
    let buckets = quotas.bucket_limits(user);
    let owned =
        crate::access::owned_buckets(&app.buckets.bucket_records, &app.services.registry, user);
    // What the user's buckets hold, where this server can see it: the embedded store.
    let stored: u64 = match &app.buckets.storage.embedded_buckets {
        Some(root) => {
            let sizes = crate::storage::bucket_sizes::BucketSizes::new(root);
            owned.iter().map(|b| sizes.walk(b)).sum()
        }
        None => 0,
    };
    Json(json!({
        "user_id": user,
        "resources": {
            "cpu": pair(limits.cpu, held.cpu),
            "memory": pair(limits.memory, held.memory),
            "invocations": pair(limits.invocations, held.invocations),
        },
        "minio": {
            "buckets": {"max": buckets.buckets.unwrap_or(0), "used": owned.len()},
            "storage_per_bucket": {"max": buckets.storage_per_bucket.as_deref().unwrap_or("0")},
            "storage_total": {"used": stored.to_string()},
        },
    }))
}

/// GET /system/quotas/user: the calling user's.
async fn own(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match caller.user() {
        Some(user) => Ok(answer(&app, &user.sub)),
        None => Err(ApiError::BadRequest(
            "the administrator has no quota of its own; GET /system/quotas/user/{id} shows a user's"
                .into(),
        )),
    }
}

/// GET /system/quotas/user/{id}: the administrator's view of a user's.
async fn of_user(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    check_id(&id)?;
    Ok(answer(&app, &id))
}

/// PUT /system/quotas/user/{id}: sets a user's limits (those given; the others are kept).
async fn set(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    check_id(&id)?;
    let body: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return Err(bad("invalid payload: a JSON object is expected")),
        Err(e) => return Err(bad(&format!("invalid payload: {e}"))),
    };
    let limits = limits_of(&body)?;
    let buckets = bucket_limits_of(&body)?;
    if limits == Limits::default() && buckets == BucketLimits::default() {
        return Err(bad(
            "cpu, memory, invocations, minio.buckets or minio.storage_per_bucket must be provided",
        ));
    }
    app.operations
        .quotas
        .set(&id, limits, buckets.clone())
        .await
        .map_err(|e| match e {
            QuotaSetError::TooMany => bad(&e.to_string()),
            QuotaSetError::Store(e) => ApiError::from(e),
        })?;
    tracing::info!(user = %id, ?limits, ?buckets, "user quotas set");
    Ok(answer(&app, &id))
}

/// The limits a PUT body sets, refusing what is not enforced here.
fn limits_of(body: &Map<String, Value>) -> Result<Limits, ApiError> {
    for (field, why) in [
        (
            "ephemeral_storage",
            "a guest has no disk of its own here: its scratch folder is bounded by the server's output limits",
        ),
        ("gpu", "wasm guests have no GPU"),
        ("volumes", "there are no managed volumes"),
    ] {
        if body.get(field).is_some_and(|v| !blank(v)) {
            return Err(bad(&format!(
                "the {field} quota is not supported by oscar-wasm: {why}"
            )));
        }
    }
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match body.get(field) {
            None => Ok(None),
            Some(v) if blank(v) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(bad(&format!("{field} must be a string"))),
        }
    };
    let cpu = text("cpu")?
        .map(|t| crate::quotas::parse_millicores(&t))
        .transpose()
        .map_err(|e| bad(&format!("invalid cpu quantity: {e}")))?;
    let memory = text("memory")?
        .map(|t| crate::quantity::parse(&t).filter_positive())
        .transpose()
        .map_err(|e| bad(&format!("invalid memory quantity: {e}")))?;
    let invocations = text("invocations")?
        .map(|t| match t.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!(
                "invocations must be a whole number of at least 1, not {t:?}"
            ))),
        })
        .transpose()?;
    Ok(Limits {
        cpu,
        memory,
        invocations,
    })
}

/// The bucket limits of a PUT body's `minio` block, in OSCAR's shape: `{"buckets": "3",
/// "storage_per_bucket": "50Mi"}` (strings; numbers are taken too).
fn bucket_limits_of(body: &Map<String, Value>) -> Result<BucketLimits, ApiError> {
    let minio = match body.get("minio") {
        None => return Ok(BucketLimits::default()),
        Some(v) if blank(v) => return Ok(BucketLimits::default()),
        Some(Value::Object(minio)) => minio,
        Some(_) => return Err(bad("minio must be an object")),
    };
    for field in minio.keys() {
        if field != "buckets" && field != "storage_per_bucket" {
            return Err(bad(&format!(
                "minio.{field} is not a quota; minio takes buckets and storage_per_bucket"
            )));
        }
    }
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match minio.get(field) {
            None => Ok(None),
            Some(v) if blank(v) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(bad(&format!("minio.{field} must be a string"))),
        }
    };
    let buckets = text("buckets")?
        .map(|t| {
            t.parse::<u64>().map_err(|_| {
                bad(&format!(
                    "invalid minio.buckets quantity: {t:?} is not a whole number of at least 0"
                ))
            })
        })
        .transpose()?;
    let storage_per_bucket = text("storage_per_bucket")?;
    if let Some(t) = &storage_per_bucket {
        crate::quantity::parse(t)
            .map_err(|e| bad(&format!("invalid minio.storage_per_bucket: {e}")))?;
    }
    Ok(BucketLimits {
        buckets,
        storage_per_bucket,
    })
}

/// A quantity of at least 1.
trait Positive {
    fn filter_positive(self) -> Result<u64, String>;
}

impl Positive for Result<u64, String> {
    fn filter_positive(self) -> Result<u64, String> {
        self.and_then(|n| {
            if n > 0 {
                Ok(n)
            } else {
                Err("a quota of 0 would refuse everything; give at least 1".into())
            }
        })
    }
}

fn blank(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("") || value.as_object().is_some_and(Map::is_empty)
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::User(_) => Err(ApiError::Forbidden(
            "only the administrator reads and sets other users' quotas".into(),
        )),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_USER_ID {
        return Err(bad(&format!("a user id has 1 to {MAX_USER_ID} bytes")));
    }
    Ok(())
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_bodies_set_what_is_enforced_and_refuse_the_rest() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let limits = limits_of(&body(
            json!({"cpu": "1500m", "memory": "1Gi", "ephemeral_storage": ""}),
        ))
        .unwrap();
        assert_eq!(limits.cpu, Some(1500));
        assert_eq!(limits.memory, Some(1 << 30));
        assert_eq!(limits.invocations, None);
        assert_eq!(
            limits_of(&body(json!({"invocations": 2})))
                .unwrap()
                .invocations,
            Some(2)
        );
        let minio = bucket_limits_of(&body(
            json!({"minio": {"buckets": "3", "storage_per_bucket": "50Mi"}}),
        ))
        .unwrap();
        assert_eq!(minio.buckets, Some(3));
        assert_eq!(minio.storage_bytes(), Some(50 << 20));
        for bad in [
            json!({"minio": {"buckets": "-1"}}),
            json!({"minio": {"storage_per_bucket": "lots"}}),
            json!({"minio": {"disk": "1Gi"}}),
            json!({"minio": "3"}),
        ] {
            assert!(bucket_limits_of(&body(bad.clone())).is_err(), "{bad}");
        }
        for bad in [
            json!({"gpu": "1"}),
            json!({"cpu": "lots"}),
            json!({"memory": "0"}),
            json!({"invocations": "0"}),
            json!({"cpu": ["1"]}),
        ] {
            assert!(limits_of(&body(bad.clone())).is_err(), "{bad}");
        }
    }
}
