//! OSCAR's metrics API over the usage accounts ([`crate::usage`]): `GET /system/metrics` (a
//! summary of a time range), `/system/metrics/breakdown` (by service, user or country; JSON or
//! CSV) and `/system/metrics/{name}` (one service's metrics, or one of them), in the shapes of
//! OSCAR's pkg/handlers/metrics.go. The figures are exact meters rather than Prometheus and Loki
//! estimates, and add what OSCAR cannot measure per call (wall time, bytes in and out, peak
//! memory, failures) as extra fields. The administrator sees every service; an OIDC user the
//! services they may use, as in OSCAR.

use super::{ApiError, AppState};
use crate::access::Caller;
use crate::usage::ledger::Folded;
use crate::usage::meters::{Channel, Totals};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Routes of /system/metrics.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/system/metrics", get(summary))
        .route("/system/metrics/breakdown", get(breakdown))
        .route("/system/metrics/{name}", get(service_metrics))
}

/// Nanoseconds in an hour, for OSCAR's `cpu-hours`.
const NS_PER_HOUR: f64 = 3_600e9;

/// The query every route takes.
#[derive(Deserialize)]
struct Range {
    start: Option<String>,
    end: Option<String>,
    metric: Option<String>,
    group_by: Option<String>,
    include_users: Option<String>,
    format: Option<String>,
}

/// A time range in milliseconds since the Unix epoch, as asked (RFC 3339, end defaulting to
/// now and start to a day before it).
struct Window {
    start_ms: u64,
    end_ms: u64,
}

impl Window {
    fn parse(range: &Range) -> Result<Self, ApiError> {
        let at = |raw: &Option<String>, what: &str| -> Result<Option<u64>, ApiError> {
            match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| Some(u64::try_from(t.timestamp_millis()).unwrap_or(0)))
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "invalid {what} timestamp {text:?}: {e} (RFC 3339, like 2026-01-31T00:00:00Z)"
                        ))
                    }),
            }
        };
        let end_ms = at(&range.end, "end")?.unwrap_or_else(crate::clock::now_ms);
        let start_ms = at(&range.start, "start")?.unwrap_or(end_ms.saturating_sub(86_400_000));
        if end_ms < start_ms {
            return Err(ApiError::BadRequest("end must be after start".into()));
        }
        Ok(Self { start_ms, end_ms })
    }

    fn start(&self) -> String {
        crate::clock::rfc3339(self.start_ms)
    }

    fn end(&self) -> String {
        crate::clock::rfc3339(self.end_ms)
    }
}

/// The services the caller's figures cover: `None` for every one (the administrator).
fn scope(app: &AppState, caller: &Caller) -> Option<HashSet<String>> {
    match caller {
        Caller::Admin => None,
        Caller::User(_) => Some(
            app.services
                .registry
                .list()
                .into_iter()
                .filter(|d| caller.may_use(&d.service.definition))
                .map(|d| d.service.spec.name.clone())
                .collect(),
        ),
    }
}

/// The accounts of `window` within `scope`.
fn fold(app: &AppState, window: &Window, scope: Option<&HashSet<String>>) -> Folded {
    app.operations
        .usage
        .fold(window.start_ms, window.end_ms, |service| {
            scope.is_none_or(|s| s.contains(service))
        })
}

/// Where the figures come from, and what is not measured.
fn sources() -> Value {
    json!([
        {"name": "usage-meters", "status": "ok",
         "notes": "exact per-invocation meters: CPU time, wall time, peak linear memory, bytes in and out"},
        {"name": "gpu", "status": "unavailable",
         "notes": "wasm guests use no GPU, and image services' GPU time is not measured"},
        {"name": "countries", "status": "unavailable",
         "notes": "requests are not located by country (no GeoIP database)"},
    ])
}

/// Sums over a set of rows, with the counts OSCAR reports.
#[derive(Default)]
struct Sum {
    totals: Totals,
    sync: u64,
    asynchronous: u64,
    exposed: u64,
    users: BTreeSet<String>,
}

impl Sum {
    fn add(&mut self, user: &str, channel: Channel, totals: &Totals) {
        self.totals.add(totals);
        match channel {
            Channel::Sync => self.sync += totals.invocations,
            Channel::Async => self.asynchronous += totals.invocations,
            Channel::Exposed => self.exposed += totals.invocations,
        }
        if !user.is_empty() {
            self.users.insert(user.to_string());
        }
    }

    /// The fields this runtime adds to OSCAR's.
    fn extra(&self) -> serde_json::Map<String, Value> {
        let t = &self.totals;
        let mut extra = serde_json::Map::new();
        extra.insert("executions_count".into(), json!(t.invocations));
        extra.insert("failures_count".into(), json!(t.failures));
        extra.insert("cpu_hours".into(), json!(t.cpu_ns as f64 / NS_PER_HOUR));
        extra.insert("wall_hours".into(), json!(t.wall_ns as f64 / NS_PER_HOUR));
        extra.insert("bytes_in".into(), json!(t.bytes_in));
        extra.insert("bytes_out".into(), json!(t.bytes_out));
        extra.insert("peak_memory_bytes".into(), json!(t.peak_memory));
        extra
    }
}

