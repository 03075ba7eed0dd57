//! End-to-end tests of image services, run as Kubernetes Jobs, against a fake Kubernetes API
//! server that this test starts on loopback. The fake checks and records the requests the
//! runtime makes (paths, verbs, bodies, label and field selectors, watch parameters) and
//! answers as the API server does, watch events and pod logs included. Its "pods" are real:
//! for each Job it runs the init container's command (the statically linked
//! `oscar-wasm-supervisor` installing itself), then the supervisor with the Job's environment
//! in a chroot holding only busybox-static (as in a minimal Alpine image), where it talks to
//! the real runtime exactly as it would from a pod.
//!
//! What only a real cluster covers (the supervisor image, image pulls, RBAC) is in `real_cluster_runs_an_image_service`, ignored by default: run it with
//! `KUBECONFIG=... OSCAR_WASM_TEST_CALLBACK=http://<this host as pods reach it>:<port>
//! cargo test -p oscar-wasm --test kube -- --ignored`.

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the Job's init container puts the supervisor, and its container runs it.
const SUPERVISOR_PATH: &str = "/oscar-wasm/bin/oscar-wasm-supervisor";

/// A "pod" of `job`: a folder to chroot into that holds what an Alpine image holds, Debian's
/// busybox-static as /bin/sh with its applets linked to it, plus /dev/null and /tmp; the init
/// container's command (the statically linked supervisor installing itself) is run as written
/// in the Job, so the supervisor must start with no C library at all.
fn pod_root(job: &Value) -> std::path::PathBuf {
    let root = tempfile::tempdir().unwrap().keep();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, bin.join("sh")).unwrap();
    let applets = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "sh" {
            let _ = std::os::unix::fs::symlink("/bin/sh", bin.join(applet));
        }
    }
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let made = std::process::Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(
        made.success(),
        "mknod /dev/null (the tests run as root, for chroot)"
    );
    let init = &job["spec"]["template"]["spec"]["initContainers"][0]["command"];
    assert_eq!(init[0], "/oscar-wasm-supervisor", "{init}");
    let installed = std::process::Command::new(supervisor_bin())
        .args(init.as_array().unwrap()[1..].iter().map(|a| {
            let a = a.as_str().unwrap();
            // The shared emptyDir is inside the pod's root here.
            match a.strip_prefix('/') {
                Some(inside) => root.join(inside).display().to_string(),
                None => a.to_string(),
            }
        }))
        .status()
        .unwrap();
    assert!(installed.success(), "the init container's command failed");
    root
}

/// Debian's busybox-static, which scripts/test.sh installs.
const BUSYBOX: &str = "/bin/busybox";

/// The statically linked supervisor that scripts/test.sh builds.
fn supervisor_bin() -> String {
    std::env::var("OSCAR_TEST_SUPERVISOR").unwrap_or_else(|_| {
        panic!(
            "OSCAR_TEST_SUPERVISOR is not set: run ./scripts/test.sh, which builds the \
             statically linked oscar-wasm-supervisor these tests run in a busybox-only chroot"
        )
    })
}

/// One Job the fake knows.
struct FakeJob {
    body: Value,
    /// `Some(true)` Complete, `Some(false)` Failed, `None` running.
    done: tokio::sync::watch::Sender<Option<bool>>,
    log: Arc<Mutex<String>>,
    child: Option<tokio::process::Child>,
}

#[derive(Default)]
struct Fake {
    jobs: Mutex<HashMap<String, FakeJob>>,
    /// `METHOD path?query` of every request, in order.
    requests: Mutex<Vec<String>>,
    /// Bodies of DELETE requests, by path.
    deletes: Mutex<Vec<(String, String)>>,
    /// Deployments and Services, by `deployments/NAME` or `services/NAME`, as stored.
    objects: Mutex<HashMap<String, Value>>,
}

type Shared = Arc<Fake>;

fn status_ok() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

async fn record(fake: &Shared, method: &Method, uri: &Uri) {
    fake.requests.lock().unwrap().push(format!(
        "{method} {}",
        uri.path_and_query().map_or("", |p| p.as_str())
    ));
}

async fn version(State(fake): State<Shared>, method: Method, uri: Uri) -> Response {
    record(&fake, &method, &uri).await;
    axum::Json(
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64"}),
    )
    .into_response()
}

