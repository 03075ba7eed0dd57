//! In-process tests of the routes: requests through the router built over a real App in a
//! temporary folder, without a socket or a process (the end-to-end tests in tests/ cover those).

use crate::app::App;
use crate::config::ServeArgs;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

struct Harness {
    _dir: tempfile::TempDir,
    app: Arc<App>,
}

async fn harness(flags: &[&str]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scratch = dir.path().join("scratch");
    let mut argv = vec![
        "serve".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--scratch-dir".into(),
        scratch.display().to_string(),
        "--store-access-key".into(),
        "k".into(),
        "--store-secret-key".into(),
        "s".into(),
    ];
    argv.extend(flags.iter().map(|f| f.to_string()));
    let args = Cli::parse_from(argv).serve;
    let app = App::open(&args).await.unwrap();
    Harness { _dir: dir, app }
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let api = super::service(self.app.clone(), self.app.invocations.requests.max_body);
        let response = api.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }

    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }
}

/// The smallest WASI command: upper-cases nothing, writes nothing, exits 0.
fn noop_module() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).unwrap()
}

async fn deploy_noop(h: &Harness, name: &str) -> Value {
    let (status, body) = h.call("POST", "/system/modules", noop_module()).await;
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
    let digest = serde_json::from_slice::<Value>(&body).unwrap()["digest"].clone();
    let definition = json!({"name": name, "module": digest});
    let (status, body) = h
        .call("POST", "/system/services", definition.to_string())
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn system_routes_need_the_admin_and_say_how() {
    let h = harness(&["--password", "pw"]).await;
    let (status, headers, _) = h
        .send(
            Request::get("/system/services")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // oscar:pw
    let authed = Request::get("/system/services")
        .header(header::AUTHORIZATION, "Basic b3NjYXI6cHc=")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(authed).await.0, StatusCode::OK);
    assert_eq!(
        h.call("GET", "/health", Body::empty()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn names_that_cannot_be_names_are_not_found() {
    let h = harness(&[]).await;
    deploy_noop(&h, "upper").await;
    for uri in [
        "/system/services/UPPER",
        "/system/services/..%2Fx",
        "/system/logs/upper/..%2F..%2Fservices",
        "/system/logs/upper/other-0f1e",
        "/system/outputs/upper/upper-zz/a.txt",
    ] {
        let (status, body) = h.call("GET", uri, Body::empty()).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn a_service_round_trips_and_runs() {
    let h = harness(&[]).await;
    let created = deploy_noop(&h, "noop").await;
    assert_eq!(created["token"].as_str().unwrap().len(), 64);
    let (status, body) = h.call("GET", "/system/services/noop", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["name"],
        "noop"
    );
    let request = Request::post("/run/noop").body(Body::from("aGk=")).unwrap();
    let (status, headers, _) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[crate::protocol::headers::OUTCOME], "success");
    let (status, body) = h.call("POST", "/job/noop", "aGk=").await;
    assert_eq!(status, StatusCode::CREATED);
    let job: crate::protocol::JobCreated = serde_json::from_slice(&body).unwrap();
    assert_eq!(job.service, "noop");
    assert!(job.job_name.starts_with("noop-"));
    let (status, _) = h
        .call("DELETE", "/system/services/noop", Body::empty())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.call("POST", "/run/noop", "aGk=").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bodies_are_bounded_before_they_are_read() {
    let h = harness(&["--max-body", "1Ki", "--max-json-body", "128"]).await;
    deploy_noop(&h, "noop").await;
    // A definition over --max-json-body: refused before it is parsed, on every JSON route.
    let definition = json!({"name": "big", "x": "y".repeat(200)}).to_string();
    for (method, path) in [
        ("POST", "/system/services"),
        ("PUT", "/system/services"),
        ("POST", "/system/buckets"),
        ("PUT", "/system/config"),
    ] {
        assert_eq!(
            h.call(method, path, definition.clone()).await.0,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}"
        );
    }
    // Declared too large: refused from the header.
    let request = Request::post("/run/noop")
        .header(header::CONTENT_LENGTH, "4096")
        .body(Body::from(vec![b'A'; 4096]))
        .unwrap();
    assert_eq!(h.send(request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // A JSON object over --max-json-body.
    let object = format!("{{\"a\": \"{}\"}}", "x".repeat(200));
    assert_eq!(
        h.call("POST", "/run/noop", object).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Other JSON is refused as such.
    let (status, body) = h.call("POST", "/run/noop", "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("JSON array"));
}

#[tokio::test]
async fn pending_jobs_past_the_limit_get_429_with_retry_after() {
    let h = harness(&["--max-pending-jobs", "1"]).await;
    deploy_noop(&h, "noop").await;
    // No workers run in this harness: the first job stays pending.
    assert_eq!(
        h.call("POST", "/job/noop", "aGk=").await.0,
        StatusCode::CREATED
    );
    let request = Request::post("/job/noop").body(Body::from("aGk=")).unwrap();
    let (status, headers, body) = h.send(request).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn oscar_clients_shapes_trailing_slashes_and_blank_secrets() {
    let h = harness(&[]).await;
    // oscar-python asks for /system/config/ with a trailing slash and reads ["config"].
    let (status, body) = h.call("GET", "/system/config/", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert!(config["config"]["oidc_groups"].is_array(), "{config}");
    assert_eq!(config["minio_provider"]["access_key"], "k");
    assert!(config["allowed_image_repositories"].is_array());
    // The dashboard picks its code paths from the version.
    let (_, body) = h.call("GET", "/system/info/", Body::empty()).await;
    let info: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["version"], super::info::OSCAR_API_VERSION);
    assert_eq!(
        info["serverless_backend"]["version"],
        env!("CARGO_PKG_VERSION")
    );

    let (status, body) = h.call("POST", "/system/modules", noop_module()).await;
    assert!(status.is_success());
    let digest = serde_json::from_slice::<Value>(&body).unwrap()["digest"].clone();
    let definition = json!({"name": "s", "module": digest,
        "environment": {"variables": {"V": "1"}, "secrets": {"S": "s3cr3t"}}});
    let (status, _) = h
        .call("POST", "/system/services/", definition.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Secrets are blank in answers, as OSCAR shows them, and kept when sent back blank.
    let (_, body) = h.call("GET", "/system/services/s/", Body::empty()).await;
    let shown: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(shown["environment"]["secrets"]["S"], "");
    assert_eq!(shown["labels"]["owner_name"], "oscar");
    let (status, _) = h.call("PUT", "/system/services", shown.to_string()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = h.app.services.registry.get("s").unwrap();
    assert_eq!(
        stored.service.definition["environment"]["secrets"]["S"],
        "s3cr3t"
    );
}

#[tokio::test]
async fn quotas_are_set_by_the_administrator_and_refuse_calls_past_them() {
    let h = harness(&[]).await;
    deploy_noop(&h, "noop").await;
    let (status, body) = h
        .call(
            "PUT",
            "/system/quotas/user/cluster_admin",
            r#"{"cpu": "100m"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let shown: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(shown["user_id"], "cluster_admin");
    assert_eq!(shown["resources"]["cpu"], json!({"max": 100, "used": 0}));
    assert_eq!(shown["resources"]["memory"]["max"], 0);
    // The service holds OSCAR's default 200m, more than the quota itself: 403 (no retry
    // fits), naming it.
    let (status, body) = h.call("POST", "/run/noop", Body::empty()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("cluster_admin's cpu quota is 100m"), "{text}");
    let (status, _) = h
        .call(
            "PUT",
            "/system/quotas/user/cluster_admin",
            r#"{"cpu": "1"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.call("POST", "/run/noop", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    // OSCAR's minio block: set, answered in OSCAR's shape, the other limits kept.
    let (status, body) = h
        .call(
            "PUT",
            "/system/quotas/user/dora",
            r#"{"minio": {"buckets": "2", "storage_per_bucket": "1Gi"}, "invocations": 3}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let shown: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        shown["minio"],
        json!({"buckets": {"max": 2, "used": 0}, "storage_per_bucket": {"max": "1Gi"},
            "storage_total": {"used": "0"}})
    );
    assert_eq!(shown["resources"]["invocations"]["max"], 3);
    for body in [
        r#"{"gpu": "1"}"#,
        r#"{}"#,
        r#"{"memory": "lots"}"#,
        "[]",
        r#"{"minio": {"buckets": "x"}}"#,
    ] {
        let (status, _) = h.call("PUT", "/system/quotas/user/x", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (status, _) = h.call("GET", "/system/quotas/user", Body::empty()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the administrator has no quota"
    );
}

#[tokio::test]
async fn secrets_are_set_on_a_service_whose_environment_is_null() {
    let h = harness(&[]).await;
    let (_, body) = h.call("POST", "/system/modules", noop_module()).await;
    let digest = serde_json::from_slice::<Value>(&body).unwrap()["digest"].clone();
    for (name, environment) in [("n1", json!(null)), ("n2", json!({"secrets": null}))] {
        let definition = json!({"name": name, "module": digest, "environment": environment});
        let (status, body) = h
            .call("POST", "/system/services", definition.to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body:?}");
        let path = format!("/system/services/{name}/secrets");
        let (status, body) = h.call("PUT", &path, r#"{"K": "v"}"#).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");
        let (_, body) = h.call("GET", &path, Body::empty()).await;
        let listed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(listed["secrets"], json!(["K"]), "{listed}");
    }
}

#[tokio::test]
async fn cluster_routes_answer_in_oscar_shapes_or_say_why_not() {
    let h = harness(&[]).await;
    deploy_noop(&h, "noop").await;
    let (status, body) = h.call("GET", "/system/status", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let status_info: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_info["cluster"]["nodes_count"], 1);
    assert!(
        status_info["cluster"]["metrics"]["memory"]["total_schedulable_bytes"].as_u64() > Some(0)
    );
    assert_eq!(status_info["oscar"]["ready"], true);
    assert!(status_info["minio"]["buckets_count"].is_number());
    assert_eq!(h.call("POST", "/run/noop", "aGk=").await.0, StatusCode::OK);
    let (status, body) = h.call("GET", "/system/logs", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let logs: Value = serde_json::from_slice(&body).unwrap();
    let run = &logs["logs"][0];
    assert_eq!(
        (run["method"].clone(), run["path"].clone()),
        (json!("POST"), json!("/run/noop"))
    );
    assert_eq!(run["status"], 200);
    assert!(
        run["raw"]
            .as_str()
            .unwrap()
            .starts_with("[GIN-EXECUTIONS-LOGGER]")
    );

    let (status, body) = h
        .call("GET", "/system/services/noop/deployment", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let deployment: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(deployment["state"], "ready");
    assert_eq!(deployment["resource_kind"], "wasm-module");
    assert_eq!(deployment["service_name"], "noop");
    // The dashboard lists services with their deployment summaries.
    let (_, body) = h
        .call("GET", "/system/services?include=deployment", Body::empty())
        .await;
    let listed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed[0]["deployment"]["state"], "ready");
    let (_, body) = h.call("GET", "/system/services", Body::empty()).await;
    let plain: Value = serde_json::from_slice(&body).unwrap();
    assert!(plain[0].get("deployment").is_none());
    // One service too, as OSCAR's GET /system/services/{name}?include=deployment.
    let (_, body) = h
        .call(
            "GET",
            "/system/services/noop?include=deployment",
            Body::empty(),
        )
        .await;
    let one: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(one["deployment"]["state"], "ready");
    assert_eq!(one["name"], "noop");
    let (_, body) = h.call("GET", "/system/services/noop", Body::empty()).await;
    let plain_one: Value = serde_json::from_slice(&body).unwrap();
    assert!(plain_one.get("deployment").is_none());
    let (_, body) = h
        .call(
            "GET",
            "/system/services/noop/deployment/logs",
            Body::empty(),
        )
        .await;
    let logs: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (logs["available"].clone(), logs["entries"].clone()),
        (json!(false), json!([]))
    );
    assert_eq!(
        h.call("GET", "/system/services/nope/deployment", Body::empty())
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    for (method, uri) in [
        ("GET", "/system/federation/noop"),
        ("POST", "/system/volumes"),
        ("POST", "/system/services/noop/restart"),
    ] {
        let (status, body) = h.call(method, uri, Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{method} {uri}");
        assert!(String::from_utf8_lossy(&body).contains("not"), "{uri}");
    }
}

/// OSCAR's metrics routes answer from the usage accounts: two calls counted on the service,
/// their input bytes exact, the shapes the dashboard reads present.
#[tokio::test]
async fn metrics_routes_count_calls_in_oscar_shapes() {
    let h = harness(&[]).await;
    deploy_noop(&h, "noop").await;
    for _ in 0..2 {
        // "aGk=" is "hi": two bytes in.
        assert_eq!(h.call("POST", "/run/noop", "aGk=").await.0, StatusCode::OK);
    }
    let json = |body: Vec<u8>| serde_json::from_slice::<Value>(&body).unwrap();
    let (status, body) = h.call("GET", "/system/metrics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let summary = json(body);
    assert_eq!(summary["totals"]["requests_count_sync"], 2, "{summary}");
    assert_eq!(summary["totals"]["services_count_active"], 1, "{summary}");
    assert_eq!(summary["totals"]["bytes_in"], 4, "{summary}");
    assert!(summary["totals"]["countries"].is_array());
    let (status, body) = h
        .call(
            "GET",
            "/system/metrics/breakdown?group_by=service&include_users=true",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let breakdown = json(body);
    assert_eq!(breakdown["items"][0]["key"], "noop", "{breakdown}");
    assert_eq!(breakdown["items"][0]["requests_count_sync"], 2);
    assert_eq!(breakdown["items"][0]["users"], json!(["cluster_admin"]));
    let (status, body) = h.call("GET", "/system/metrics/noop", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    let all = json(body);
    assert_eq!(all["service_name"], "noop");
    assert_eq!(all["metrics"][2]["metric"], "requests-sync-per-service");
    assert_eq!(all["metrics"][2]["value"], 2.0);
    // A range before the calls holds none of them.
    let (status, body) = h
        .call(
            "GET",
            "/system/metrics?start=2020-01-01T00:00:00Z&end=2020-01-02T00:00:00Z",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(body)["totals"]["requests_count_total"], 0);
}

/// The fields oscar-dashboard (grycap/oscar-dashboard@bc98e6c) reads on its first load and on
/// its services and cluster-info pages: src/contexts/AuthContext.tsx, ServicesList,
/// pages/ui/info and pages/ui/cluster_info.
#[tokio::test]
async fn every_field_the_dashboard_reads_is_there() {
    let h = harness(&[]).await;
    deploy_noop(&h, "noop").await;
    let get = async |uri: &str| -> Value {
        let (status, body) = h.call("GET", uri, Body::empty()).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        serde_json::from_slice(&body).unwrap()
    };
    let has = |value: &Value, pointer: &str| {
        assert!(
            value.pointer(pointer).is_some_and(|v| !v.is_null()),
            "{pointer} missing in {value}"
        );
    };
    let info = get("/system/info").await;
    for pointer in ["/version", "/git_commit"] {
        has(&info, pointer);
    }
    let config = get("/system/config").await;
    for pointer in [
        "/config/oidc_groups",
        "/config/gpu_available",
        "/config/interLink_available",
        "/config/yunikorn_enable",
    ] {
        has(&config, pointer);
    }
    let services = get("/system/services?include=deployment").await;
    for pointer in [
        "/0/name",
        "/0/labels/owner_name",
        "/0/owner",
        "/0/deployment/state",
    ] {
        has(&services, pointer);
    }
    let status = get("/system/status").await;
    for pointer in [
        "/cluster/nodes_count",
        "/cluster/metrics/cpu/total_free_cores",
        "/cluster/metrics/cpu/max_free_on_node_cores",
        "/cluster/metrics/memory/total_free_bytes",
        "/cluster/metrics/memory/max_free_on_node_bytes",
        "/cluster/metrics/gpu/total_gpu",
        "/cluster/nodes/0/cpu/capacity_cores",
        "/cluster/nodes/0/cpu/usage_cores",
        "/cluster/nodes/0/memory/capacity_bytes",
        "/cluster/nodes/0/memory/usage_bytes",
        "/cluster/nodes/0/gpu",
        "/minio/buckets_count",
        "/minio/total_objects",
        "/oscar/deployment_name",
        "/oscar/jobs_count",
        "/oscar/deployment/available_replicas",
        "/oscar/deployment/ready_replicas",
        "/oscar/deployment/replicas",
        "/oscar/deployment/creation_timestamp",
        "/oscar/deployment/strategy",
        "/oscar/pods/total",
        "/oscar/pods/states/Pending",
        "/oscar/pods/states/Running",
        "/oscar/pods/states/Succeeded",
        "/oscar/pods/states/Failed",
        "/oscar/oidc/enabled",
        "/oscar/oidc/issuers",
        "/oscar/oidc/groups",
    ] {
        has(&status, pointer);
    }
    let jobs = get("/system/logs/noop?page=").await;
    has(&jobs, "/jobs");
    // Its Volumes page lists them (none here), its Status page divides CPU by 1000: OSCAR
    // sends millicores.
    assert_eq!(get("/system/volumes").await, json!([]));
    let cores = status["cluster"]["nodes"][0]["cpu"]["capacity_cores"]
        .as_u64()
        .unwrap();
    assert!(cores >= 1000 && cores % 1000 == 0, "{cores}");
    let service = get("/system/services/noop").await;
    assert_eq!(service["log_level"], "INFO");
}

/// GET /system/services/{name}/auth answers whether the caller may use the service: the
/// administrator or the service's own token, as OSCAR's service auth chain decides.
#[tokio::test]
async fn service_auth_accepts_the_admin_and_the_service_token() {
    let h = harness(&[]).await;
    let token = deploy_noop(&h, "noop").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let other = deploy_noop(&h, "other").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let h = Harness {
        app: {
            // Same data folder, now with a password, so that credentials matter.
            let data = h.app.operations.data_dir.clone();
            drop(h.app);
            let args = Cli::parse_from([
                "serve",
                "--data-dir",
                data.to_str().unwrap(),
                "--scratch-dir",
                h._dir.path().join("scratch2").to_str().unwrap(),
                "--password",
                "pw",
            ])
            .serve;
            App::open(&args).await.unwrap()
        },
        _dir: h._dir,
    };
    let ask = async |uri: &str, authorization: Option<String>| {
        let mut request = Request::get(uri);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        h.send(request.body(Body::empty()).unwrap()).await.0
    };
    let auth = "/system/services/noop/auth";
    assert_eq!(ask(auth, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ask(auth, Some("Basic b3NjYXI6cHc=".into())).await,
        StatusCode::OK
    );
    assert_eq!(
        ask(auth, Some(format!("Bearer {token}"))).await,
        StatusCode::OK
    );
    assert_eq!(
        ask(auth, Some(format!("Bearer {other}"))).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ask(
            "/system/services/nope/auth",
            Some("Basic b3NjYXI6cHc=".into())
        )
        .await,
        StatusCode::NOT_FOUND
    );
}

/// PUT /system/config changes what GET shows; anything but a list of strings is a 400.
#[tokio::test]
async fn config_updates_the_allowed_image_repositories() {
    let h = harness(&[]).await;
    let (status, body) = h
        .call(
            "PUT",
            "/system/config",
            json!({"Allowed_Image_Repositories": ["ghcr.io/"]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (_, body) = h.call("GET", "/system/config/", Body::empty()).await;
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["allowed_image_repositories"], json!(["ghcr.io/"]));
    for bad in [
        json!({"allowed_image_repositories": "ghcr.io/"}),
        json!([1]),
    ] {
        let (status, _) = h.call("PUT", "/system/config", bad.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = h.call("PUT", "/system/config", json!({}).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = h.call("GET", "/system/config", Body::empty()).await;
    let config: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["allowed_image_repositories"], json!([]));
}

/// The dashboard's assets are served from the binary, `/` leads to them, and the services list
/// carries the last hour's calls the dashboard's table shows.
#[tokio::test]
async fn the_dashboard_is_served_and_its_stats_count_calls() {
    let h = harness(&[]).await;
    let (status, headers, _) = h.send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert!(status.is_redirection());
    assert_eq!(headers[header::LOCATION], "/ui");
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/vendor/js-yaml.min.js", "text/javascript"),
    ] {
        let (status, headers, body) = h
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(!body.is_empty());
    }
    deploy_noop(&h, "noop").await;
    for _ in 0..3 {
        assert_eq!(h.call("POST", "/run/noop", "").await.0, StatusCode::OK);
    }
    let (_, body) = h
        .call("GET", "/system/services?include=stats", Body::empty())
        .await;
    let listed: Value = serde_json::from_slice(&body).unwrap();
    let stats = &listed[0]["stats"];
    assert_eq!(
        (
            stats["invocations_1h"].clone(),
            stats["failures_1h"].clone()
        ),
        (json!(3), json!(0))
    );
    assert!(stats["last_invocation_ms"].as_u64().unwrap() > 0);
}

/// A request as the OIDC user whose token is `token`.
async fn call_as(
    h: &Harness,
    token: &str,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let (status, _, body) = h.send(request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_users_meet_the_vo_isolation_and_quota_rules() {
    let idp = super::test_idp::TestIdp::start().await;
    let h = harness(&[
        "--password",
        "pw",
        "--oidc-issuer",
        &idp.issuer,
        "--oidc-group",
        "vo.test.eu",
    ])
    .await;
    let alice = idp.user("alice-sub", "vo.test.eu");
    let (status, body) = call_as(&h, &alice, "POST", "/system/modules", noop_module()).await;
    assert!(status.is_success(), "{body}");
    let digest = serde_json::from_str::<Value>(&body).unwrap()["digest"].clone();
    let create = |definition: Value| {
        let (h, alice) = (&h, &alice);
        async move { call_as(h, alice, "POST", "/system/services", definition.to_string()).await }
    };
    // vo: only one of the user's groups (OSCAR's create.go).
    let (status, body) = create(json!({"name": "v1", "module": digest, "vo": "other.vo"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = create(json!({"name": "v1", "module": digest, "vo": "vo.test.eu"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = call_as(&h, &alice, "GET", "/system/services/v1", Body::empty()).await;
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["owner"], "alice-sub", "{shown}");
    // isolation_level USER: a user id that names no bucket is refused before anything is made.
    let (status, body) = create(json!({"name": "iso", "module": digest,
        "isolation_level": "USER", "allowed_users": ["Not_A_Bucket"],
        "input": [{"storage_provider": "minio.default", "path": "iso/in"}]}))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not a valid bucket name"), "{body}");
    let (status, body) = create(json!({"name": "iso2", "module": digest,
        "isolation_level": "tenant"}))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Quotas: her own, in OSCAR's shape; only the administrator sets them.
    let (status, body) = call_as(&h, &alice, "GET", "/system/quotas/user", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let quota: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(quota["user_id"], "alice-sub");
    assert_eq!(quota["minio"]["buckets"], json!({"max": 0, "used": 0}));
    let (status, _) = call_as(
        &h,
        &alice,
        "PUT",
        "/system/quotas/user/alice-sub",
        r#"{"cpu": "8"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn mounts_and_cpu_shares_are_taken_at_deploy_and_at_the_call() {
    let h = harness(&[]).await;
    let (_, body) = h.call("POST", "/system/modules", noop_module()).await;
    let digest = serde_json::from_slice::<Value>(&body).unwrap()["digest"].clone();
    // A mount of a store the service may use is kept; one of an undeclared store is refused.
    // (Calls with mounts run in tests/core.rs and tests/storage.rs: this harness serves no S3.)
    let definition = json!({"name": "m1", "module": digest,
        "mount": {"storage_provider": "minio.default", "path": "shared/data"}});
    let (status, body) = h
        .call("POST", "/system/services", definition.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    let (_, body) = h.call("GET", "/system/services/m1", Body::empty()).await;
    let shown: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(shown["mount"]["path"], "shared/data", "{shown}");
    let definition = json!({"name": "m2", "module": digest,
        "mount": {"storage_provider": "s3.nowhere", "path": "bkt/f"}});
    let (status, body) = h
        .call("POST", "/system/services", definition.to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("mount.storage_provider"));
    // cpu under one core: a CPU-time budget (cpu x timeout) that stops a spinning guest.
    let spin = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $spin (br $spin))))"#,
    )
    .unwrap();
    let (_, body) = h.call("POST", "/system/modules", spin).await;
    let digest = serde_json::from_slice::<Value>(&body).unwrap()["digest"].clone();
    let definition = json!({"name": "spin", "module": digest, "cpu": "100m", "timeout": 2});
    let (status, _) = h
        .call("POST", "/system/services", definition.to_string())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h.call("POST", "/run/spin", Body::empty()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    assert!(text.contains("CPU time budget of 0.200 s"), "{text}");
}
