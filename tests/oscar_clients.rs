//! OSCAR's own clients against the real binary: oscar-python 2.2.0, installed from PyPI by
//! scripts/test.sh, through every method that applies to this runtime.

mod common;

use common::*;
use serde_json::Value;

/// Drives oscar-python's Client and storage client; prints one line per step.
const SCRIPT: &str = r##"
import json, os, sys, time
from oscar_python.client import Client

endpoint, digest, work = sys.argv[1:4]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "user": "oscar", "password": "pw",
            "ssl": "False"})

def step(name, ok, detail=""):
    print(("ok " if ok else "FAILED ") + name + (": " + str(detail) if detail else ""))
    if not ok:
        sys.exit(1)

info = c.get_cluster_info().json()
step("get_cluster_info", info["version"] >= "4", info["version"])
config = c.get_cluster_config().json()
step("get_cluster_config", "oidc_groups" in config["config"] and "minio_provider" in config)
status = c.get_cluster_status().json()
step("get_cluster_status", status["cluster"]["nodes_count"] == 1)
step("health_check", c.health_check().status_code == 200)

# An FDL file as oscar-python reads it: `script` (a file beside it) and `cpu` required.
with open(os.path.join(work, "script.sh"), "w") as f:
    f.write("#!/bin/sh\n# the module runs; the script is kept as given\n")
fdl = os.path.join(work, "upper.yaml")
with open(fdl, "w") as f:
    f.write(f"""functions:
  oscar:
  - wasm:
      name: upper
      module: {digest}
      cpu: 0.5
      memory: 64Mi
      log_level: CRITICAL
      script: script.sh
      input:
      - storage_provider: minio.default
        path: pyfiles/in
      output:
      - storage_provider: minio.default
        path: pyfiles/out
""")
r = c.create_service(fdl)
step("create_service", r.status_code == 201, r.status_code)
svc = c.get_service("upper").json()
step("get_service", svc["labels"]["owner_name"] == "oscar" and svc["cpu"] == "0.5")
step("list_services", [s["name"] for s in c.list_services().json()] == ["upper"])
r = c.update_service("upper", fdl)
step("update_service", r.status_code == 204 and c.get_service("upper").json()["token"] == svc["token"])

r = c.run_service("upper", input="hello oscar")
import base64
step("run_service", base64.b64decode(r.text) == b"HELLO OSCAR", r.text)
r = c.run_service("upper", input="a job", async_call=True)
step("run_service async", r.status_code == 201, r.status_code)
executions = c.get_system_logs().json()["logs"]
step("get_system_logs", [e["path"] for e in executions] == ["/run/upper", "/job/upper"], executions)
job = None
for _ in range(600):
    jobs = c.list_jobs("upper").json()["jobs"]
    done = [name for name, j in jobs.items() if j["status"] == "Succeeded"]
    if done:
        job = done[0]
        break
    time.sleep(0.05)
step("list_jobs", job is not None)
logs = c.get_job_logs("upper", job)
step("get_job_logs", logs.status_code == 200)

storage = c.create_storage_client("upper")
local = os.path.join(work, "note.txt")
with open(local, "w") as f:
    f.write("from oscar-python")
storage.upload_file("minio.default", local, "pyfiles/in")
# The sync and async calls above wrote out/upper.txt too: wait for this upload's result.
result = ""
for _ in range(600):
    listing = storage.list_files_from_path("minio.default", "pyfiles/out")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    if keys == ["out/upper.txt"]:
        storage.download_file("minio.default", work, "pyfiles/out/upper.txt")
        with open(os.path.join(work, "upper.txt")) as f:
            result = f.read()
        if result == "FROM OSCAR-PYTHON":
            break
    time.sleep(0.05)
step("upload_file triggers the service; list_files_from_path and download_file",
     result == "FROM OSCAR-PYTHON", result)

