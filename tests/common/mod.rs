//! Shared harness of the end-to-end tests: start the real `oscar-wasm` binary on a free port,
//! talk HTTP to it, kill it.

#![allow(dead_code)]

pub mod idp;
pub mod minio;
pub mod scripts;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Every line the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT` of the embedded S3 store, when it runs.
    pub s3: Option<String>,
}

impl Server {
    /// Starts `oscar-wasm serve` on a free loopback port with `data_dir`, scratch folders under
    /// `data_dir/../scratch`, and `extra` flags; waits until it accepts connections.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start`] with extra environment variables for the server process.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch(data_dir, extra, env, true)
    }

    /// [`Server::start`] with the server's own defaults where the harness sets others: the
    /// embedded store's keys generated, storage endpoints on loopback refused.
    pub fn start_with_generated_store_keys(data_dir: &Path, extra: &[&str]) -> Server {
        Self::launch(data_dir, extra, &[], false)
    }

    /// [`Server::start`] as an operator runs it: storage endpoints and registries on loopback
    /// refused (no `--allow-local-endpoints`), and at most `open_files` files open (the
    /// soft and hard limits, as `ulimit -n` sets them).
    pub fn start_strict(data_dir: &Path, extra: &[&str], open_files: u64) -> Server {
        Self::launch_with(data_dir, extra, &[], (true, false), Some(open_files))
    }

    fn launch(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], known_keys: bool) -> Server {
        Self::launch_with(data_dir, extra, env, (known_keys, known_keys), None)
    }

    fn launch_with(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        (known_keys, allow_local): (bool, bool),
        open_files: Option<u64>,
    ) -> Server {
        let scratch = data_dir.parent().unwrap().join("scratch");
        // The embedded S3 store on a free port too, unless the test places it.
        let s3_listen: &[&str] = if extra
            .iter()
            .any(|a| *a == "--s3-listen" || *a == "--storage-endpoint")
        {
            &[]
        } else {
            &["--s3-listen", "127.0.0.1:0"]
        };
        // The embedded store's keys are generated per data folder; tests use known ones.
        let store_keys: &[&str] = if !known_keys
            || extra
                .iter()
                .any(|a| *a == "--store-access-key" || *a == "--storage-endpoint")
        {
            &[]
        } else {
            &["--store-access-key", "oscar", "--store-secret-key", "oscar"]
        };
        // Tests' external stores (moto) listen on loopback.
        let local_endpoints: &[&str] = if allow_local {
            &["--allow-local-endpoints"]
        } else {
            &[]
        };
        let listen: &[&str] = if extra.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let scratch_flag: &[&std::ffi::OsStr] = if extra.contains(&"--scratch-dir") {
            &[]
        } else {
            &["--scratch-dir".as_ref(), scratch.as_os_str()]
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_oscar-wasm"));
        if let Some(open_files) = open_files {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = rustix::process::Rlimit {
                        current: Some(open_files),
                        maximum: Some(open_files),
                    };
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command
            .arg("serve")
            .args(s3_listen)
            .args(store_keys)
            .args(local_endpoints)
            .args(listen)
            .envs(env.iter().copied())
            .arg("--data-dir")
            .arg(data_dir)
            .args(scratch_flag)
            .args(extra)
            .env("OSCAR_WASM_LOG", "info,oscar_wasm=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oscar-wasm");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let s3 = Arc::new(Mutex::new(None));
        let s3_sink = s3.clone();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(addr);
                }
                if let Some(rest) = line.split("(minio.default) serving on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    *s3_sink.lock().unwrap() = Some(format!("http://{addr}"));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let s3 = s3.lock().unwrap().clone();
        Server {
            child,
            base: format!("http://{addr}"),
            log,
            s3,
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far, as one string.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A data folder (and scratch folder beside it) for one test.
pub struct TestDir {
    tmp: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    pub fn scratch(&self) -> PathBuf {
        self.tmp.path().join("scratch")
    }
    /// What invocations left in the scratch root (its `.lock` and `.staging` aside): every
    /// entry inside a scratch folder's `in/` or `out/`, and anything else that is not such
    /// a folder. Emptied folders kept for reuse (`<id>/in`, `<id>/out`) do not count.
    pub fn scratch_left(&self) -> Vec<String> {
        let root = self.scratch();
        let mut left = Vec::new();
        let Ok(slots) = std::fs::read_dir(&root) else {
            return left;
        };
        for slot in slots.flatten() {
            let name = slot.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !slot.file_type().is_ok_and(|t| t.is_dir()) {
                left.push(name);
                continue;
            }
            for part in std::fs::read_dir(slot.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let part_name = part.file_name().to_string_lossy().into_owned();
                let path = format!("{name}/{part_name}");
                let is_dir = part.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir || (part_name != "in" && part_name != "out") {
                    left.push(path);
                    continue;
                }
                for entry in std::fs::read_dir(part.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    left.push(format!("{path}/{}", entry.file_name().to_string_lossy()));
                }
            }
        }
        left
    }
}

/// An HTTP client that never goes through a proxy.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// An example module built by scripts/build-guests.sh.
pub fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example modules first: scripts/build-guests.sh",
            path.display()
        )
    })
}

