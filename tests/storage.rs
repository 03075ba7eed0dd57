//! End-to-end tests of storage-triggered processing against real S3 servers on loopback: the
//! embedded store of the server under test (objects put with an S3 client trigger jobs), and,
//! as an "external" store, the embedded store of a second oscar-wasm server, to which the test
//! posts MinIO-shaped events itself, as MinIO would.

mod common;

use common::*;
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn s3(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn put(store: &AmazonS3, key: &str, bytes: &[u8]) -> Result<(), object_store::Error> {
    rt().block_on(store.put(&ObjectPath::parse(key).unwrap(), bytes.to_vec().into()))
        .map(|_| ())
}

fn get(store: &AmazonS3, key: &str) -> Option<Vec<u8>> {
    rt().block_on(async {
        let result = store.get(&ObjectPath::parse(key).unwrap()).await.ok()?;
        result.bytes().await.ok().map(|b| b.to_vec())
    })
}

/// Waits until the service has `n` finished jobs; returns the listing.
fn wait_jobs(server: &Server, service: &str, n: usize) -> serde_json::Map<String, Value> {
    let started = Instant::now();
    loop {
        let body: Value = client()
            .get(server.url(&format!("/system/logs/{service}")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let jobs = body["jobs"].as_object().cloned().unwrap_or_default();
        let done = jobs
            .values()
            .filter(|j| matches!(j["status"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        if done >= n {
            return jobs;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "jobs: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(server: &Server, service: &str, job: &str) -> String {
    client()
        .get(server.url(&format!("/system/logs/{service}/{job}")))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn minio_event(bucket: &str, key: &str) -> Value {
    let quoted: String = key
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": format!("{bucket}/{key}"),
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3",
            "eventTime": "2026-11-25T10:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": quoted}}
        }]
    })
}

#[test]
fn a_file_put_into_the_embedded_store_is_processed_into_the_output_folder() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let endpoint = server.s3.clone().expect("the embedded store runs");
    deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "upper",
               "input": [{"storage_provider": "minio", "path": "files/in"}],
               "output": [{"storage_provider": "minio.default", "path": "files/out", "suffix": [".txt"]}]}),
    );
    // An open server's store takes the user name as both keys.
    let store = s3(&endpoint, "files", "oscar", "oscar");
    let key = "in/my report+é 1.txt";
    put(&store, key, b"hello bucket").unwrap();
    let jobs = wait_jobs(&server, "upper", 1);
    let (job, record) = jobs.iter().next().unwrap();
    assert_eq!(
        record["status"],
        "Succeeded",
        "{}",
        log_of(&server, "upper", job)
    );
    assert_eq!(get(&store, "out/upper.txt").unwrap(), b"HELLO BUCKET");
    let log = log_of(&server, "upper", job);
    assert!(
        log.contains("Downloaded s3://files/in/my report+é 1.txt"),
        "{log}"
    );
    assert!(
        log.contains("Uploaded upper.txt to minio.default s3://files/out/upper.txt"),
        "{log}"
    );

    // Exactly once: one put, one job; objects outside the input folder start nothing.
    put(&store, "elsewhere/x.txt", b"x").unwrap();
    put(&store, "out/y.txt", b"y").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wait_jobs(&server, "upper", 1).len(), 1);

    // SigV4 with wrong keys is refused, and nothing runs.
    let wrong = s3(&endpoint, "files", "oscar", "not-the-secret");
    assert!(put(&wrong, "in/bad.txt", b"x").is_err());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(wait_jobs(&server, "upper", 1).len(), 1);
}

