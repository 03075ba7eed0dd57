//! /system/services: OSCAR's service CRUD, PUT /system/services/{name}/module, and GET
//! /system/services/{name}/auth (whether the caller may use the service).

use super::names::ServicePath;
use super::{ApiError, AppState};
use crate::access::Caller;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/services", get(list).post(create).put(update))
        .route("/system/services/{name}", get(get_one).delete(delete))
        .route("/system/services/{name}/module", put(attach_module))
}

/// GET /system/services/{name}/auth, which OSCAR checks with a service's token as well as
/// the administrator's credentials, so it is outside the administrator-only routes.
pub fn auth_routes() -> Router<AppState> {
    Router::new().route("/system/services/{name}/auth", get(may_use))
}

/// 200 when the caller may invoke the service (the administrator, or its token); 401/403
/// otherwise, 404 for an unknown service, before any handler runs.
async fn may_use(_: super::auth::Invocation) -> StatusCode {
    StatusCode::OK
}

/// Parses a JSON body ourselves, so that malformed JSON gets our plain-text 400.
fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    include: Option<String>,
}

impl ListQuery {
    /// Whether `?include=` (a comma-separated list, as OSCAR reads it) names `what`.
    fn includes(&self, what: &str) -> bool {
        self.include.as_deref().is_some_and(|include| {
            include
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(what))
        })
    }
}