/// Uploads a module; returns its digest.
pub fn upload(server: &Server, wasm: &[u8]) -> String {
    let response = client()
        .post(server.url("/system/modules"))
        .header("content-type", "application/wasm")
        .body(wasm.to_vec())
        .send()
        .unwrap();
    assert!(
        response.status().is_success(),
        "upload failed: {}",
        response.text().unwrap()
    );
    let body: serde_json::Value = response.json().unwrap();
    body["digest"].as_str().unwrap().to_string()
}

/// Uploads `wasm` and creates a service from `definition` with that module.
pub fn deploy(
    server: &Server,
    wasm: &[u8],
    mut definition: serde_json::Value,
) -> serde_json::Value {
    let digest = upload(server, wasm);
    definition["module"] = serde_json::Value::String(digest);
    let response = client()
        .post(server.url("/system/services"))
        .json(&definition)
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 201, "create failed: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits until `condition` holds, checking every 20 ms; fails naming `what` after 60 s. Tests
/// wait on conditions like this, never on fixed sleeps.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    eventually_some(what, || condition().then_some(()));
}

/// [`eventually`] for a condition that yields a value once it holds.
pub fn eventually_some<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server's Prometheus metrics, as text (an open server's).
pub fn metrics_text(server: &Server) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// GET `path` with the administrator's `password`, as JSON.
pub fn admin_json(server: &Server, password: &str, path: &str) -> serde_json::Value {
    client()
        .get(server.url(path))
        .basic_auth("oscar", Some(password))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// [`deploy`] on a server with an administrator's `password`; returns the created definition.
pub fn deploy_as(
    server: &Server,
    password: &str,
    wasm: &[u8],
    mut definition: serde_json::Value,
) -> serde_json::Value {
    let c = client();
    let r = c
        .post(server.url("/system/modules"))
        .basic_auth("oscar", Some(password))
        .body(wasm.to_vec())
        .send()
        .unwrap();
    let stored: serde_json::Value = r.json().unwrap();
    definition["module"] = stored["digest"].clone();
    let r = c
        .post(server.url("/system/services"))
        .basic_auth("oscar", Some(password))
        .json(&definition)
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 201, "create failed: {text}");
    serde_json::from_str(&text).unwrap()
}