# Buckets through oscar-python's bucket methods, on the embedded store.
import urllib.request
r = c.create_bucket("pybucket", visibility="restricted", allowed_users=["alice"])
step("create_bucket", r.status_code == 201, r.status_code)
listed = {b["bucket_name"]: b for b in c.list_buckets().json()}
step("list_buckets", listed["pybucket"]["allowed_users"] == ["alice"]
     and listed["pyfiles"]["metadata"]["from_service"] == "upper", listed)
r = c.update_bucket("pybucket", "public")
step("update_bucket", r.status_code == 204
     and c.get_bucket("pybucket").json()["visibility"] == "public")
signed = c.presign_bucket("pybucket", "docs/a.txt", operation="upload",
                          content_type="text/plain").json()
put = urllib.request.Request(signed["url"], data=b"presigned", method=signed["method"],
                             headers=signed["headers"])
urllib.request.urlopen(put).read()
got = c.get_bucket("pybucket").json()
step("presign_bucket upload", [o["object_name"] for o in got["objects"]] == ["docs/a.txt"]
     and got["objects"][0]["size_bytes"] == 9, got)
signed = c.presign_bucket("pybucket", "docs/a.txt", expires=60).json()
body = urllib.request.urlopen(signed["url"]).read()
step("presign_bucket download", body == b"presigned", body)
r = c.delete_bucket("pybucket")
step("delete_bucket", r.status_code == 204
     and "pybucket" not in [b["bucket_name"] for b in c.list_buckets().json()])

# Usage accounting and quotas, through oscar-python's own methods.
summary = c.get_metrics_summary().json()
step("get_metrics_summary", summary["totals"]["executions_count"] >= 3, summary["totals"])
breakdown = c.get_metrics_breakdown()
step("get_metrics_breakdown", breakdown.status_code == 200 and "upper" in breakdown.text,
     breakdown.text[:300])
metrics = c.get_service_metrics("upper")
step("get_service_metrics", metrics.status_code == 200 and "upper" in metrics.text,
     metrics.text[:300])
r = c.update_user_quota("someone", "1500m", "2Gi")
step("update_user_quota", r.status_code == 200
     and r.json()["resources"]["cpu"]["max"] == 1500, r.text)
q = c.get_user_quota("someone").json()
step("get_user_quota", q["resources"]["memory"]["max"] == 2 << 30
     and q["minio"]["buckets"] == {"max": 0, "used": 0}, q)
import requests
try:
    own = c.get_own_quota().status_code
except requests.HTTPError as e:
    own = e.response.status_code
step("get_own_quota (the administrator has none)", own == 400, own)

step("get_deployment_status", c.get_deployment_status("upper").json()["state"] == "ready")
step("remove_job", c.remove_job("upper", job).status_code == 204)
step("remove_all_jobs", c.remove_all_jobs("upper").status_code == 204)
step("remove_service", c.remove_service("upper").status_code == 204)
"##;