/// GET /system/metrics: OSCAR's MetricsSummaryResponse.
async fn summary(
    State(app): State<AppState>,
    caller: Caller,
    Query(range): Query<Range>,
) -> Result<Json<Value>, ApiError> {
    let window = Window::parse(&range)?;
    let scope = scope(&app, &caller);
    let mut sum = Sum::default();
    let mut services = BTreeSet::new();
    for ((service, user, channel), totals) in fold(&app, &window, scope.as_ref()) {
        sum.add(&user, channel, &totals);
        services.insert(service);
    }
    let active = match &scope {
        Some(scope) => scope.len(),
        None => app.services.registry.list().len(),
    };
    let mut totals = json!({
        "services_count_active": active,
        "services_count_total": services.len(),
        "cpu_hours_total": sum.totals.cpu_ns as f64 / NS_PER_HOUR,
        "gpu_hours_total": 0.0,
        "requests_count_total": sum.sync + sum.asynchronous,
        "requests_count_sync": sum.sync,
        "requests_count_async": sum.asynchronous,
        "requests_count_exposed": sum.exposed,
        "countries_count": 0,
        "countries": [],
        "users_count": sum.users.len(),
        "users": sum.users,
    });
    if let Some(object) = totals.as_object_mut() {
        object.extend(sum.extra());
    }
    Ok(Json(json!({
        "start": window.start(),
        "end": window.end(),
        "totals": totals,
        "sources": sources(),
    })))
}

/// GET /system/metrics/breakdown: by `service`, `user` or `country`, as JSON or CSV.
async fn breakdown(
    State(app): State<AppState>,
    caller: Caller,
    Query(range): Query<Range>,
) -> Result<Response, ApiError> {
    let window = Window::parse(&range)?;
    let group_by = range
        .group_by
        .as_deref()
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty())
        .ok_or_else(|| ApiError::BadRequest("group_by is required".into()))?;
    let format = range
        .format
        .as_deref()
        .map_or("json".to_string(), |f| f.trim().to_ascii_lowercase());
    if format != "json" && format != "csv" {
        return Err(ApiError::BadRequest("invalid format: json or csv".into()));
    }
    let include_users = range
        .include_users
        .as_deref()
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let folded = fold(&app, &window, scope(&app, &caller).as_ref());
    let mut groups: BTreeMap<String, Sum> = BTreeMap::new();
    for ((service, user, channel), totals) in &folded {
        let key = match group_by.as_str() {
            "service" => service,
            "user" => user,
            // Requests are not located: there is no country to group by.
            "country" => continue,
            _ => {
                return Err(ApiError::BadRequest(
                    "unsupported group_by: service, user or country".into(),
                ));
            }
        };
        groups
            .entry(key.clone())
            .or_default()
            .add(user, *channel, totals);
    }
    if format == "csv" {
        if group_by == "service" && include_users {
            return Err(ApiError::BadRequest(
                "include_users is not supported for csv".into(),
            ));
        }
        let csv = breakdown_csv(&group_by, &groups);
        return Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response());
    }
    let items: Vec<Value> = groups
        .iter()
        .map(|(key, sum)| breakdown_item(&group_by, key, sum, include_users))
        .collect();
    Ok(Json(json!({
        "start": window.start(),
        "end": window.end(),
        "group_by": group_by,
        "items": items,
    }))
    .into_response())
}

/// One item of a breakdown, in the shape OSCAR gives its group.
fn breakdown_item(group_by: &str, key: &str, sum: &Sum, include_users: bool) -> Value {
    let mut item = if group_by == "service" {
        let mut item = json!({
            "key": key,
            "requests_count_total": sum.sync + sum.asynchronous,
            "requests_count_sync": sum.sync,
            "requests_count_async": sum.asynchronous,
            "requests_count_exposed": sum.exposed,
            "unique_users_count": sum.users.len(),
            "countries": [],
        });
        if include_users {
            item["users"] = json!(sum.users);
        }
        item
    } else {
        json!({"key": key, "countries": []})
    };
    if let Some(object) = item.as_object_mut() {
        object.extend(sum.extra());
    }
    item
}

/// A breakdown as OSCAR's CSV export writes it.
fn breakdown_csv(group_by: &str, groups: &BTreeMap<String, Sum>) -> String {
    let mut out = String::new();
    let quote = |field: &str| -> String {
        if field.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", field.replace('"', "\"\""))
        } else {
            field.to_string()
        }
    };
    if group_by == "service" {
        out.push_str("key,membership,requests_count_total,requests_count_sync,requests_count_async,requests_count_exposed,unique_users_count,countries\n");
        for (key, s) in groups {
            out.push_str(&format!(
                "{},,{},{},{},{},{},\n",
                quote(key),
                s.sync + s.asynchronous,
                s.sync,
                s.asynchronous,
                s.exposed,
                s.users.len()
            ));
        }
    } else {
        out.push_str("key,membership,executions_count,countries\n");
        for (key, s) in groups {
            out.push_str(&format!("{},,{},\n", quote(key), s.totals.invocations));
        }
    }
    out
}

