//! OSCAR's cluster routes as this runtime can answer them: `/system/status` (this machine and
//! this server, in OSCAR's StatusInfo shape), the execution log (`GET /system/logs`), a
//! service's deployment status and logs; and 501 with a message saying why, never a bare 404,
//! for the routes that have no meaning here (federation, volumes, exposed services'
//! lifecycle).

use super::names::ServicePath;
use super::{ApiError, AppState};
use crate::app::Services;
use crate::service::Backend;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The administrator's routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/system/status", get(status))
        // There are no managed volumes: an empty list (the dashboard's Volumes page lists
        // them); creating one is refused below.
        .route(
            "/system/volumes",
            get(no_volumes).post(|| not_here(NO_VOLUMES)),
        )
        .route("/system/logs", get(super::executions::list))
        .route("/system/services/{name}/deployment", get(deployment))
        .route(
            "/system/services/{name}/deployment/logs",
            get(deployment_logs),
        );
    for (path, why) in NOT_HERE {
        router = router.route(path, any(move || not_here(why)));
    }
    router
}

const NO_VOLUMES: &str = "persistent volumes are not supported by oscar-wasm";

/// GET /system/volumes: none.
async fn no_volumes() -> Json<Value> {
    Json(json!([]))
}

/// OSCAR routes that do not apply to this runtime, and why.
const NOT_HERE: &[(&str, &str)] = &[
    (
        "/system/federation/{name}",
        "federated services are not supported by oscar-wasm",
    ),
    (
        "/system/volumes/{name}",
        "persistent volumes are not supported by oscar-wasm",
    ),
    (
        "/system/services/{name}/stop",
        "stop is not offered: an exposed wasm service keeps no replicas (each request gets a fresh instance), and an image service's Deployment follows its definition (update the service)",
    ),
    (
        "/system/services/{name}/start",
        "start is not offered: an exposed wasm service keeps no replicas (each request gets a fresh instance), and an image service's Deployment follows its definition (update the service)",
    ),
    (
        "/system/services/{name}/restart",
        "restart is not offered: an exposed wasm service keeps no replicas (each request gets a fresh instance), and an image service's Deployment follows its definition (update the service)",
    ),
];

async fn not_here(why: &'static str) -> (StatusCode, String) {
    (StatusCode::NOT_IMPLEMENTED, format!("{why}\n"))
}

/// OSCAR's StatusInfo, filled from this machine and this server: the cluster's servers as
/// nodes and replicas (counted from their announcements in NATS), this server's readiness (a
/// cluster member's link to NATS) and its OIDC issuers and groups. The node metrics are this
/// machine's.
async fn status(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let buckets = app.buckets.storage.embedded_buckets.clone();
    let (machine, store) = tokio::task::spawn_blocking(move || {
        (Machine::read(), buckets.as_deref().map(count_objects))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let services = app.services.registry.list();
    let running: usize = services.iter().map(|d| d.active()).sum();
    // OSCAR counts its pods by phase; here: invocations running, and jobs by status.
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for d in &services {
        for record in app.jobs.store.list(&d.service.spec.name) {
            *counts.entry(record.status.name()).or_default() += 1;
        }
    }
    let jobs: usize = counts.values().sum();
    let count = |status: &str| counts.get(status).copied().unwrap_or(0);
    let (buckets_count, total_objects) = store.unwrap_or((0, 0));
    // A cluster's servers, counted from their announcements in NATS; else this one.
    let members = app
        .operations
        .cluster
        .as_ref()
        .map_or(1, |c| c.members.load(std::sync::atomic::Ordering::Relaxed));
    Ok(Json(json!({
        "cluster": {
            "nodes_count": members,
            "metrics": {
                "cpu": {
                    "total_free_cores": machine.millicores.saturating_sub(machine.load_millicores),
                    "max_free_on_node_cores": machine.millicores.saturating_sub(machine.load_millicores),
                    "total_schedulable_cores": machine.millicores,
                    "total_schedulable_on_node_cores": machine.millicores,
                },
                "memory": {
                    "total_free_bytes": machine.available_bytes,
                    "max_free_on_node_bytes": machine.available_bytes,
                    "total_schedulable_bytes": machine.total_bytes,
                    "max_schedulable_on_node_bytes": machine.total_bytes,
                },
                "gpu": {"total_gpu": 0},
            },
            "nodes": [{
                "name": machine.hostname,
                "cpu": {
                    "capacity_cores": machine.millicores,
                    "usage_cores": machine.load_millicores,
                },
                "memory": {
                    "capacity_bytes": machine.total_bytes,
                    "usage_bytes": machine.total_bytes.saturating_sub(machine.available_bytes),
                },
                "gpu": 0,
                "is_interlink": false,
                "status": "Ready",
                "conditions": [{"type": "Ready", "status": true}],
            }],
        },
        "oscar": {
            "deployment_name": "oscar-wasm",
            "ready": super::ready(&app),
            "deployment": {
                "available_replicas": members,
                "ready_replicas": members,
                "replicas": members,
                "creation_timestamp": crate::clock::rfc3339(app.operations.started_ms),
                "strategy": if app.operations.cluster.is_some() { "cluster of servers sharing NATS JetStream" } else { "single process" },
                "labels": {},
            },
            "jobs_count": jobs,
            "pods": {
                "total": running + count("Pending") + count("Succeeded") + count("Failed"),
                "states": {
                    "Pending": count("Pending"),
                    "Running": running,
                    "Succeeded": count("Succeeded"),
                    "Failed": count("Failed"),
                },
            },
            "oidc": {
                "enabled": app.users.oidc.enabled(),
                "issuers": app.users.oidc.issuers(),
                "groups": app.users.oidc.groups(),
            },
        },
        "minio": {"buckets_count": buckets_count, "total_objects": total_objects},
    })))
}

/// What this machine has.
struct Machine {
    hostname: String,
    /// Cores, in millicores: OSCAR fills its `*_cores` fields with Kubernetes' MilliValue()
    /// (pkg/handlers/status.go), and its dashboard divides them by 1000.
    millicores: u64,
    /// The one-minute load average in millicores: cores in use, as near as Linux says.
    load_millicores: u64,
    total_bytes: u64,
    available_bytes: u64,
}

impl Machine {
    fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib = |key: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Self {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            millicores: 1000 * std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            load_millicores: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0, |l| (l * 1000.0).round() as u64),
            total_bytes: kib("MemTotal:") * 1024,
            available_bytes: kib("MemAvailable:") * 1024,
        }
    }
}

