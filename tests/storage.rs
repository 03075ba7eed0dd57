//! End-to-end tests of storage-triggered processing against real S3 servers on loopback: the
//! embedded store of the server under test (objects put with an S3 client trigger jobs), and,
//! as an "external" store, the embedded store of a second oscar-wasm server, to which the test
//! posts MinIO-shaped events itself, as MinIO would.

mod common;

use common::*;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};

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

    // Exactly once: one put, one job; objects outside the input folder start nothing. A job is
    // on disk before its upload is acknowledged, so there is nothing to wait for.
    put(&store, "elsewhere/x.txt", b"x").unwrap();
    put(&store, "out/y.txt", b"y").unwrap();
    assert_eq!(wait_jobs(&server, "upper", 1).len(), 1);

    // SigV4 with wrong keys is refused, and nothing runs.
    let wrong = s3(&endpoint, "files", "oscar", "not-the-secret");
    assert!(put(&wrong, "in/bad.txt", b"x").is_err());
    assert_eq!(wait_jobs(&server, "upper", 1).len(), 1);
    // And a put in the input folder after them is the second job, no more.
    put(&store, "in/second.txt", b"2").unwrap();
    assert_eq!(wait_jobs(&server, "upper", 2).len(), 2);
}

#[test]
fn uploads_past_the_pending_limit_keep_their_jobs_and_every_file_is_processed() {
    let dir = TestDir::new();
    // Two unfinished jobs per service at most (POST /job's limit), and each job sleeps: most
    // uploads arrive while the service is full, and none of them may lose its job.
    let server = Server::start(&dir.data(), &["--max-pending-jobs", "2"]);
    let endpoint = server.s3.clone().expect("the embedded store runs");
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "slow", "log_level": "CRITICAL",
               "input": [{"storage_provider": "minio", "path": "bulk/in"}],
               "output": [{"storage_provider": "minio.default", "path": "bulk/out"}]}),
    );
    let files = 12;
    std::thread::scope(|scope| {
        for client in 0..4 {
            let endpoint = &endpoint;
            scope.spawn(move || {
                let store = s3(endpoint, "bulk", "oscar", "oscar");
                for i in (client..files).step_by(4) {
                    let body = format!("sleep 150\noutput f{i}.txt {i}\n");
                    // No retries in this client: each upload is answered once, and must succeed.
                    put(&store, &format!("in/f{i}.txt"), body.as_bytes()).unwrap();
                }
            });
        }
    });
    // Every upload was acknowledged with its job on disk: all of them run, once each.
    let jobs = wait_jobs(&server, "slow", files);
    assert_eq!(jobs.len(), files);
    assert!(
        jobs.values().all(|j| j["status"] == "Succeeded"),
        "{jobs:?}"
    );
    let store = s3(&endpoint, "bulk", "oscar", "oscar");
    for i in 0..files {
        assert_eq!(
            get(&store, &format!("out/f{i}.txt")).as_deref(),
            Some(i.to_string().as_bytes())
        );
    }
}