/// Per-service metric keys: OSCAR's, then this runtime's.
const SERVICE_METRICS: &[&str] = &[
    "cpu-hours",
    "gpu-hours",
    "requests-sync-per-service",
    "requests-async-per-service",
    "requests-exposed-per-service",
    "users-per-service",
    "wall-hours",
    "bytes-in",
    "bytes-out",
    "peak-memory",
    "failures",
];

/// One metric of one service's sum, with its unit.
fn metric_value(metric: &str, sum: &Sum) -> (f64, &'static str) {
    let t = &sum.totals;
    match metric {
        "cpu-hours" => (t.cpu_ns as f64 / NS_PER_HOUR, "hours"),
        "gpu-hours" => (0.0, "hours"),
        "requests-sync-per-service" => (sum.sync as f64, ""),
        "requests-async-per-service" => (sum.asynchronous as f64, ""),
        "requests-exposed-per-service" => (sum.exposed as f64, ""),
        "users-per-service" => (sum.users.len() as f64, ""),
        "wall-hours" => (t.wall_ns as f64 / NS_PER_HOUR, "hours"),
        "bytes-in" => (t.bytes_in as f64, "bytes"),
        "bytes-out" => (t.bytes_out as f64, "bytes"),
        "peak-memory" => (t.peak_memory as f64, "bytes"),
        _ => (t.failures as f64, ""),
    }
}

/// GET /system/metrics/{name}: every metric of the service (OSCAR's ServiceMetricsResponse),
/// or the one `metric` names (its MetricValueResponse).
async fn service_metrics(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(range): Query<Range>,
) -> Result<Json<Value>, ApiError> {
    let window = Window::parse(&range)?;
    if let Some(scope) = scope(&app, &caller)
        && !scope.contains(&name)
    {
        return Err(match app.services.registry.get(&name) {
            Some(_) => ApiError::Forbidden(format!(
                "{} may not read the metrics of {name}",
                caller.describe()
            )),
            None => ApiError::NotFound(format!("service {name} not found")),
        });
    }
    let mut sum = Sum::default();
    for ((_, user, channel), totals) in
        app.operations
            .usage
            .fold(window.start_ms, window.end_ms, |s| s == name)
    {
        sum.add(&user, channel, &totals);
    }
    let metric = range
        .metric
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let Some(metric) = metric else {
        let metrics: Vec<Value> = SERVICE_METRICS
            .iter()
            .map(|m| {
                let (value, unit) = metric_value(m, &sum);
                json!({"metric": m, "value": value, "unit": unit, "sources": sources()})
            })
            .collect();
        return Ok(Json(json!({
            "service_name": name,
            "start": window.start(),
            "end": window.end(),
            "metrics": metrics,
        })));
    };
    if !SERVICE_METRICS.contains(&metric) {
        return Err(ApiError::BadRequest(format!(
            "invalid metric key {metric:?}: one of {}",
            SERVICE_METRICS.join(", ")
        )));
    }
    let (value, unit) = metric_value(metric, &sum);
    Ok(Json(json!({
        "service_id": name,
        "metric": metric,
        "start": window.start(),
        "end": window.end(),
        "value": value,
        "unit": unit,
        "sources": sources(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_defaults_to_the_last_day_and_refuses_bad_times() {
        let range = |start: Option<&str>, end: Option<&str>| Range {
            start: start.map(String::from),
            end: end.map(String::from),
            metric: None,
            group_by: None,
            include_users: None,
            format: None,
        };
        let w = Window::parse(&range(None, Some("2026-01-02T00:00:00Z"))).unwrap();
        assert_eq!(w.end_ms - w.start_ms, 86_400_000);
        let w = Window::parse(&range(
            Some("2026-01-01T01:00:00+01:00"),
            Some("2026-01-01T00:30:00Z"),
        ))
        .unwrap();
        assert_eq!(w.end_ms - w.start_ms, 30 * 60_000, "offsets are honoured");
        assert!(Window::parse(&range(Some("yesterday"), None)).is_err());
        assert!(
            Window::parse(&range(
                Some("2026-01-02T00:00:00Z"),
                Some("2026-01-01T00:00:00Z")
            ))
            .is_err()
        );
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut groups = BTreeMap::new();
        let mut sum = Sum::default();
        sum.add(
            "a,b",
            Channel::Sync,
            &Totals {
                invocations: 3,
                ..Totals::default()
            },
        );
        groups.insert("a,b".to_string(), sum);
        let csv = breakdown_csv("user", &groups);
        assert_eq!(
            csv,
            "key,membership,executions_count,countries\n\"a,b\",,3,\n"
        );
    }
}