#[test]
fn a_password_protected_server_signs_its_store_with_the_admin_keys() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw-123"]);
    let endpoint = server.s3.clone().unwrap();
    let c = client();
    let digest = {
        let r = c
            .post(server.url("/system/modules"))
            .basic_auth("oscar", Some("pw-123"))
            .body(guest("uppercase"))
            .send()
            .unwrap();
        r.json::<Value>().unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = c
        .post(server.url("/system/services"))
        .basic_auth("oscar", Some("pw-123"))
        .json(&json!({"name": "upper", "module": digest,
                      "input": [{"storage_provider": "minio", "path": "secure/in"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(put(&s3(&endpoint, "secure", "oscar", "oscar"), "in/a.txt", b"a").is_err());
    put(
        &s3(&endpoint, "secure", "oscar", "pw-123"),
        "in/a.txt",
        b"a",
    )
    .unwrap();
}

#[test]
fn events_from_an_external_store_run_jobs_and_sync_calls() {
    // The "external" MinIO: another server's embedded store.
    let store_dir = TestDir::new();
    let store_server = Server::start(&store_dir.data(), &[]);
    let external = store_server.s3.clone().unwrap();
    deploy(
        &store_server,
        &guest("uppercase"),
        // Only to have its buckets created.
        json!({"name": "buckets", "input": [{"storage_provider": "minio", "path": "ext/in"}],
               "output": [{"storage_provider": "minio", "path": "results/out"}]}),
    );
    let ext_in = s3(&external, "ext", "oscar", "oscar");
    let ext_out = s3(&external, "results", "oscar", "oscar");
    // Nothing else watches this store's uploads into ext/in besides "buckets", whose jobs do
    // not matter here; the server under test learns of objects only by events.

    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &[
            "--storage-endpoint",
            &external,
            "--storage-access-key",
            "oscar",
            "--storage-secret-key",
            "oscar",
        ],
    );
    assert!(
        server.s3.is_none(),
        "no embedded store with an external one"
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL",
               "input": [{"storage_provider": "minio.default", "path": "ext/in"}],
               "output": [{"storage_provider": "minio", "path": "results/out", "prefix": ["keep"]}]}),
    );
    let key = "in/probe input+ü.txt";
    put(
        &ext_in,
        key,
        b"env\nread $INPUT\noutput keep.txt kept\noutput drop.txt dropped\n",
    )
    .unwrap();

    // Sync: the event's object is the input; its key, time and event are in the environment.
    let r = client()
        .post(server.url("/run/probe"))
        .body(minio_event("ext", key).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-oscar-wasm-output"], "zip");
    assert_eq!(get(&ext_out, "out/keep.txt").unwrap(), b"kept");
    assert!(
        get(&ext_out, "out/drop.txt").is_none(),
        "the prefix filter drops it"
    );

    // Async: the same through /job, with the environment checked in the log.
    let mut event = minio_event("ext", key);
    event["Records"][0]["eventTime"] = json!("2026-11-25T11:22:33.000Z");
    let r = client()
        .post(server.url("/job/probe"))
        .body(event.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    let jobs = wait_jobs(&server, "probe", 1);
    assert_eq!(jobs[&job]["status"], "Succeeded");
    let log = log_of(&server, "probe", &job);
    assert!(
        log.contains("STORAGE_OBJECT_KEY=in/probe input+ü.txt"),
        "{log}"
    );
    assert!(log.contains("EVENT_TIME=2026-11-25T11:22:33.000Z"), "{log}");
    assert!(
        log.contains("INPUT_FILE_PATH=/tmp/input/probe input+ü.txt"),
        "{log}"
    );
    assert!(log.contains("EVENT={"), "{log}");
    assert!(
        log.contains("read /tmp/input/probe input+ü.txt: ok"),
        "{log}"
    );

    // A key outside every input folder is refused before anything is queued.
    let r = client()
        .post(server.url("/job/probe"))
        .body(minio_event("ext", "other/x.txt").to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("outside every input folder"));
    // Test events and SNS confirmations run nothing.
    for body in [
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}),
        json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "http://127.0.0.1:9/x"}),
    ] {
        let r = client()
            .post(server.url("/job/probe"))
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{body}");
    }
    // A missing object: the job fails and says which object.
    let r = client()
        .post(server.url("/job/probe"))
        .body(minio_event("ext", "in/missing.txt").to_string())
        .send()
        .unwrap();
    let missing = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    let jobs = wait_jobs(&server, "probe", 2);
    assert_eq!(jobs[&missing]["status"], "Failed");
    let log = log_of(&server, "probe", &missing);
    assert!(
        log.contains("Input download failed: downloading minio.default s3://ext/in/missing.txt"),
        "{log}"
    );
    assert_eq!(wait_jobs(&server, "probe", 2).len(), 2);
}