/// POST creates a Job and starts its "pod"; GET with watch=true streams its end; DELETE with a
/// label selector deletes a service's Jobs.
async fn jobs(
    State(fake): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    match method {
        Method::POST => {
            let mut job: Value = serde_json::from_slice(&body).unwrap();
            let name = job["metadata"]["name"].as_str().unwrap().to_string();
            job["metadata"]["uid"] = json!(format!("uid-{name}"));
            job["metadata"]["resourceVersion"] = json!("1");
            let env: HashMap<String, String> =
                job["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        (
                            e["name"].as_str().unwrap().to_string(),
                            e["value"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
            let pod = pod_root(&job);
            let mut child = tokio::process::Command::new("/usr/sbin/chroot")
                .arg(&pod)
                .arg(SUPERVISOR_PATH)
                .env_clear()
                .envs(&env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let (done, _) = tokio::sync::watch::channel(None);
            let log = Arc::new(Mutex::new(String::new()));
            let stdout = child.stdout.take().unwrap();
            let stderr = child.stderr.take().unwrap();
            for pipe in [
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                Box::new(stderr),
            ] {
                let log = log.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut pipe = pipe;
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text).await;
                    log.lock().unwrap().push_str(&text);
                });
            }
            fake.jobs.lock().unwrap().insert(
                name.clone(),
                FakeJob {
                    body: job.clone(),
                    done,
                    log,
                    child: Some(child),
                },
            );
            // The "kubelet": the pod's end becomes the Job's condition.
            let fake2 = fake.clone();
            tokio::spawn(async move {
                let child = fake2
                    .jobs
                    .lock()
                    .unwrap()
                    .get_mut(&name)
                    .and_then(|j| j.child.take());
                let Some(mut child) = child else { return };
                let status = child.wait().await.unwrap();
                if let Some(job) = fake2.jobs.lock().unwrap().get(&name) {
                    let _ = job.done.send(Some(status.success()));
                }
            });
            (StatusCode::CREATED, axum::Json(job)).into_response()
        }
        Method::GET => {
            assert_eq!(
                query.get("watch").map(String::as_str),
                Some("true"),
                "{uri}"
            );
            let selector = query.get("fieldSelector").cloned().unwrap_or_default();
            let name = selector
                .strip_prefix("metadata.name=")
                .unwrap_or_else(|| panic!("a watch on one Job by name: {uri}"))
                .to_string();
            let (mut done, body) = {
                let jobs = fake.jobs.lock().unwrap();
                let job = jobs.get(&name).unwrap();
                (job.done.subscribe(), job.body.clone())
            };
            let stream = async_stream(move |tx| async move {
                let ok = loop {
                    if let Some(ok) = *done.borrow_and_update() {
                        break ok;
                    }
                    if done.changed().await.is_err() {
                        return;
                    }
                };
                let mut job = body;
                job["status"] = json!({"conditions": [{
                    "type": if ok { "Complete" } else { "Failed" }, "status": "True"}],
                    "succeeded": if ok { 1 } else { 0 }, "failed": if ok { 0 } else { 1 }});
                let line = format!("{}\n", json!({"type": "MODIFIED", "object": job}));
                let _ = tx.send(line).await;
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(stream)
                .unwrap()
        }
        Method::DELETE => {
            fake.deletes
                .lock()
                .unwrap()
                .push((uri.to_string(), String::from_utf8_lossy(&body).into_owned()));
            axum::Json(status_ok()).into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// A body fed by a task: what a watch streams.
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(f(tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(line), rx))
    });
    Body::from_stream(stream)
}

async fn job_one(
    State(fake): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    assert_eq!(method, Method::DELETE);
    fake.deletes
        .lock()
        .unwrap()
        .push((uri.to_string(), String::from_utf8_lossy(&body).into_owned()));
    // Deleting a running Job kills its pod.
    let child = fake
        .jobs
        .lock()
        .unwrap()
        .get_mut(&name)
        .and_then(|j| j.child.take());
    if let Some(mut child) = child {
        let _ = child.kill().await;
    }
    axum::Json(status_ok()).into_response()
}

async fn pods(
    State(fake): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let job = selector
        .strip_prefix("job-name=")
        .unwrap_or_else(|| panic!("{uri}"));
    let items: Vec<Value> = if fake.jobs.lock().unwrap().contains_key(job) {
        vec![
            json!({"metadata": {"name": format!("{job}-pod"), "namespace": ns,
                    "labels": {"job-name": job}}}),
        ]
    } else {
        Vec::new()
    };
    axum::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
        .into_response()
}

async fn pod_log(
    State(fake): State<Shared>,
    Path((ns, pod)): Path<(String, String)>,
    method: Method,
    uri: Uri,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    let job = pod.trim_end_matches("-pod");
    let log = fake
        .jobs
        .lock()
        .unwrap()
        .get(job)
        .map(|j| j.log.lock().unwrap().clone())
        .unwrap_or_default();
    log.into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})),
    )
        .into_response()
}