#[test]
fn the_store_has_its_own_generated_keys_never_the_admin_password() {
    let dir = TestDir::new();
    let server = Server::start_with_generated_store_keys(&dir.data(), &["--password", "pw-123"]);
    let endpoint = server.s3.clone().unwrap();
    let config = admin_json(&server, "pw-123", "/system/config");
    let access = config["minio_provider"]["access_key"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = config["minio_provider"]["secret_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!((access.len(), secret.len()), (20, 40), "{config}");
    assert!(access != "oscar" && secret != "pw-123" && secret != "oscar");
    // Kept owner-only in the data folder.
    let keys = dir.data().join("store-keys.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&keys).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    deploy_as(
        &server,
        "pw-123",
        &guest("uppercase"),
        json!({"name": "upper", "input": [{"storage_provider": "minio", "path": "secure/in"}]}),
    );
    // The admin's credentials do not open the store; its own keys do.
    assert!(
        put(
            &s3(&endpoint, "secure", "oscar", "pw-123"),
            "in/a.txt",
            b"a"
        )
        .is_err()
    );
    assert!(put(&s3(&endpoint, "secure", "oscar", "oscar"), "in/a.txt", b"a").is_err());
    put(&s3(&endpoint, "secure", &access, &secret), "in/a.txt", b"a").unwrap();
    // The same keys after a restart.
    drop(server);
    let server = Server::start_with_generated_store_keys(&dir.data(), &["--password", "pw-123"]);
    let again = admin_json(&server, "pw-123", "/system/config");
    assert_eq!(again["minio_provider"]["secret_key"], secret.as_str());
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
                   "down": {"endpoint": format!("http://127.0.0.1:{port}"), "access_key": "a", "secret_key": "b"},
                   "same": {"endpoint": endpoint, "access_key": "oscar", "secret_key": "oscar"}}},
               "input": [
                   {"storage_provider": "minio.wrongkeys", "path": "wkb/in"},
                   {"storage_provider": "minio.down", "path": "dnb/in"},
                   {"storage_provider": "minio.same", "path": "nobucket/in"}]}),
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

    for bucket in ["wkb", "dnb", "nobucket"] {
        let r = client()
            .post(server.url("/job/upper"))
            .body(minio_event(bucket, "in/a.txt").to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let jobs = wait_jobs(&server, "upper", 3);
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
    // A missing bucket: the store's answer, named.
    assert!(
        logs.iter()
            .any(|l| l.contains("minio.same s3://nobucket/in/a.txt")),
        "{logs:?}"
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
        eventually("moto to start", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
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

/// A second server whose embedded store plays the external MinIO; `buckets` are created on it
/// (through a service whose outputs name them, which triggers nothing).
fn external_store(buckets: &[&str]) -> (TestDir, Server, String) {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let outputs: Vec<Value> = buckets
        .iter()
        .map(|b| json!({"storage_provider": "minio", "path": format!("{b}/out")}))
        .collect();
    deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "buckets", "output": outputs}),
    );
    let endpoint = server.s3.clone().unwrap();
    (dir, server, endpoint)
}

fn external_flags(endpoint: &str) -> Vec<&str> {
    vec![
        "--storage-endpoint",
        endpoint,
        "--storage-access-key",
        "oscar",
        "--storage-secret-key",
        "oscar",
    ]
}

#[test]
fn the_poller_enqueues_each_new_object_once_across_restarts() {
    let (_sd, _ss, external) = external_store(&["pollb"]);
    let ext = s3(&external, "pollb", "oscar", "oscar");
    put(&ext, "in/before.txt", b"already there").unwrap();

    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &external_flags(&external));
    deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "poll", "poll_interval": 1,
               "input": [{"storage_provider": "minio", "path": "pollb/in"}],
               "output": [{"storage_provider": "minio", "path": "pollb/out"}]}),
    );
    // The first round only takes note of what is there (and saves that it did).
    let state = dir.data().join("pollers/poll.json");
    eventually("the poller's first round", || state.exists());
    put(&ext, "in/after.txt", b"new one").unwrap();
    let jobs = wait_jobs(&server, "poll", 1);
    let (job, record) = jobs.iter().next().unwrap();
    assert_eq!(record["status"], "Succeeded");
    assert!(log_of(&server, "poll", job).contains("Downloaded s3://pollb/in/after.txt"));
    assert_eq!(get(&ext, "out/upper.txt").unwrap(), b"NEW ONE");

    // A restart forgets nothing: after.txt is not processed again, a new object is.
    server.kill();
    let server = Server::start(&dir.data(), &external_flags(&external));
    put(&ext, "in/third.txt", b"third").unwrap();
    // after.txt sorts before third.txt: had it been taken for new, its job would have been
    // enqueued in the same round, before third.txt's.
    let jobs = wait_jobs(&server, "poll", 2);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    // A new version of an object is a new object.
    put(&ext, "in/after.txt", b"changed").unwrap();
    assert_eq!(wait_jobs(&server, "poll", 3).len(), 3);
    // poll_interval needs an input, and a sane number.
    for (definition, reason) in [
        (
            json!({"name": "p2", "poll_interval": 0, "input": [{"storage_provider": "minio", "path": "pollb/in"}]}),
            "poll_interval",
        ),
        (json!({"name": "p3", "poll_interval": 5}), "poll_interval"),
    ] {
        let mut definition = definition;
        definition["module"] = json!(upload(&server, &guest("uppercase")));
        let r = client()
            .post(server.url("/system/services"))
            .json(&definition)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().unwrap().contains(reason));
    }
}