#[test]
fn oscar_python_2_2_works_unchanged() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw"]);
    let stored: Value = client()
        .post(server.url("/system/modules"))
        .basic_auth("oscar", Some("pw"))
        .body(guest("uppercase"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let work = dir.data().parent().unwrap().join("python");
    std::fs::create_dir_all(&work).unwrap();
    let stdout = run_python(
        SCRIPT,
        &[
            &server.base,
            stored["digest"].as_str().unwrap(),
            work.to_str().unwrap(),
        ],
        &server,
    );
    assert!(stdout.contains("ok remove_service"), "{stdout}");
}

/// The requests oscar-cli makes (grycap/oscar-cli pkg/service/service.go, logs.go,
/// cmd/service_run.go, pkg/storage/storage.go), replayed as it sends them.
#[test]
fn oscar_cli_requests_are_answered_as_it_expects() {
    use base64::Engine as _;
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw"]);
    let token = deploy_as(
        &server,
        "pw",
        &guest("uppercase"),
        serde_json::json!({"name": "upper"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = client();
    let admin = |r: reqwest::blocking::RequestBuilder| r.basic_auth("oscar", Some("pw"));
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let unb64 = |body: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };

    // `service run --text-input`: the input base64-encoded, no content type; the cluster's
    // credentials without --token, the service's token as Bearer with it.
    for request in [
        admin(c.post(server.url("/run/upper"))),
        c.post(server.url("/run/upper")).bearer_auth(&token),
    ] {
        let r = request.body(b64("hello cli")).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(unb64(&r.text().unwrap()), b"HELLO CLI");
    }
    // `service job`: any 2xx is success.
    let r = admin(c.post(server.url("/job/upper")))
        .body(b64("a job"))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let job = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the job to succeed", || {
        admin_json(&server, "pw", "/system/logs/upper")["jobs"][&job]["status"] == "Succeeded"
    });

    // `service logs list`: ?page= always set, empty on the first page.
    let listed: Value = admin(c.get(server.url("/system/logs/upper?page=")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["jobs"][&job]["status"], "Succeeded");
    // `service logs get --show-timestamps`.
    let log = admin(c.get(server.url(&format!("/system/logs/upper/{job}?timestamps=true"))))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.lines().all(|l| l.starts_with("20")), "{log}");
    // `service logs remove --succeeded`, then `--all`, then one job.
    let status = |r: reqwest::blocking::RequestBuilder| r.send().unwrap().status().as_u16();
    assert_eq!(
        status(admin(c.delete(server.url("/system/logs/upper")))),
        204
    );
    assert!(
        !admin_json(&server, "pw", "/system/logs/upper")["jobs"]
            .as_object()
            .unwrap()
            .contains_key(&job)
    );
    assert_eq!(
        status(admin(c.delete(server.url("/system/logs/upper?all=true")))),
        204
    );
    assert_eq!(
        status(admin(
            c.delete(server.url(&format!("/system/logs/upper/{job}")))
        )),
        404
    );

    // The storage commands read `minio_provider` from the config as a generic map, every
    // field a string but `verify`.
    let config = admin_json(&server, "pw", "/system/config");
    let minio = &config["minio_provider"];
    for key in ["access_key", "secret_key", "region", "endpoint"] {
        assert!(minio[key].is_string(), "{key}: {config}");
    }
    assert!(minio["verify"].is_boolean());
}

/// The bucket calls of oscar-cli (grycap/oscar-cli@78e73f6 pkg/storage/storage.go: `bucket
/// list`, `bucket get --limit --all`) and oscar-dashboard (grycap/oscar-dashboard@bc98e6c
/// src/api/buckets/*, the fields read by src/models/bucketDetails.ts, BucketList, Topbar and
/// GenPresignedURLPopover), replayed against the embedded store.
#[test]
fn bucket_routes_answer_oscar_cli_and_the_dashboard() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw"]);
    deploy_as(
        &server,
        "pw",
        &guest("uppercase"),
        serde_json::json!({"name": "upper", "input": [{"storage_provider": "minio.default", "path": "svc-files/in"}]}),
    );
    let c = client();
    let admin = |r: reqwest::blocking::RequestBuilder| r.basic_auth("oscar", Some("pw"));
    let send = |r: reqwest::blocking::RequestBuilder| {
        let r = admin(r).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };

    // The dashboard's "new bucket" form: its Bucket model, with a folder in the path.
    let created = send(c.post(server.url("/system/buckets")).json(&serde_json::json!(
        {"bucket_name": "dash/inputs", "visibility": "restricted", "allowed_users": ["alice", "bob"]}
    )));
    assert_eq!(created.0, 201, "{}", created.1);
    let again = send(
        c.post(server.url("/system/buckets"))
            .json(&serde_json::json!({"bucket_name": "dash"})),
    );
    assert_eq!(again.0, 409, "{}", again.1);
    assert!(again.1.contains("already exists"), "{}", again.1);
    let bad = send(
        c.post(server.url("/system/buckets"))
            .json(&serde_json::json!({"bucket_name": "Dash_1"})),
    );
    assert_eq!(bad.0, 400);
    assert!(bad.1.contains("not a valid bucket name"), "{}", bad.1);

    // Three objects through presigned uploads, as GenPresignedURLPopover asks for them.
    for name in ["inputs/a.txt", "inputs/b.txt", "inputs/c.txt"] {
        let (status, text) = send(
            c.post(server.url("/system/buckets/dash/presign"))
                .json(&serde_json::json!({"object_key": name, "operation": "upload", "expires_in": 3600, "content_type": "text/plain"})),
        );
        assert_eq!(status, 200, "{text}");
        let signed: Value = serde_json::from_str(&text).unwrap();
        for field in ["object_key", "operation", "method", "url", "expires_at"] {
            assert!(signed[field].is_string(), "{field}: {signed}");
        }
        assert_eq!(signed["method"], "PUT");
        let content_type = signed["headers"]["Content-Type"].as_str().unwrap();
        let put = c
            .put(signed["url"].as_str().unwrap())
            .header("Content-Type", content_type)
            .body(name.to_string())
            .send()
            .unwrap();
        assert_eq!(put.status(), 200, "{}", put.text().unwrap());
    }
    // A signed content type is enforced.
    let (_, text) = send(
        c.post(server.url("/system/buckets/dash/presign"))
            .json(&serde_json::json!({"object_key": "inputs/d.txt", "operation": "upload", "content_type": "text/plain"})),
    );
    let signed: Value = serde_json::from_str(&text).unwrap();
    let put = c
        .put(signed["url"].as_str().unwrap())
        .header("Content-Type", "text/html")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(put.status(), 403);

    // `oscar-cli bucket list` and the dashboard's bucket list.
    let (status, text) = send(c.get(server.url("/system/buckets")));
    assert_eq!(status, 200, "{text}");
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    let by_name = |name: &str| {
        listed
            .iter()
            .find(|b| b["bucket_name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .clone()
    };
    let dash = by_name("dash");
    assert_eq!(dash["visibility"], "restricted");
    assert_eq!(dash["allowed_users"], serde_json::json!(["alice", "bob"]));
    assert_eq!(dash["owner"], "oscar");
    assert_eq!(dash["metadata"]["owner_name"], "oscar");
    let service_bucket = by_name("svc-files");
    assert_eq!(service_bucket["metadata"]["from_service"], "upper");
    assert_eq!(service_bucket["visibility"], "private");
    assert_eq!(service_bucket["owner"], "cluster_admin");

    // `oscar-cli bucket get dash --limit 2 --all`: pages until is_truncated is false.
    let mut names = Vec::new();
    let mut page = String::new();
    for _ in 0..10 {
        let mut url = "/system/buckets/dash?limit=2".to_string();
        if !page.is_empty() {
            url += &format!("&page={page}");
        }
        let (status, text) = send(c.get(server.url(&url)));
        assert_eq!(status, 200, "{text}");
        let got: Value = serde_json::from_str(&text).unwrap();
        for object in got["objects"].as_array().unwrap() {
            assert!(object["size_bytes"].as_u64().unwrap() > 0, "{object}");
            assert!(object["last_modified"].as_str().unwrap().starts_with("20"));
            names.push(object["object_name"].as_str().unwrap().to_string());
        }
        assert_eq!(
            got["returned_items"].as_u64().unwrap() as usize,
            got["objects"].as_array().unwrap().len()
        );
        if got["is_truncated"] == false {
            break;
        }
        page = got["next_page"].as_str().unwrap().to_string();
    }
    assert_eq!(names, ["inputs/a.txt", "inputs/b.txt", "inputs/c.txt"]);

    // A presigned download returns what was uploaded.
    let (_, text) = send(
        c.post(server.url("/system/buckets/dash/presign"))
            .json(&serde_json::json!({"object_key": "/inputs/b.txt", "operation": "download", "expires_in": 60})),
    );
    let signed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(signed["object_key"], "inputs/b.txt");
    let body = c
        .get(signed["url"].as_str().unwrap())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "inputs/b.txt");
    for (request, why) in [
        (
            serde_json::json!({"object_key": "x", "operation": "copy"}),
            "unsupported operation",
        ),
        (
            serde_json::json!({"object_key": "x", "operation": "download", "expires_in": 604801}),
            "invalid expiration",
        ),
        (
            serde_json::json!({"object_key": "", "operation": "download"}),
            "object_key",
        ),
    ] {
        let (status, text) = send(
            c.post(server.url("/system/buckets/dash/presign"))
                .json(&request),
        );
        assert_eq!((status, text.contains(why)), (400, true), "{text}");
    }

    // The dashboard's visibility change; a service's bucket follows its service instead.
    let (status, _) = send(c.put(server.url("/system/buckets")).json(&serde_json::json!(
        {"bucket_name": "dash", "visibility": "public", "allowed_users": [], "owner": "oscar"}
    )));
    assert_eq!(status, 204);
    let got: Value =
        serde_json::from_str(&send(c.get(server.url("/system/buckets/dash"))).1).unwrap();
    assert_eq!(
        (got["visibility"].clone(), got["allowed_users"].clone()),
        (serde_json::json!("public"), Value::Null)
    );
    let (status, text) = send(
        c.put(server.url("/system/buckets"))
            .json(&serde_json::json!(
                {"bucket_name": "svc-files", "visibility": "public"}
            )),
    );
    assert_eq!(status, 403, "{text}");
    let (status, text) = send(c.delete(server.url("/system/buckets/svc-files")));
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("upper"), "{text}");

    // The dashboard's delete: the bucket goes with its objects.
    assert_eq!(send(c.delete(server.url("/system/buckets/dash"))).0, 204);
    assert_eq!(send(c.get(server.url("/system/buckets/dash"))).0, 404);
    assert_eq!(send(c.delete(server.url("/system/buckets/dash"))).0, 404);
    assert_eq!(
        send(
            c.put(server.url("/system/buckets"))
                .json(&serde_json::json!({"bucket_name": "dash"}))
        )
        .0,
        404
    );
    let names: Vec<String> =
        serde_json::from_str::<Vec<Value>>(&send(c.get(server.url("/system/buckets"))).1)
            .unwrap()
            .iter()
            .map(|b| b["bucket_name"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(names, ["svc-files"]);
}

/// OSCAR's dashboard reads fields that its Go server always answers (every field of its
/// struct, zero values included) without checking: a module service answered without them
/// blanked its services list (`expose.max_scale`) and its service page (`script.toString()`).
/// Every field is answered, in the listing and for one service, and the answer sent back as
/// the dashboard sends it (whole) updates the service without a warning about unused fields.
#[test]
fn every_field_oscars_dashboard_reads_is_answered() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("uppercase"),
        serde_json::json!({"name": "upper"}),
    );
    let listed: Vec<Value> = client()
        .get(server.url("/system/services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let one: Value = client()
        .get(server.url("/system/services/upper"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for shown in [&listed[0], &one] {
        assert_eq!(shown["expose"]["max_scale"], 0, "{shown}");
        assert_eq!(shown["expose"]["min_scale"], 0, "{shown}");
        assert_eq!(shown["script"], "", "{shown}");
        assert_eq!(shown["image"], "", "{shown}");
        assert_eq!(shown["synchronous"]["max_scale"], 0, "{shown}");
        assert!(shown["environment"]["variables"].is_object(), "{shown}");
        assert!(
            shown["input"].is_array() && shown["output"].is_array(),
            "{shown}"
        );
        assert_eq!(shown["labels"]["owner_name"], "oscar", "{shown}");
        assert!(
            shown["module"]
                .as_str()
                .is_some_and(|m| m.starts_with("sha256:"))
        );
    }
    let mut edited = one.clone();
    edited["environment"]["variables"]["EDITED"] = "yes".into();
    let updated = client()
        .put(server.url("/system/services"))
        .json(&edited)
        .send()
        .unwrap();
    assert!(updated.status().is_success(), "{}", updated.text().unwrap());
    let (status, _, body) = run(&server, "upper", b64(b"still runs"));
    assert_eq!((status, unb64(&body)), (200, b"STILL RUNS".to_vec()));
    assert!(
        !server.log_text().contains("keeps but does not act on"),
        "zero values were taken for settings:\n{}",
        server.log_text()
    );
}