/// POST a Deployment or a Service (`kind` is the path's collection). A Service gets a cluster
/// address; this fake's "cluster network" is loopback, where the test's pod listens on the
/// target port, so the Service answers there.
async fn objects(
    State(fake): State<Shared>,
    Path((ns, kind)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    axum::Json(mut body): axum::Json<Value>,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    if kind == "services" {
        let target = body["spec"]["ports"][0]["targetPort"].clone();
        body["spec"]["clusterIP"] = json!("127.0.0.1");
        body["spec"]["ports"][0]["port"] = target;
    }
    body["metadata"]["resourceVersion"] = json!("1");
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    fake.objects
        .lock()
        .unwrap()
        .insert(format!("{kind}/{name}"), body.clone());
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// GET, PUT and DELETE of one Deployment or Service.
async fn object(
    State(fake): State<Shared>,
    Path((ns, kind, name)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    record(&fake, &method, &uri).await;
    assert_eq!(ns, "oscar-svc");
    let key = format!("{kind}/{name}");
    let mut objects = fake.objects.lock().unwrap();
    match method {
        Method::GET => match objects.get(&key) {
            Some(found) => axum::Json(found.clone()).into_response(),
            None => not_found(),
        },
        Method::PUT => {
            let mut body: Value = serde_json::from_slice(&body).unwrap();
            if kind == "services" {
                let target = body["spec"]["ports"][0]["targetPort"].clone();
                body["spec"]["ports"][0]["port"] = target;
            }
            objects.insert(key, body.clone());
            axum::Json(body).into_response()
        }
        Method::DELETE => match objects.remove(&key) {
            Some(_) => axum::Json(status_ok()).into_response(),
            None => not_found(),
        },
        other => panic!("{other} {uri}"),
    }
}

/// Starts the fake API server; returns its state and a kubeconfig file pointing at it.
fn start_fake(dir: &std::path::Path) -> (Shared, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/version", get(version))
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs",
            get(jobs).post(jobs).delete(jobs),
        )
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            axum::routing::delete(job_one),
        )
        .route("/api/v1/namespaces/{ns}/pods", get(pods))
        .route("/api/v1/namespaces/{ns}/pods/{pod}/log", get(pod_log))
        .route(
            "/apis/apps/v1/namespaces/{ns}/{kind}",
            axum::routing::post(objects),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/{kind}/{name}",
            get(object).put(object).delete(object),
        )
        .route(
            "/api/v1/namespaces/{ns}/{kind}",
            axum::routing::post(objects),
        )
        .route(
            "/api/v1/namespaces/{ns}/{kind}/{name}",
            get(object).put(object).delete(object),
        )
        .with_state(fake.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
        ),
    )
    .unwrap();
    (fake, kubeconfig)
}