#[test]
fn a_bulk_upload_to_a_polled_store_is_processed_once_per_file() {
    let (_sd, _ss, external) = external_store(&["pollbulk"]);
    let dir = TestDir::new();
    // Two unfinished jobs per service at most: the poller's jobs are kept past it (their
    // objects are stored), so a bulk upload is not paced at two per round.
    let mut flags = external_flags(&external);
    flags.extend(["--max-pending-jobs", "2"]);
    let server = Server::start(&dir.data(), &flags);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "bulkpoll", "poll_interval": 1, "log_level": "CRITICAL",
               "input": [{"storage_provider": "minio", "path": "pollbulk/in"}],
               "output": [{"storage_provider": "minio", "path": "pollbulk/out"}]}),
    );
    let state = dir.data().join("pollers/bulkpoll.json");
    eventually("the poller's first round", || state.exists());
    let files = 300;
    std::thread::scope(|scope| {
        for client in 0..4 {
            let external = &external;
            scope.spawn(move || {
                let store = s3(external, "pollbulk", "oscar", "oscar");
                for i in (client..files).step_by(4) {
                    let body = format!("output f{i}.txt {i}\n");
                    put(&store, &format!("in/f{i}.txt"), body.as_bytes()).unwrap();
                }
            });
        }
    });
    let jobs = wait_jobs(&server, "bulkpoll", files);
    assert_eq!(jobs.len(), files, "one job per file");
    assert!(
        jobs.values().all(|j| j["status"] == "Succeeded"),
        "{jobs:?}"
    );
    let store = s3(&external, "pollbulk", "oscar", "oscar");
    for i in 0..files {
        assert_eq!(
            get(&store, &format!("out/f{i}.txt")).as_deref(),
            Some(i.to_string().as_bytes()),
            "out/f{i}.txt"
        );
    }
    // Deleted inputs are forgotten: the saved state follows the folder.
    for i in 0..files {
        rt().block_on(store.delete(&ObjectPath::from(format!("in/f{i}.txt"))))
            .unwrap();
    }
    eventually("the poller forgets the deleted inputs", || {
        std::fs::read_to_string(&state).is_ok_and(|s| !s.contains("pollbulk/in/f0.txt"))
    });
    assert_eq!(list_jobs(&server, "bulkpoll").len(), files);
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_200_mib_object_is_streamed_with_bounded_server_memory() {
    use sha2::Digest;
    let (_sd, _ss, external) = external_store(&["big"]);
    let ext = s3(&external, "big", "oscar", "oscar");
    // 200 MiB of varied bytes, uploaded in parts by the test (the test's memory, not the
    // server's).
    let mut block = vec![0u8; 1 << 20];
    let mut x: u32 = 12345;
    for b in block.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let mut data = Vec::with_capacity(200 << 20);
    for i in 0..200u8 {
        block[0] = i;
        data.extend_from_slice(&block);
    }
    let expected: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    rt().block_on(async {
        let upload = ext
            .put_multipart(&ObjectPath::parse("in/huge.bin").unwrap())
            .await
            .unwrap();
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, 16 << 20);
        writer.write(&data);
        writer.finish().await.unwrap();
    });
    drop(data);

    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &external_flags(&external));
    deploy(
        &server,
        &guest("checksum"),
        json!({"name": "checksum", "memory": "16Mi",
               "input": [{"storage_provider": "minio", "path": "big/in"}],
               "output": [{"storage_provider": "minio", "path": "big/out"}]}),
    );
    let r = client()
        .post(server.url("/job/checksum"))
        .body(minio_event("big", "in/huge.bin").to_string())
        .send()
        .unwrap();
    let job = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, "checksum", &job, "Succeeded");
    assert_eq!(
        String::from_utf8(get(&ext, "out/huge.bin.sha256").unwrap()).unwrap(),
        format!("{expected}  huge.bin\n")
    );
    let log = log_of(&server, "checksum", &job);
    assert!(log.contains("(209715200 bytes)"), "{log}");
    // The object never sat in the server's memory: its peak stays well under the object's size.
    let peak = peak_rss_bytes(server.pid());
    assert!(peak < 120 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn kill_9_during_a_storage_job_runs_it_again_and_uploads_once() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "slow",
               "input": [{"storage_provider": "minio", "path": "slowb/in"}],
               "output": [{"storage_provider": "minio", "path": "slowb/out"}]}),
    );
    let store = s3(server.s3.as_ref().unwrap(), "slowb", "oscar", "oscar");
    // The object is the probe's script: sleep, then write one output file.
    put(
        &store,
        "in/cmd.txt",
        b"sleep 2500\noutput result.txt done\n",
    )
    .unwrap();
    let jobs = wait_for_status(&server, "slow", "Running");
    server.kill();
    assert!(get(&store, "out/result.txt").is_none());

    let server = Server::start(&dir.data(), &[]);
    let store = s3(server.s3.as_ref().unwrap(), "slowb", "oscar", "oscar");
    wait_status(&server, "slow", &jobs, "Succeeded");
    let log = log_of(&server, "slow", &jobs);
    assert!(log.contains("will run again"), "{log}");
    assert_eq!(log.matches("Uploaded result.txt").count(), 1, "{log}");
    assert_eq!(get(&store, "out/result.txt").unwrap(), b"done");
    assert_eq!(
        wait_jobs(&server, "slow", 1).len(),
        1,
        "one upload, one job"
    );
}