/// POST /run/{name} with `body`; returns (status, outcome header, body).
pub fn run(
    server: &Server,
    name: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> (u16, String, Vec<u8>) {
    let response = client()
        .post(server.url(&format!("/run/{name}")))
        .body(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let outcome = response
        .headers()
        .get("x-oscar-wasm-outcome")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, outcome, response.bytes().unwrap().to_vec())
}

/// Base64 of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes of base64 `text`.
pub fn unb64(text: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {}", String::from_utf8_lossy(text)))
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What a client command did.
#[derive(Debug)]
pub struct CliRun {
    /// Its exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: String,
}

impl CliRun {
    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts success and returns standard output as text.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self.out()
    }
}

/// Runs `oscar-wasm ARGS` as a client in the repository's root, against `endpoint`, with a
/// private HOME and clusters file under `home` and none of the caller's OSCAR_WASM_* settings.
pub fn oscar_cli(endpoint: Option<&str>, home: &Path, args: &[&str], stdin: &[u8]) -> CliRun {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_oscar-wasm"));
    command
        .args(args)
        .current_dir(repo_root())
        .env("HOME", home)
        .env("OSCAR_WASM_CLUSTERS", home.join("clusters.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OSCAR_WASM_") {
            command.env_remove(key);
        }
    }
    command.env("OSCAR_WASM_CLUSTERS", home.join("clusters.yaml"));
    if let Some(endpoint) = endpoint {
        command.env("OSCAR_WASM_ENDPOINT", endpoint);
    }
    let mut child = command.spawn().expect("start oscar-wasm");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    let _ = writer.join();
    CliRun {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// Object storage and job polling, shared by the storage and Kubernetes tests.

/// An S3 client for one bucket of a test store (path-style, no retries).
pub fn s3(
    endpoint: &str,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
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

/// A tokio runtime for a test's async client calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Puts an object.
pub fn put(
    store: &object_store::aws::AmazonS3,
    key: &str,
    bytes: &[u8],
) -> Result<(), object_store::Error> {
    use object_store::ObjectStoreExt as _;
    rt().block_on(store.put(
        &object_store::path::Path::parse(key).unwrap(),
        bytes.to_vec().into(),
    ))
    .map(|_| ())
}

/// An object's bytes, or `None` when it cannot be read.
pub fn get(store: &object_store::aws::AmazonS3, key: &str) -> Option<Vec<u8>> {
    use object_store::ObjectStoreExt as _;
    rt().block_on(async {
        let result = store
            .get(&object_store::path::Path::parse(key).unwrap())
            .await
            .ok()?;
        result.bytes().await.ok().map(|b| b.to_vec())
    })
}

/// Waits until the service has `n` finished jobs; returns the listing.
pub fn wait_jobs(
    server: &Server,
    service: &str,
    n: usize,
) -> serde_json::Map<String, serde_json::Value> {
    eventually_some(&format!("{n} finished jobs of {service}"), || {
        let jobs = list_jobs(server, service);
        let done = jobs
            .values()
            .filter(|j| matches!(j["status"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        (done >= n).then_some(jobs)
    })
}

/// Every listed job of `service` (up to 1,000: one page of the largest size), by name.
pub fn list_jobs(server: &Server, service: &str) -> serde_json::Map<String, serde_json::Value> {
    let body: serde_json::Value = client()
        .get(server.url(&format!("/system/logs/{service}?limit=1000")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["jobs"].as_object().cloned().unwrap_or_default()
}

/// A job's log text.
pub fn log_of(server: &Server, service: &str, job: &str) -> String {
    client()
        .get(server.url(&format!("/system/logs/{service}/{job}")))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The folder the script runtimes' builds write (runtimes/*/build.sh, which scripts/test.sh
/// runs): `OSCAR_RUNTIMES_DIR`, else the checkout's runtimes/dist.
pub fn runtimes_dir() -> String {
    std::env::var("OSCAR_RUNTIMES_DIR").unwrap_or_else(|_| {
        repo_root()
            .join("runtimes/dist")
            .to_string_lossy()
            .into_owned()
    })
}

/// Creates service `name` on the script runtime `image` running `script`, with the fields of
/// `extra`; (status, body). The first service of a runtime waits for the runtime's
/// compilation, which a debug build of the server (the tests') takes minutes for on a loaded
/// machine: this request waits up to 15 minutes.
pub fn create_script_service(
    server: &Server,
    image: &str,
    name: &str,
    script: &str,
    extra: serde_json::Value,
) -> (u16, String) {
    let mut definition = serde_json::json!({"name": name, "image": image, "script": script});
    if let (Some(map), serde_json::Value::Object(more)) = (definition.as_object_mut(), extra) {
        map.extend(more);
    }
    let response = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap()
        .post(server.url("/system/services"))
        .json(&definition)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 server on a free loopback port, one connection at a time: each request's
/// head is read (no body), and `respond(method, target)` is written back as the whole answer
/// (status line, headers and body). Returns its port; it lives as long as the test process.
pub fn loopback_http(respond: fn(&str, &str) -> String) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("/").to_string();
            let mut stream = stream;
            let _ = stream.write_all(respond(&method, &target).as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = reader.read_to_end(&mut Vec::new());
        }
    });
    port
}

/// Waits until job `job` of `service` has status `status`.
pub fn wait_status(server: &Server, service: &str, job: &str, status: &str) {
    eventually(&format!("job {job} to be {status}"), || {
        list_jobs(server, service)
            .get(job)
            .is_some_and(|j| j["status"] == status)
    });
}

/// Waits until some job of `service` has `status`; returns its name.
pub fn wait_for_status(server: &Server, service: &str, status: &str) -> String {
    eventually_some(&format!("a job of {service} to be {status}"), || {
        list_jobs(server, service)
            .iter()
            .find(|(_, j)| j["status"] == status)
            .map(|(name, _)| name.clone())
    })
}

// An OCI registry, shared by the wasm-image tests.

/// The CNCF distribution registry on a free loopback port with its own folder, killed on drop.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one (Debian's docker-registry, installed by scripts/test.sh).
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// [`Registry::start`], with HTTP basic logins (docker-registry's htpasswd: bcrypt).
    pub fn start_with_login(user: &str, password: &str) -> Self {
        let hash = bcrypt::hash(password, 4).unwrap();
        Self::launch(Some(format!("{user}:{hash}\n")))
    }

    fn launch(htpasswd: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(htpasswd) = &htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, htpasswd).unwrap();
            text += &format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                path.display()
            );
        }
        std::fs::write(&config, text).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry: run scripts/test.sh, which installs it");
        let host = format!("127.0.0.1:{port}");
        eventually("the registry to answer", || {
            client()
                .get(format!("http://{host}/v2/"))
                .send()
                .is_ok_and(|r| r.status() == 200 || r.status() == 401)
        });
        Self {
            child,
            host,
            _dir: dir,
        }
    }

    /// Deletes what `repository:tag` names (the registry then has no such tag).
    pub fn delete_tag(&self, repository: &str, tag: &str) {
        let url = format!("http://{}/v2/{repository}/manifests/{tag}", self.host);
        let accept = "application/vnd.oci.image.manifest.v1+json";
        let digest = client()
            .head(&url)
            .header("Accept", accept)
            .send()
            .unwrap()
            .headers()["Docker-Content-Digest"]
            .to_str()
            .unwrap()
            .to_string();
        let r = client()
            .delete(format!(
                "http://{}/v2/{repository}/manifests/{digest}",
                self.host
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes an artifact of any layout with oci-client, as other tools would.
pub fn push_layout(
    registry: &Registry,
    reference: &str,
    layers: Vec<(Vec<u8>, &str)>,
    config: (Vec<u8>, &str),
) {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.host.clone()]),
        ..Default::default()
    });
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|(bytes, media)| ImageLayer::new(bytes, media.to_string(), None))
        .collect();
    let config = Config::new(config.0, config.1.to_string(), None);
    let reference: oci_client::Reference = reference.parse().unwrap();
    rt().block_on(client.push(
        &reference,
        &layers,
        config,
        &oci_client::secrets::RegistryAuth::Anonymous,
        None,
    ))
    .unwrap();
}

/// A gzip-compressed tar holding one file, as a container image's layer.
pub fn tar_gz(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder.append_data(&mut header, name, bytes).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

// Python peers: moto, boto3, oscar-python and Playwright, in the virtualenv scripts/test.sh
// prepares.

/// The Python of that virtualenv.
pub fn test_python() -> String {
    std::env::var("OSCAR_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "OSCAR_TEST_PYTHON is not set: run ./scripts/test.sh, which installs moto, boto3, \
             oscar-python and Playwright into a virtualenv for these tests"
        )
    })
}

/// Runs `python -c script args...` in that Python; its standard output, or a panic showing
/// both streams and `server`'s log.
pub fn run_python(script: &str, args: &[&str], server: &Server) -> String {
    let out = Command::new(test_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    stdout
}

/// Sends one S3 request exactly as written (no URL normalization, so `..` and `%2e` reach the
/// server as given), signed with SigV4 for `key`/`secret`; (status, body).
pub fn s3_raw(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    (key, secret): (&str, &str),
) -> (u16, String) {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use std::io::{Read as _, Write as _};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let url = format!("http://{host}{path}");
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    all.push(("host".into(), host.into()));
    let signable = SignableRequest::new(
        method,
        &url,
        all.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    for (name, value) in instructions.headers() {
        all.push((name.to_string(), value.to_string()));
    }
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &all {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The server process's resident memory, in KiB.
pub fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// An OIDC user's own keys for the embedded store, from GET /system/config with `token`:
/// (endpoint, access key, secret key).
pub fn user_store_keys(server: &Server, token: &str) -> (String, String, String) {
    let config: serde_json::Value = client()
        .get(server.url("/system/config"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let m = &config["minio_provider"];
    let text = |k: &str| m[k].as_str().unwrap().to_string();
    (text("endpoint"), text("access_key"), text("secret_key"))
}