/// The runtime, configured with the fake cluster; pods reach it at its own address.
fn start_server(dir: &TestDir, kubeconfig: &std::path::Path) -> Server {
    // Port 0 in the callback URL stands for the port the server binds.
    Server::start_with_env(
        &dir.data(),
        &["--kube-callback-url", "http://127.0.0.1:0"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
}

/// The one Job the fake API server was given, as sent.
fn only_job(fake: &Shared) -> Value {
    let jobs = fake.jobs.lock().unwrap();
    assert_eq!(jobs.len(), 1, "one Job expected");
    jobs.values().next().unwrap().body.clone()
}

fn requests(fake: &Shared) -> Vec<String> {
    fake.requests.lock().unwrap().clone()
}

fn create(server: &Server, definition: Value) -> Value {
    let r = client()
        .post(server.url("/system/services"))
        .json(&definition)
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

const UPPER_SCRIPT: &str = "echo \"greeting: $GREETING\"\n\
    tr a-z A-Z < \"$INPUT_FILE_PATH\" > \"$TMP_OUTPUT_DIR/out.txt\"\n";

#[test]
fn a_sync_call_runs_a_job_and_answers_by_the_same_rules() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    let info: Value = client()
        .get(server.url("/system/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["backends"]["kubernetes"]["available"], true, "{info}");
    create(
        &server,
        json!({"name": "upper-sh", "image": "alpine:3", "script": UPPER_SCRIPT,
               "memory": "128Mi", "cpu": "0.5",
               "environment": {"variables": {"GREETING": "hi there"}}}),
    );
    let (status, outcome, body) = run(&server, "upper-sh", b64(b"hello kube"));
    assert_eq!(
        (status, outcome.as_str()),
        (200, "success"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(unb64(&body), b"HELLO KUBE");

    // The exact requests: create, watch by name, the pod by label, its log, delete.
    let seen = requests(&fake);
    let post = seen
        .iter()
        .find(|r| r.starts_with("POST /apis/batch/v1/namespaces/oscar-svc/jobs"))
        .unwrap_or_else(|| panic!("{seen:?}"));
    let job_name = {
        let jobs = fake.jobs.lock().unwrap();
        assert_eq!(jobs.len(), 1);
        jobs.keys().next().unwrap().clone()
    };
    assert!(job_name.starts_with("upper-sh-"), "{job_name} ({post})");
    let watch = seen
        .iter()
        .find(|r| r.starts_with("GET /apis/batch/v1/namespaces/oscar-svc/jobs?"))
        .unwrap();
    assert!(watch.contains("watch=true"), "{watch}");
    assert!(
        watch.contains(&format!("fieldSelector=metadata.name%3D{job_name}")),
        "{watch}"
    );
    assert!(
        seen.iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/oscar-svc/pods?")
                && r.contains(&format!("labelSelector=job-name%3D{job_name}"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|r| r.starts_with(&format!(
            "GET /api/v1/namespaces/oscar-svc/pods/{job_name}-pod/log"
        ))),
        "{seen:?}"
    );
    let deletes = fake.deletes.lock().unwrap().clone();
    assert!(
        deletes.iter().any(|(uri, body)| uri
            .trim_end_matches('?')
            .ends_with(&format!("/jobs/{job_name}"))
            && body.contains("Background")),
        "{deletes:?}"
    );
    // The Job itself: the user's image runs the supervisor with the service's environment and
    // resources; labels tie it to the service; a synchronous Job has no TTL.
    let job = fake.jobs.lock().unwrap()[&job_name].body.clone();
    assert_eq!(
        job["metadata"]["labels"]["oscar-wasm.io/service"],
        "upper-sh"
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "alpine:3");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(container["resources"]["requests"]["cpu"], "0.5");
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "GREETING" && e["value"] == "hi there")
    );
    let init = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(
        init["command"],
        json!(["/oscar-wasm-supervisor", "--install", SUPERVISOR_PATH])
    );

    // The one-time token is spent: the invocation's routes answer 404 now.
    let token = env
        .iter()
        .find(|e| e["name"] == "OSCAR_WASM_INVOCATION_TOKEN")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let callback = env
        .iter()
        .find(|e| e["name"] == "OSCAR_WASM_CALLBACK")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .get(format!("{callback}/input"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// What OSCAR sets on a Job from the definition reaches the Job the fake API server gets:
/// pull secrets, labels and annotations (on the Job and its pod), the GPU limit and the
/// ephemeral storage request.
#[test]
fn the_definitions_pod_settings_reach_the_job() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    let refused = client()
        .post(server.url("/system/services"))
        .json(
            &json!({"name": "bad", "image": "alpine:3", "script": UPPER_SCRIPT,
                      "image_pull_secrets": ["Not A Secret"]}),
        )
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    create(
        &server,
        json!({"name": "gpu-sh", "image": "alpine:3", "script": UPPER_SCRIPT,
               "image_pull_secrets": ["regcred", "mirror-cred"],
               "labels": {"team": "vision", "bad label": "x"},
               "annotations": {"example.org/purpose": "a test, with any text"},
               "enable_gpu": true, "ephemeral_storage_request": "2Gi"}),
    );
    let submitted = client()
        .post(server.url("/job/gpu-sh"))
        .body(b64(b"hello gpu"))
        .send()
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let name: Value = submitted.json().unwrap();
    let name = name["job_name"].as_str().unwrap().to_string();
    wait_status(&server, "gpu-sh", &name, "Succeeded");
    let job = only_job(&fake);
    for meta in [&job["metadata"], &job["spec"]["template"]["metadata"]] {
        assert_eq!(meta["labels"]["team"], "vision");
        assert_eq!(
            meta["labels"]["oscar_service"], "gpu-sh",
            "OSCAR's default labels"
        );
        assert_eq!(meta["labels"]["oscar-wasm.io/service"], "gpu-sh");
        assert!(meta["labels"].get("bad label").is_none());
        assert_eq!(
            meta["annotations"]["example.org/purpose"],
            "a test, with any text"
        );
    }
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "mirror-cred"}])
    );
    let resources = &pod["containers"][0]["resources"];
    assert_eq!(resources["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(resources["requests"]["ephemeral-storage"], "2Gi");
    // The label Kubernetes would refuse is named in the job's log.
    let log = log_of(&server, "gpu-sh", &name);
    assert!(
        log.contains("Left off the Job") && log.contains("bad label"),
        "{log}"
    );
}

#[test]
fn image_services_get_the_same_admission_control_as_modules() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    // One call at a time for the service, and no queue: a second call is refused at once.
    let server = Server::start_with_env(
        &dir.data(),
        &[
            "--kube-callback-url",
            "http://127.0.0.1:0",
            "--max-queue",
            "0",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    create(
        &server,
        json!({"name": "slow", "image": "alpine:3", "script": "sleep 30\n", "timeout": 3,
               "max_concurrency": 1}),
    );
    let server = &server;
    std::thread::scope(|scope| {
        let first = scope.spawn(|| run(server, "slow", b64(b"x")));
        // Admitted before its Job is created: once the Job exists, the slot is taken.
        eventually("the first call's Job", || {
            requests(&fake)
                .iter()
                .any(|r| r.starts_with("POST") && r.contains("/jobs"))
        });
        let (status, _, body) = run(server, "slow", b64(b"x"));
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert_eq!(first.join().unwrap().1, "timeout");
    });
    // Counted by the same metrics as modules, the refusal included.
    let metrics = metrics_text(server);
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("service=\"slow\"") && l.contains("outcome=\"overloaded\"")),
        "{metrics}"
    );
}

/// The body oscar-cli (which pins OSCAR v3.3.0's types) sends for `apply` of an FDL that sets
/// name, image, script, memory and one variable: every field of the v3.3.0 Service struct, in
/// its order, unset ones as Go's zero values (pkg/types/service.go at v3.3.0).
fn oscar_cli_apply_body(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","cluster_id":"","memory":"128Mi","cpu":"","total_memory":"","total_cpu":"","enable_gpu":false,"enable_sgx":false,"image_prefetch":false,"synchronous":{{"min_scale":0,"max_scale":0}},"delegation":"","rescheduler_threshold":0,"log_level":"","image":"alpine:3","alpine":false,"token":"","file_stage_in":false,"input":null,"output":null,"script":"echo hi\n","expose":{{"min_scale":0,"max_scale":0,"cpu_threshold":0,"rewrite_target":false,"nodePort":0,"default_command":false,"set_auth":false}},"environment":{{"Variables":{{"GREETING":"hello"}}}},"annotations":null,"vo":"","labels":null,"owner":"","interlink_node_name":"","allowed_users":null,"mount":{{"storage_provider":"","path":""}}}}"#
    )
}

#[test]
fn oscar_cli_apply_creates_and_reapplies_without_losing_the_token() {
    let dir = TestDir::new();
    let (_fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    let c = client();
    let body = oscar_cli_apply_body("cli-svc");
    let r = c
        .post(server.url("/system/services"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let get = || -> Value {
        c.get(server.url("/system/services/cli-svc"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let first = get();
    // As OSCAR decodes it: the empty level is INFO, "Variables" is the variables, and the
    // defaults OSCAR fills at creation are there.
    assert_eq!(first["log_level"], "INFO");
    assert_eq!(first["environment"]["variables"]["GREETING"], "hello");
    assert_eq!(first["memory"], "128Mi");
    assert_eq!(first["cpu"], "0.2");
    assert_eq!(first["visibility"], "private");
    assert_eq!(first["labels"]["owner_name"], "oscar");
    assert_eq!(first["owner"], "cluster_admin");
    assert_eq!(
        first["storage_providers"]["minio"]["default"]["access_key"],
        "hidden"
    );
    let token = first["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    // apply again: oscar-cli sends "token": "" on an update; OSCAR keeps the token.
    let r = c
        .put(server.url("/system/services"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap());
    assert_eq!(get()["token"], token.as_str());
    let (status, _, _) = run(&server, "cli-svc", b64(b"x"));
    assert_eq!(status, 200);
}

#[test]
fn a_failing_script_and_a_timeout() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    create(
        &server,
        json!({"name": "broken", "image": "alpine:3", "script": "echo broken >&2\nexit 3\n"}),
    );
    let (status, outcome, body) = run(&server, "broken", b64(b"x"));
    assert_eq!((status, outcome.as_str()), (500, "exit:3"));
    assert!(String::from_utf8_lossy(&body).contains("broken"));

    create(
        &server,
        json!({"name": "slow", "image": "alpine:3", "script": "sleep 30\n", "timeout": 1}),
    );
    let started = Instant::now();
    let (status, outcome, _) = run(&server, "slow", b64(b"x"));
    assert_eq!((status, outcome.as_str()), (504, "timeout"));
    assert!(started.elapsed() < Duration::from_secs(20));
    let deletes = fake.deletes.lock().unwrap().clone();
    assert!(
        deletes.iter().any(|(uri, _)| uri.contains("/jobs/slow-")),
        "the timed-out Job is deleted: {deletes:?}"
    );
}

#[test]
fn async_jobs_keep_logs_and_outputs_and_go_with_their_service() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    create(
        &server,
        json!({"name": "upper-job", "image": "alpine:3", "script": UPPER_SCRIPT,
               "environment": {"variables": {"GREETING": "async"}}}),
    );
    let r = client()
        .post(server.url("/job/upper-job"))
        .body(b64(b"queued"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, "upper-job", &job, "Succeeded");
    let log = log_of(&server, "upper-job", &job);
    assert!(log.contains("greeting: async"), "{log}");
    let out = client()
        .get(server.url(&format!("/system/outputs/upper-job/{job}/out.txt")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&out[..], b"QUEUED");
    // Counted like any invocation.
    let metrics = metrics_text(&server);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("oscar_wasm_invocations_total")
                && l.contains("service=\"upper-job\"")
                && l.contains("kind=\"job\"")
                && l.contains("outcome=\"success\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // An asynchronous Job is left to its TTL.
    let body = only_job(&fake);
    assert_eq!(body["spec"]["ttlSecondsAfterFinished"], 600);

    // Deleting the service deletes its Jobs, by label.
    let r = client()
        .delete(server.url("/system/services/upper-job"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let deletes = fake.deletes.lock().unwrap().clone();
    assert!(
        deletes.iter().any(|(uri, _)| uri.contains("/jobs?")
            && uri.contains("labelSelector=oscar-wasm.io%2Fservice%3Dupper-job")),
        "{deletes:?}"
    );
}

/// PUT /system/config's allowed_image_repositories, as OSCAR's additional configuration: an
/// image service whose image contains none of them is refused; the list survives a restart.
#[test]
fn allowed_image_repositories_limit_what_is_deployed() {
    let dir = TestDir::new();
    let (_fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("fake"));
    let mut server = start_server(&dir, &kubeconfig);
    let r = client()
        .put(server.url("/system/config"))
        .json(&json!({"allowed_image_repositories": ["ghcr.io/grycap/"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!(["ghcr.io/grycap/"]));
    let refused = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "img", "image": "docker.io/alpine:3", "script": "true"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().unwrap().contains("not allowed for pull"));
    create(
        &server,
        json!({"name": "img", "image": "ghcr.io/grycap/imagemagick:1", "script": "true"}),
    );
    // A wasm service names no image: the list does not apply.
    deploy(&server, &guest("uppercase"), json!({"name": "wasm"}));

    server.kill();
    let server = start_server(&dir, &kubeconfig);
    let config: Value = client()
        .get(server.url("/system/config"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        config["allowed_image_repositories"],
        json!(["ghcr.io/grycap/"])
    );
    let r = client()
        .put(server.url("/system/config"))
        .json(&json!({"allowed_image_repositories": [""]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// An `image` that a registry shows to be a container image (not wasm) still runs on
/// Kubernetes, and its definition names no module.
#[test]
fn a_container_image_in_a_registry_still_runs_on_kubernetes() {
    let registry = Registry::start();
    let image = format!("{}/apps/alpine:3", registry.host);
    push_layout(
        &registry,
        &image,
        vec![(
            tar_gz("bin/sh", b"#!"),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
        (
            json!({"architecture": "amd64", "os": "linux"})
                .to_string()
                .into_bytes(),
            "application/vnd.oci.image.config.v1+json",
        ),
    );
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = Server::start_with_env(
        &dir.data(),
        &[
            "--kube-callback-url",
            "http://127.0.0.1:0",
            "--insecure-registry",
            &registry.host,
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let created = create(
        &server,
        json!({"name": "container", "image": image, "script": UPPER_SCRIPT}),
    );
    assert!(created.get("module").is_none() && created.get("image_digest").is_none());
    let (status, _, body) = run(&server, "container", b64(b"from a registry"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(unb64(&body), b"FROM A REGISTRY");
    assert!(
        requests(&fake)
            .iter()
            .any(|r| r.starts_with("POST /apis/batch/v1/namespaces/oscar-svc/jobs"))
    );
}

#[test]
fn without_a_cluster_image_services_are_refused() {
    let dir = TestDir::new();
    // A callback URL but no reachable API server: the server starts, image services stay off.
    let kubeconfig = dir.data().parent().unwrap().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: http://127.0.0.1:{}\n\
             contexts:\n- name: x\n  context:\n    cluster: x\n    user: x\ncurrent-context: x\n\
             users:\n- name: x\n  user:\n    token: t\n",
            free_port()
        ),
    )
    .unwrap();
    let server = Server::start_with_env(
        &dir.data(),
        &["--kube-callback-url", "http://127.0.0.1:1"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let info: Value = client()
        .get(server.url("/system/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["backends"]["kubernetes"]["available"], false);
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "img", "image": "alpine:3", "script": "true"}))
        .send()
        .unwrap();
    // docker.io is out of reach here: the registry's failure, and why a cluster would matter.
    assert_eq!(r.status(), 502);
    assert!(r.text().unwrap().contains("Kubernetes"));
    assert!(server.log_text().contains("image services are disabled"));
}

/// Against a real cluster: `KUBECONFIG=... OSCAR_WASM_TEST_CALLBACK=http://HOST:PORT
/// cargo test -p oscar-wasm --test kube -- --ignored` (the supervisor image given by
/// OSCAR_WASM_KUBE_SUPERVISOR_IMAGE must hold a supervisor built for the cluster's nodes).
#[test]
#[ignore = "needs a real Kubernetes cluster"]
fn real_cluster_runs_an_image_service() {
    let callback = std::env::var("OSCAR_WASM_TEST_CALLBACK").expect("OSCAR_WASM_TEST_CALLBACK");
    let listen = callback
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &[
            "--listen",
            &listen,
            "--kube-callback-url",
            &callback,
            "--insecure",
        ],
    );
    create(
        &server,
        json!({"name": "real-upper", "image": "alpine:3", "script": UPPER_SCRIPT, "timeout": 300}),
    );
    let (status, _, body) = run(&server, "real-upper", b64(b"cluster"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(unb64(&body), b"CLUSTER");
}

/// A file dropped into the embedded store's input folder runs an image service's Job, with the
/// storage variables, and its output lands in the output folder.
#[test]
fn a_bucket_event_runs_an_image_service() {
    let dir = TestDir::new();
    let (_fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    create(
        &server,
        json!({"name": "img-store", "image": "alpine:3",
               "script": "echo \"key: $STORAGE_OBJECT_KEY\"\n\
                          tr a-z A-Z < \"$INPUT_FILE_PATH\" > \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\").up\"\n",
               "input": [{"storage_provider": "minio", "path": "kbox/in"}],
               "output": [{"storage_provider": "minio", "path": "kbox/out"}]}),
    );
    let store = s3(server.s3.as_ref().unwrap(), "kbox", "oscar", "oscar");
    put(&store, "in/note one.txt", b"from a bucket").unwrap();
    let jobs = wait_jobs(&server, "img-store", 1);
    let (job, record) = jobs.iter().next().unwrap();
    let status = record["status"].as_str().unwrap().to_string();
    let log = log_of(&server, "img-store", job);
    assert_eq!(status, "Succeeded", "{log}");
    assert!(log.contains("key: in/note one.txt"), "{log}");
    let out = common::get(&store, "out/note one.txt.up").unwrap();
    assert_eq!(&out[..], b"FROM A BUCKET");
}

/// With traces exported, an image service's script gets the trace context of the job that
/// ran it as TRACEPARENT, in the trace of the request that submitted it.
#[test]
fn the_trace_context_reaches_the_script() {
    let dir = TestDir::new();
    let (_fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    // No receiver listens there: spans are dropped, the context is still passed on.
    let server = Server::start_with_env(
        &dir.data(),
        &["--kube-callback-url", "http://127.0.0.1:0"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    create(
        &server,
        json!({"name": "traced-sh", "image": "alpine:3",
               "script": "echo \"traceparent: $TRACEPARENT\"\n"}),
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let submitted = client()
        .post(server.url("/job/traced-sh"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(b64(b"traced"))
        .send()
        .unwrap();
    assert_eq!(submitted.status(), 201);
    let name: Value = submitted.json().unwrap();
    let name = name["job_name"].as_str().unwrap().to_string();
    wait_status(&server, "traced-sh", &name, "Succeeded");
    let log = log_of(&server, "traced-sh", &name);
    let traceparent = log
        .lines()
        .find_map(|l| l.split("traceparent: ").nth(1))
        .unwrap_or_else(|| panic!("no traceparent line in {log}"));
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    assert_eq!(
        parts.len(),
        4,
        "{traceparent:?}\n{log}\n{}",
        server.log_text()
    );
    assert_eq!(parts[1], trace, "the caller's trace: {traceparent}");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the job's own span is the parent"
    );
}

/// A "pod" of an exposed service: answers every request with its method and target.
fn pod_listening() -> u16 {
    loopback_http(|method, target| {
        let text = format!("pod saw {method} {target}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        )
    })
}

#[test]
fn an_exposed_image_service_gets_oscars_deployment_and_service_and_is_reached_through_them() {
    let dir = TestDir::new();
    let (fake, kubeconfig) = start_fake(&dir.data().parent().unwrap().join("k"));
    let server = start_server(&dir, &kubeconfig);
    let port = pod_listening();
    create(
        &server,
        json!({"name": "webui", "image": "nginx:1", "script": "exec nginx -g 'daemon off;'",
               "memory": "128Mi", "image_pull_secrets": ["regcred"],
               "environment": {"variables": {"MODEL": "small"}},
               "expose": {"api_port": port, "min_scale": 2, "max_scale": 4}}),
    );
    let objects = fake.objects.lock().unwrap().clone();
    let deployment = &objects["deployments/webui-dlp"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1");
    assert_eq!(container["command"][2], "exec nginx -g 'daemon off;'");
    assert_eq!(container["ports"][0]["containerPort"], port);
    assert_eq!(container["env"][0]["value"], "small");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"],
        "regcred"
    );
    let service = &objects["services/webui-svc"];
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["selector"]["app"], "oscar-svc-webui");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port);

    // Reached through the exposed path, as OSCAR's ingress passes it (prefix stripped).
    let response = client()
        .get(server.url("/system/services/webui/exposed/page/?x=1"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "pod saw GET /page/?x=1");

    // An update replaces the Deployment; dropping `expose` removes both.
    let r = client()
        .put(server.url("/system/services"))
        .json(
            &json!({"name": "webui", "image": "nginx:1", "script": "exec nginx",
               "expose": {"api_port": port, "min_scale": 1}}),
        )
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    assert_eq!(
        fake.objects.lock().unwrap()["deployments/webui-dlp"]["spec"]["replicas"],
        1
    );
    let r = client()
        .put(server.url("/system/services"))
        .json(&json!({"name": "webui", "image": "nginx:1", "script": "exec nginx"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    assert!(fake.objects.lock().unwrap().is_empty());
    let seen = requests(&fake);
    assert!(
        seen.iter()
            .any(|r| r
                .starts_with("DELETE /apis/apps/v1/namespaces/oscar-svc/deployments/webui-dlp")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.starts_with("DELETE /api/v1/namespaces/oscar-svc/services/webui-svc")),
        "{seen:?}"
    );

    // Deleting an exposed service deletes them too.
    create(
        &server,
        json!({"name": "webui2", "image": "nginx:1", "script": "exec nginx",
               "expose": {"api_port": port}}),
    );
    assert_eq!(fake.objects.lock().unwrap().len(), 2);
    let r = client()
        .delete(server.url("/system/services/webui2"))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert!(fake.objects.lock().unwrap().is_empty());
}