/// The embedded store with a real S3 client, as a user drives it: boto3.
#[test]
fn boto3_against_the_embedded_store() {
    let python = test_python();
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "b0to-pw"]);
    let c = client();
    let digest = c
        .post(server.url("/system/modules"))
        .basic_auth("oscar", Some("b0to-pw"))
        .body(guest("uppercase"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(server.url("/system/services"))
        .basic_auth("oscar", Some("b0to-pw"))
        .json(&json!({"name": "upper", "module": digest,
                      "input": [{"storage_provider": "minio", "path": "drop/in"}],
                      "output": [{"storage_provider": "minio", "path": "drop/out"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let script = r#"
import sys, time, boto3, botocore
endpoint, secret = sys.argv[1], sys.argv[2]
def client(secret):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="oscar", aws_secret_access_key=secret,
                        config=botocore.config.Config(s3={"addressing_style": "path"}))
s3 = client(secret)
try:
    client("wrong").put_object(Bucket="drop", Key="in/x.txt", Body=b"x")
    sys.exit("a wrong secret was accepted")
except botocore.exceptions.ClientError as e:
    print("refused:", e.response["Error"]["Code"])
s3.put_object(Bucket="drop", Key="in/from boto3.txt", Body=b"dropped by boto3")
for _ in range(600):
    try:
        body = s3.get_object(Bucket="drop", Key="out/upper.txt")["Body"].read()
        print("result:", body.decode())
        break
    except s3.exceptions.NoSuchKey:
        time.sleep(0.05)
else:
    sys.exit("no result")
"#;
    let out = std::process::Command::new(&python)
        // The store's own keys (the harness sets oscar/oscar), not the admin's password.
        .args(["-c", script, server.s3.as_ref().unwrap(), "oscar"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("refused: SignatureDoesNotMatch"),
        "{stdout}"
    );
    assert!(stdout.contains("result: DROPPED BY BOTO3"), "{stdout}");
}

/// The embedded store pages listings as S3 does, for boto3's paginator: at most 1,000 keys a
/// page whatever MaxKeys asks, resumed by continuation token or StartAfter (and ListObjects'
/// Marker), with delimiter roll-ups.
#[test]
fn embedded_store_listings_are_paged_like_s3() {
    let python = test_python();
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let script = r#"
import sys, boto3, botocore
from concurrent.futures import ThreadPoolExecutor
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="oscar", aws_secret_access_key="oscar",
                  config=botocore.config.Config(s3={"addressing_style": "path"},
                                                max_pool_connections=16))
s3.create_bucket(Bucket="many")
keys = [f"in/{i:05}.txt" for i in range(1100)] + ["in/sub/a", "in/sub/b", "other"]
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda k: s3.put_object(Bucket="many", Key=k, Body=k.encode()), keys))
first = s3.list_objects_v2(Bucket="many", MaxKeys=5000)
assert first["KeyCount"] == 1000 and first["IsTruncated"], (first["KeyCount"], first["IsTruncated"])
assert first["Contents"][0]["Size"] == len("in/00000.txt")
seen, pages = [], 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="many"):
    pages += 1
    seen += [o["Key"] for o in page.get("Contents", [])]
assert seen == sorted(keys), (len(seen), seen[:3])
assert pages == 2, pages
after = s3.list_objects_v2(Bucket="many", StartAfter="in/01098.txt", MaxKeys=3)
assert [o["Key"] for o in after["Contents"]] == ["in/01099.txt", "in/sub/a", "in/sub/b"], after
rolled = s3.list_objects_v2(Bucket="many", Prefix="in/", Delimiter="/", StartAfter="in/01099.txt")
assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["in/sub/"], rolled
assert "Contents" not in rolled, rolled
v1 = s3.list_objects(Bucket="many", Marker="in/sub/a")
assert [o["Key"] for o in v1["Contents"]] == ["in/sub/b", "other"], v1
print("paged", len(seen))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script, server.s3.as_ref().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("paged 1103"), "{stdout}");
}

/// An output file over the multipart threshold (16 MiB) goes up in parts and arrives whole.
#[test]
fn large_outputs_are_uploaded_in_parts() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "big-out", "log_level": "CRITICAL",
               "output": [{"storage_provider": "minio", "path": "bigout/results"}]}),
    );
    let (status, _, _) = run(&server, "big-out", b64(b"fill $OUT/big.bin 20\n"));
    assert_eq!(status, 200);
    let store = s3(server.s3.as_ref().unwrap(), "bigout", "oscar", "oscar");
    let object = common::get(&store, "results/big.bin").expect("the output was uploaded");
    assert_eq!(object.len(), 20 << 20);
    assert!(
        object.iter().all(|&b| b == b'x'),
        "the parts arrive in order and whole"
    );
}