#[test]
fn bad_credentials_and_unreachable_stores_fail_jobs_clearly() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let endpoint = server.s3.clone().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "upper",
               "storage_providers": {"minio": {
                   "wrongkeys": {"endpoint": endpoint, "access_key": "oscar", "secret_key": "badsecret-xyz"},
                   "down": {"endpoint": format!("http://127.0.0.1:{port}"), "access_key": "a", "secret_key": "b"}}},
               "input": [
                   {"storage_provider": "minio.wrongkeys", "path": "wkb/in"},
                   {"storage_provider": "minio.down", "path": "dnb/in"}]}),
    );
    // Credentials never come back in clear text; the definition round-trips with them hidden.
    let got: Value = client()
        .get(server.url("/system/services/upper"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let text = got.to_string();
    assert!(!text.contains("badsecret"), "{text}");
    assert_eq!(
        got["storage_providers"]["minio"]["wrongkeys"]["secret_key"],
        "hidden"
    );
    let r = client()
        .put(server.url("/system/services"))
        .json(&got)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);

    for bucket in ["wkb", "dnb"] {
        let r = client()
            .post(server.url("/job/upper"))
            .body(minio_event(bucket, "in/a.txt").to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let jobs = wait_jobs(&server, "upper", 2);
    for (job, record) in &jobs {
        assert_eq!(record["status"], "Failed");
        let log = log_of(&server, "upper", job);
        assert!(
            log.contains("Input download failed: downloading minio."),
            "{log}"
        );
    }
    // Wrong keys: said so (the stored secret survived the PUT with "hidden").
    let logs: Vec<String> = jobs.keys().map(|j| log_of(&server, "upper", j)).collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("minio.wrongkeys s3://wkb/in/a.txt"))
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("minio.down s3://dnb/in/a.txt"))
    );
    // The server still serves.
    assert_eq!(
        client().get(server.url("/health")).send().unwrap().status(),
        200
    );

    // Bad definitions name the field.
    for (definition, field) in [
        (
            json!({"name": "b1", "module": "x", "input": [{"storage_provider": "minio.nope", "path": "a/b"}]}),
            "input[0].storage_provider",
        ),
        (
            json!({"name": "b2", "input": [{"storage_provider": "minio", "path": "/"}]}),
            "input[0].path",
        ),
        (
            json!({"name": "b3", "storage_providers": {"s3": {"x": {"access_key": "a"}}}}),
            "storage_providers.s3.x.secret_key",
        ),
        (
            json!({"name": "b4", "storage_providers": {"onedata": {"o": {"token": "t"}}}, "input": [{"storage_provider": "onedata.o", "path": "spc/f"}]}),
            "input[0].storage_provider",
        ),
    ] {
        let mut definition = definition;
        definition["module"] = got["module"].clone();
        let r = client()
            .post(server.url("/system/services"))
            .json(&definition)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{definition}");
        let message = r.text().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    }
}

/// The Python of the virtualenv that scripts/test.sh prepares with moto and boto3.
fn test_python() -> String {
    std::env::var("OSCAR_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "OSCAR_TEST_PYTHON is not set: run ./scripts/test.sh, which installs moto[server] \
             and boto3 into a virtualenv for this test"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's server mode on a free loopback port, killed on drop.
struct Moto(std::process::Child, u16);

impl Moto {
    fn start(python: &str) -> Self {
        let port = free_port();
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self(child, port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// S3 -> SNS -> http subscription to /job/NAME, end to end, as AWS delivers bucket events:
/// put an object into moto's S3, the SNS notification reaches the server, the job runs, and
/// the output object appears. moto's first message is an `s3:TestEvent`, which runs nothing.
#[test]
fn s3_events_through_sns_trigger_jobs() {
    let python = test_python();
    let moto = Moto::start(&python);
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &[
            "--storage-endpoint",
            &endpoint,
            "--storage-access-key",
            "testing",
            "--storage-secret-key",
            "testing",
        ],
    );
    let created = deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "upper",
               "input": [{"storage_provider": "minio", "path": "inbox/in"}],
               "output": [{"storage_provider": "minio", "path": "inbox/out"}]}),
    );
    let token = created["token"].as_str().unwrap();
    // The subscription carries the service's token as a basic-auth password in its URL.
    let webhook = format!(
        "http://token:{token}@{}/job/upper",
        server.base.trim_start_matches("http://")
    );
    let script = r#"
import sys, boto3
endpoint, webhook = sys.argv[1], sys.argv[2]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
s3, sns = boto3.client("s3", **kw), boto3.client("sns", **kw)
s3.create_bucket(Bucket="inbox")
topic = sns.create_topic(Name="uploads")["TopicArn"]
sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=webhook)
s3.put_bucket_notification_configuration(Bucket="inbox", NotificationConfiguration={
    "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]})
s3.put_object(Bucket="inbox", Key="in/hello world+1.txt", Body=b"from sns")
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, &endpoint, &webhook])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = wait_jobs(&server, "upper", 1);
    assert_eq!(jobs.len(), 1, "the s3:TestEvent ran nothing: {jobs:?}");
    let (job, record) = jobs.iter().next().unwrap();
    let log = log_of(&server, "upper", job);
    assert_eq!(record["status"], "Succeeded", "{log}");
    assert!(
        log.contains("Downloaded s3://inbox/in/hello world+1.txt"),
        "{log}"
    );
    let store = s3(&endpoint, "inbox", "testing", "testing");
    assert_eq!(get(&store, "out/upper.txt").unwrap(), b"FROM SNS");
}
