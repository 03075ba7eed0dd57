//! The server's container image, as an operator runs it: scripts/test.sh builds it with
//! scripts/build-images.sh, pushes it to a loopback registry and pulls it back
//! (scripts/stage-test-images.sh). This test starts the server from the pulled image's root
//! file system the way the image's configuration says (entrypoint, environment, user), in a
//! chroot (a container runtime's stand-in: `podman run` cannot set its limits in these virtual
//! machines), then walks through it: health, an upload, a service, /run, a job.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn staged(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, which builds the images and pulls them \
             back from a registry (scripts/stage-test-images.sh)"
        )
    })
}

/// The image's configuration as `buildah inspect` gives it (OCI's `config`).
fn image_config() -> Value {
    let text = std::fs::read_to_string(staged("OSCAR_TEST_SERVER_IMAGE_CONFIG")).unwrap();
    let inspected: Value = serde_json::from_str(&text).unwrap();
    inspected["OCIv1"]["config"].clone()
}

/// The server of the image, started as a runtime would start it, with the operator's
/// settings (`-e` in `podman run`): a password, and free loopback ports.
struct ImageServer {
    child: std::process::Child,
    base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ImageServer {
    fn start() -> Self {
        let root = staged("OSCAR_TEST_SERVER_IMAGE_ROOT");
        let config = image_config();
        let entrypoint: Vec<String> =
            serde_json::from_value(config["Entrypoint"].clone()).expect("an entrypoint");
        let env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap_or_default();
        let user = config["User"].as_str().expect("a user").to_string();
        assert!(
            !user.is_empty() && !user.starts_with("0") && !user.starts_with("root"),
            "the image runs as {user:?}, not as a non-root user"
        );
        let port = free_port();
        let mut command = Command::new("chroot");
        command
            .arg(format!("--userspec={user}"))
            .arg(&root)
            .args(&entrypoint)
            .env_clear();
        for pair in &env {
            let (key, value) = pair.split_once('=').unwrap();
            command.env(key, value);
        }
        let mut child = command
            .env("OSCAR_WASM_LISTEN", format!("127.0.0.1:{port}"))
            .env("OSCAR_WASM_S3_LISTEN", "127.0.0.1:0")
            .env("OSCAR_WASM_PASSWORD", "pw")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chroot");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = ImageServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let health = format!("{}/health", server.base);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !client()
            .get(&health)
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the image's server stopped ({status}); its log:\n{}",
                    server.log_text()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the image's server did not answer /health; its log:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_server_image_serves_modules_and_jobs() {
    let server = ImageServer::start();
    let http = client();
    // The image's defaults: data in /data, the script runtimes shipped.
    let info: Value = http
        .get(server.url("/system/info"))
        .basic_auth("oscar", Some("pw"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(info["version"].is_string(), "{info}");
    let unauthenticated = http.get(server.url("/system/services")).send().unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let uploaded: Value = http
        .post(server.url("/system/modules"))
        .basic_auth("oscar", Some("pw"))
        .header("content-type", "application/wasm")
        .body(guest("uppercase"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let digest = uploaded["digest"].as_str().expect("a digest");
    let created = http
        .post(server.url("/system/services"))
        .basic_auth("oscar", Some("pw"))
        .json(&serde_json::json!({"name": "upper", "module": digest}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201, "{}", server.log_text());

    let answer = http
        .post(server.url("/run/upper"))
        .basic_auth("oscar", Some("pw"))
        .body(b64(b"from the image"))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", server.log_text());
    assert_eq!(unb64(&answer.bytes().unwrap()), b"FROM THE IMAGE");

    let job: Value = http
        .post(server.url("/job/upper"))
        .basic_auth("oscar", Some("pw"))
        .body(b64(b"a job"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let name = job["job_name"]
        .as_str()
        .unwrap_or_else(|| panic!("a job name in {job}"))
        .to_string();
    eventually("the job succeeds in the image's server", || {
        let jobs: Value = http
            .get(server.url("/system/logs/upper"))
            .basic_auth("oscar", Some("pw"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        jobs["jobs"][&name]["status"] == "Succeeded"
    });
    // What the server wrote went to the image's volume, /data.
    let root = staged("OSCAR_TEST_SERVER_IMAGE_ROOT");
    assert!(
        std::path::Path::new(&root).join("data/services").is_dir(),
        "no /data/services in the image's root"
    );
}