/// /system/buckets on an external store (moto's S3 as `--storage-endpoint`): the same S3
/// requests as on the embedded store, where a bucket with objects must be emptied before S3
/// deletes it, and keys come back a page at a time.
#[test]
fn bucket_api_works_on_an_external_store() {
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
            "--password",
            "pw",
        ],
    );
    let c = client();
    let admin = |r: reqwest::blocking::RequestBuilder| {
        let r = r.basic_auth("oscar", Some("pw")).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let created = admin(
        c.post(server.url("/system/buckets"))
            .json(&json!({"bucket_name": "shared/in", "visibility": "public"})),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    // Objects written by another S3 client, 5 of them, are listed two at a time.
    let store = s3(&endpoint, "shared", "testing", "testing");
    for i in 0..5 {
        put(&store, &format!("in/{i}.txt"), b"data").unwrap();
    }
    let (status, text) = admin(c.get(server.url("/system/buckets/shared?limit=2")));
    assert_eq!(status, 200, "{text}");
    let first: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(first["returned_items"], 2);
    assert_eq!(first["is_truncated"], true);
    assert_eq!(first["visibility"], "public");
    let next = first["next_page"].as_str().unwrap();
    let (_, text) = admin(c.get(server.url(&format!(
        "/system/buckets/shared?limit=10&page={}",
        percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
    ))));
    let rest: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = rest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object_name"].as_str().unwrap())
        .collect();
    // The folder object made at creation (`in/`) is listed too, as S3 lists it.
    assert_eq!(keys.len() + 2, 6, "{text}");
    assert_eq!(rest["is_truncated"], false);

    // A presigned download from the external store.
    let (_, text) = admin(
        c.post(server.url("/system/buckets/shared/presign"))
            .json(&json!({"object_key": "in/3.txt", "operation": "download"})),
    );
    let signed: Value = serde_json::from_str(&text).unwrap();
    let body = c.get(signed["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(body.text().unwrap(), "data");

    let listed: Vec<Value> =
        serde_json::from_str(&admin(c.get(server.url("/system/buckets"))).1).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["bucket_name"], "shared");
    // Deleting empties the bucket first; S3 alone would refuse (BucketNotEmpty).
    let (status, text) = admin(c.delete(server.url("/system/buckets/shared")));
    assert_eq!(status, 204, "{text}");
    assert_eq!(admin(c.get(server.url("/system/buckets"))).1.trim(), "[]");
    assert!(get(&store, "in/3.txt").is_none());
}

/// `mount` of an external store (here moto as `minio.default`): a read-only copy of the
/// folder at /mnt/<bucket>/<folder>, brought up to date before each call.
#[test]
fn an_external_stores_mount_is_a_read_only_copy_kept_up_to_date() {
    let python = test_python();
    let moto = Moto::start(&python);
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    let s3 = |args: &[&str]| {
        let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
op, key = sys.argv[2], sys.argv[3]
if op == "put":
    try: s3.create_bucket(Bucket="shared")
    except Exception: pass
    s3.put_object(Bucket="shared", Key=key, Body=sys.argv[4].encode())
else:
    s3.delete_object(Bucket="shared", Key=key)
"#;
        let mut full = vec!["-c", script, &endpoint];
        full.extend_from_slice(args);
        let out = std::process::Command::new(&python)
            .args(&full)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    s3(&["put", "data/note.txt", "from moto"]);
    s3(&["put", "data/sub/deep.txt", "deep"]);
    s3(&["put", "elsewhere.txt", "not mounted"]);
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
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "mount": {"storage_provider": "minio.default", "path": "shared/data"}}),
    );
    let probe = |script: &str| -> String {
        let (status, _, body) = run(&server, "probe", b64(script.as_bytes()));
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 200, "{body}");
        body
    };
    let out = probe(
        "read /mnt/shared/data/note.txt\nread /mnt/shared/data/sub/deep.txt\nread /mnt/shared/elsewhere.txt\nwrite /mnt/shared/data/new.txt guest\n",
    );
    assert!(
        out.contains("read /mnt/shared/data/note.txt: ok 9 bytes"),
        "{out}"
    );
    assert!(
        out.contains("read /mnt/shared/data/sub/deep.txt: ok 4 bytes"),
        "{out}"
    );
    assert!(
        out.contains("read /mnt/shared/elsewhere.txt: denied"),
        "{out}"
    );
    assert!(
        out.contains("write /mnt/shared/data/new.txt: denied"),
        "{out}"
    );
    // Changes in the store reach the next calls: a changed object, a removed one.
    s3(&["put", "data/note.txt", "changed in moto"]);
    s3(&["delete", "data/sub/deep.txt"]);
    eventually("the copy to follow the store", || {
        let out = probe("read /mnt/shared/data/note.txt\nread /mnt/shared/data/sub/deep.txt\n");
        out.contains("note.txt: ok 15 bytes") && out.contains("deep.txt: denied")
    });
}