/// Buckets and objects of the embedded store, counting at most [`COUNT_LIMIT`] entries.
fn count_objects(root: &std::path::Path) -> (usize, usize) {
    let Ok(buckets) = std::fs::read_dir(root) else {
        return (0, 0);
    };
    let buckets: Vec<_> = buckets
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    let mut objects = 0;
    let mut pending = buckets.clone();
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            seen += 1;
            if seen > COUNT_LIMIT {
                return (buckets.len(), objects);
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                // s3s-fs keeps its own metadata beside the objects.
                Ok(t) if t.is_file() && !entry.file_name().to_string_lossy().starts_with('.') => {
                    objects += 1
                }
                _ => {}
            }
        }
    }
    (buckets.len(), objects)
}

/// Entries counted at most for `/system/status` (the figure is a lower bound beyond it).
const COUNT_LIMIT: usize = 1_000_000;

/// OSCAR's ServiceDeploymentStatus: a wasm service is ready once its module is loaded; an
/// image service once a cluster is there to run its Jobs.
async fn deployment(
    State(app): State<AppState>,
    ServicePath(name): ServicePath,
) -> Result<Json<Value>, ApiError> {
    let deployed = app.services.registry.require(&name)?;
    let mut status = deployment_summary(&app, &deployed);
    status["service_name"] = json!(name.as_str());
    Ok(Json(status))
}

/// OSCAR's ServiceDeploymentSummary of `deployed` (also listed with `?include=deployment`).
pub fn deployment_summary(app: &AppState, deployed: &crate::registry::Deployed) -> Value {
    let (kind, ready, reason) = match &deployed.service.spec.backend {
        Backend::Wasm(_) => (
            "wasm-module",
            deployed.runnable.is_some(),
            "the module could not be loaded at start-up; upload it again",
        ),
        Backend::Image { .. } => (
            "kubernetes-job",
            app.invocations.kube.as_ref().is_some(),
            "no Kubernetes cluster is configured",
        ),
    };
    let mut summary = json!({
        "state": if ready { "ready" } else { "unavailable" },
        "active_instances": deployed.active(),
        "affected_instances": 0,
        "resource_kind": kind,
    });
    if !ready {
        summary["reason"] = json!(reason);
    }
    summary
}

/// OSCAR's DeploymentLogStream: a service here has no long-running deployment whose log to
/// show; its invocations' logs are its jobs'.
async fn deployment_logs(
    State(services): State<Services>,
    ServicePath(name): ServicePath,
) -> Result<Json<Value>, ApiError> {
    services.registry.require(&name)?;
    Ok(Json(json!({
        "service_name": name.as_str(),
        "available": false,
        "message": format!(
            "oscar-wasm runs no long-lived deployment for a service; the logs of its invocations are at /system/logs/{name}"
        ),
        "entries": [],
    })))
}