/// Every definition the caller may see; `?include=` (a comma-separated list, as OSCAR reads
/// it) adds `deployment` (its summary, as OSCAR) and `stats` (invocations and failures in the
/// last hour and the last invocation's time, for the dashboard).
async fn list(
    State(app): State<AppState>,
    caller: Caller,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> axum::response::Response {
    let (with_deployment, with_stats) = (query.includes("deployment"), query.includes("stats"));
    let visible: Vec<_> = app
        .services
        .registry
        .list()
        .into_iter()
        .filter(|d| caller.may_use(&d.service.definition))
        .collect();
    if !with_deployment && !with_stats {
        // Each definition was serialized at deploy time: join the bytes.
        let size = visible
            .iter()
            .map(|d| d.public_json.len() + 1)
            .sum::<usize>()
            + 2;
        let mut body = Vec::with_capacity(size);
        body.push(b'[');
        for (i, d) in visible.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&d.public_json);
        }
        body.push(b']');
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    Json(
        visible
            .iter()
            .map(|d| {
                let mut shown = d.service.to_public_json();
                if with_deployment {
                    shown["deployment"] = super::cluster::deployment_summary(&app, d);
                }
                if with_stats {
                    shown["stats"] = json!(app.operations.metrics.recent(&d.service.spec.name));
                }
                shown
            })
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn get_one(
    State(app): State<AppState>,
    ServicePath(name): ServicePath,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    // ServicePath has checked that the caller may see it.
    let deployed = app.services.registry.require(&name)?;
    if query.includes("deployment") {
        let mut shown = deployed.service.to_public_json();
        shown["deployment"] = super::cluster::deployment_summary(&app, &deployed);
        return Ok(Json(shown).into_response());
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        deployed.public_json.clone(),
    )
        .into_response())
}

/// The service `name` when the caller may change it (its owner, or the administrator).
pub(super) fn changeable(
    app: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<std::sync::Arc<crate::registry::Deployed>, ApiError> {
    let deployed = app.services.registry.require(name)?;
    if caller.may_change(&deployed.service.definition) {
        Ok(deployed)
    } else {
        Err(ApiError::Forbidden(format!(
            "{} may not change the service {name}: only its owner may",
            caller.describe()
        )))
    }
}

async fn create(
    State(app): State<AppState>,
    caller: Caller,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut definition = parse_json(&body)?;
    // A user owns what they create, as in OSCAR; the administrator's services are
    // cluster_admin's unless the definition names an owner.
    if let (Some(user), Value::Object(map)) = (caller.user(), &mut definition) {
        crate::oscar_definition::set_owner(map, &user.sub, &user.name);
        choose_vo(&app, user, map)?;
    }
    let privates = super::isolation::plan(&app, &caller, &mut definition).await?;
    let new_buckets = check_buckets(&app, &caller, &definition).await?;
    let deployed = app.services.deployer.create_service(definition).await?;
    if let Some(user) = caller.user() {
        keep_owner(&app, user, &deployed.service.spec.name, new_buckets).await?;
    }
    super::isolation::make(&app, &deployed.service.spec.name, privates).await?;
    tracing::info!(service = %deployed.service.spec.name, backend = %deployed.service.spec.backend, "service created");
    Ok((StatusCode::CREATED, Json(deployed.service.to_public_json())))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    super::body::JsonBody(body): super::body::JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let mut definition = parse_json(&body)?;
    if let Value::Object(map) = &mut definition {
        crate::oscar_definition::normalize(map);
        let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(existing) = app.services.registry.get(name) {
            if !caller.may_change(&existing.service.definition) {
                return Err(ApiError::Forbidden(format!(
                    "{} may not change the service {name}: only its owner may",
                    caller.describe()
                )));
            }
            // The owner stays who it was, whoever updates (as in OSCAR).
            if let Some(owner) = existing.service.definition.get("owner")
                && (caller.user().is_some() || !map.contains_key("owner"))
            {
                map.insert("owner".into(), owner.clone());
            }
        }
        if let Some(user) = caller.user() {
            choose_vo(&app, user, map)?;
        }
    }
    let privates = super::isolation::plan(&app, &caller, &mut definition).await?;
    let new_buckets = check_buckets(&app, &caller, &definition).await?;
    let deployed = app.services.deployer.update_service(definition).await?;
    if let Some(user) = caller.user() {
        keep_owner(&app, user, &deployed.service.spec.name, new_buckets).await?;
    }
    super::isolation::make(&app, &deployed.service.spec.name, privates).await?;
    tracing::info!(service = %deployed.service.spec.name, backend = %deployed.service.spec.backend, "service updated");
    Ok(StatusCode::NO_CONTENT)
}

/// The VO of a service a user creates or updates, as OSCAR decides it: one the definition
/// names must be one of the user's groups (403 otherwise); none named is the first of the
/// server's groups (`--oidc-group`) the user is in. It is also the `vo` label, as in OSCAR.
fn choose_vo(
    app: &AppState,
    user: &crate::oidc::User,
    map: &mut serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    crate::oscar_definition::normalize(map);
    let vo = match crate::access::vo_of(map) {
        Some(vo) if user.groups.iter().any(|g| g == vo) => vo.to_string(),
        Some(vo) => {
            return Err(ApiError::Forbidden(format!(
                "user {} is not a member of the VO '{vo}' that the service names; their groups are: {}",
                user.sub,
                user.groups.join(", ")
            )));
        }
        None => match app
            .users
            .oidc
            .groups()
            .iter()
            .find(|g| user.groups.contains(g))
        {
            Some(vo) => vo.clone(),
            None => return Ok(()),
        },
    };
    map.insert("vo".into(), json!(vo));
    if let Some(Value::Object(labels)) = map.get_mut("labels") {
        labels.insert("vo".into(), json!(vo));
    } else {
        map.insert("labels".into(), json!({"vo": vo}));
    }
    Ok(())
}

/// A user's service may name only buckets of `minio.default` that the user may give it: one
/// that does not exist yet (the service then owns it), or one the user owns (by its record)
/// and only the user's own services use. Anything else would open another's bucket to the
/// service's users (`access.rs` opens a service's buckets to whoever may use the service), so
/// it is refused with 403 before anything is deployed. OSCAR refuses a new service naming any
/// existing bucket; buckets made for a service here stay their owner's (see [`keep_owner`]),
/// to be reused by the owner's next services. Returns the buckets the service will make.
async fn check_buckets(
    app: &AppState,
    caller: &Caller,
    definition: &Value,
) -> Result<Vec<String>, ApiError> {
    let mut new = Vec::new();
    let Some(user) = caller.user() else {
        return Ok(new);
    };
    // An invalid definition is refused by the deployer, with its reason.
    let Ok(service) = crate::service::Service::from_definition(definition.clone()) else {
        return Ok(new);
    };
    let storage = &service.spec.storage;
    let buckets: std::collections::BTreeSet<&str> = storage
        .paths()
        .filter(|p| p.provider == crate::storage::spec::DEFAULT_PROVIDER)
        .map(|p| p.bucket.as_str())
        .collect();
    let refused = |bucket: &str, why: &str| {
        ApiError::Forbidden(format!(
            "{} may not name the bucket '{bucket}' in a service: {why}",
            caller.describe()
        ))
    };
    for bucket in buckets {
        let facts = crate::access::bucket_facts(
            &app.buckets.bucket_records,
            &app.services.registry,
            bucket,
        );
        if let Some(other) = facts
            .services
            .iter()
            .find(|d| crate::access::owner_of(&d.service.definition) != Some(user.sub.as_str()))
        {
            return Err(refused(
                bucket,
                &format!(
                    "the service '{}' of another owner uses it",
                    other.service.spec.name
                ),
            ));
        }
        match app.buckets.bucket_records.get(bucket) {
            Some(record) if record.owner != user.sub => {
                return Err(refused(bucket, "it belongs to another owner"));
            }
            Some(_) => {}
            None if facts.services.is_empty() => {
                if app.buckets.bucket_admin.exists(bucket).await? {
                    return Err(refused(bucket, "it belongs to the administrator"));
                }
                new.push(bucket.to_string());
            }
            None => {}
        }
    }
    // OSCAR's `minio.buckets` quota, counted over the buckets the service names.
    let owned = crate::access::owned_buckets(
        &app.buckets.bucket_records,
        &app.services.registry,
        &user.sub,
    );
    let named: Vec<String> = storage
        .paths()
        .filter(|p| p.provider == crate::storage::spec::DEFAULT_PROVIDER)
        .map(|p| p.bucket.clone())
        .collect();
    app.operations
        .quotas
        .check_new_buckets(&user.sub, &owned, &named)
        .map_err(|e| ApiError::Forbidden(e.to_string()))?;
    Ok(new)
}

/// Records `user` as the owner of the `buckets` their service `service` made, so that they
/// keep them (to reach, reuse with another service, or delete) once no service uses them;
/// while one does, the services decide who reaches them, as before.
async fn keep_owner(
    app: &AppState,
    user: &crate::oidc::User,
    service: &str,
    buckets: Vec<String>,
) -> Result<(), ApiError> {
    for bucket in buckets {
        let record = crate::storage::bucket_records::BucketRecord {
            owner: user.sub.clone(),
            owner_name: user.name.clone(),
            visibility: crate::storage::bucket_records::Visibility::Private,
            allowed_users: Vec::new(),
            service: Some(service.to_string()),
        };
        super::buckets::keep_record(app, &bucket, Some(record)).await?;
    }
    Ok(())
}

async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    ServicePath(name): ServicePath,
) -> Result<StatusCode, ApiError> {
    changeable(&app, &caller, &name)?;
    app.services.deployer.delete_service(&name).await?;
    app.operations.metrics.forget(&name);
    tracing::info!(service = %name, "service deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn attach_module(
    State(app): State<AppState>,
    caller: Caller,
    ServicePath(name): ServicePath,
    super::body::Body(body): super::body::Body,
) -> Result<Json<Value>, ApiError> {
    changeable(&app, &caller, &name)?;
    let stored = app.services.deployer.attach_module(&name, body).await?;
    tracing::info!(service = %name, module = %stored.digest, "module attached");
    Ok(Json(
        json!({"digest": stored.digest.to_string(), "size": stored.size, "service": name}),
    ))
}
