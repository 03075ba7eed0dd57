//! The hostile review's findings (issue 11), each as an attack on the real binary: modules that
//! once aborted the process, clients that held it hostage, and the bounds that now stop them.
//! Every test ends by checking that the server still answers.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn wat(source: &str) -> Vec<u8> {
    wat::parse_str(source).unwrap()
}

fn healthy(server: &Server) {
    let r = client().get(server.url("/health")).send().unwrap();
    assert_eq!(r.status(), 200);
}

/// The preview 1 imports the attack modules use.
const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $truncate (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
"#;

/// A module whose `_start` is `body`, with [`IMPORTS`]; fd 4 is the output folder.
fn attack(locals: &str, body: &str) -> Vec<u8> {
    wat(&format!(
        "(module {IMPORTS} (data (i32.const 0) \"d\") (func (export \"_start\") {locals} {body}))"
    ))
}

fn post_job(server: &Server, service: &str, body: &[u8]) -> reqwest::blocking::Response {
    client()
        .post(server.url(&format!("/job/{service}")))
        .body(b64(body))
        .send()
        .unwrap()
}

#[test]
fn poll_oneoff_with_a_huge_count_is_refused_not_allocated() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    // 0x7fffffff subscriptions once made the host allocate 96 GiB and abort.
    let huge = attack(
        "",
        "(call $exit (call $poll (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 0)))",
    );
    // 4096 subscriptions (192 KiB) do not fit in one 64 KiB page: a fault, not a crash.
    let outside = attack(
        "",
        "(call $exit (call $poll (i32.const 0) (i32.const 0) (i32.const 4096) (i32.const 0)))",
    );
    deploy(&server, &huge, json!({"name": "huge"}));
    deploy(&server, &outside, json!({"name": "outside"}));
    let (status, outcome, _) = run(&server, "huge", "");
    assert_eq!(
        (status, outcome.as_str()),
        (500, "exit:28"),
        "EINVAL expected"
    );
    let (status, outcome, _) = run(&server, "outside", "");
    assert_eq!(
        (status, outcome.as_str()),
        (500, "exit:21"),
        "EFAULT expected"
    );
    healthy(&server);
}

/// Creates `levels` nested folders `d/d/d/...` in the output folder, one handle at a time.
fn nest(levels: u32) -> Vec<u8> {
    attack(
        "(local $fd i32) (local $i i32) (local $err i32)",
        &format!(
            "(local.set $fd (i32.const 4))
             (loop $next
               (local.set $err (call $mkdir (local.get $fd) (i32.const 0) (i32.const 1)))
               (if (local.get $err) (then (call $exit (local.get $err))))
               ;; O_DIRECTORY, with the rights path_create_directory and path_open.
               (local.set $err (call $open (local.get $fd) (i32.const 0) (i32.const 0) (i32.const 1)
                 (i32.const 2) (i64.const 0x2200) (i64.const 0x2200) (i32.const 0) (i32.const 16)))
               (if (local.get $err) (then (call $exit (local.get $err))))
               (if (i32.ne (local.get $fd) (i32.const 4)) (then (drop (call $close (local.get $fd)))))
               (local.set $fd (i32.load (i32.const 16)))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $next (i32.lt_u (local.get $i) (i32.const {levels}))))"
        ),
    )
}

#[test]
fn deeply_nested_output_folders_are_refused_and_removed() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    // 6,000 levels once overflowed the host's stack in the recursive output walk.
    deploy(&server, &nest(6000), json!({"name": "deep", "timeout": 30}));
    deploy(&server, &nest(10), json!({"name": "shallow"}));
    let (status, outcome, body) = run(&server, "deep", "");
    assert_eq!(
        (status, outcome.as_str()),
        (500, "limit"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("nested output folders more than 64 deep"));
    // Folders without files are no output; a shallow tree is fine.
    let (status, outcome, _) = run(&server, "shallow", "");
    assert_eq!((status, outcome.as_str()), (200, "success"));
    eventually("the scratch folders to be removed", || {
        dir.scratch_left().is_empty()
    });
    healthy(&server);
}

/// `cpu` under one core is a CPU-time budget per call (`cpu × timeout`, what a container
/// throttled to that share could use before its timeout); a guest that spins past it is
/// stopped as timed out, with a message that says why, long before its wall-clock timeout.
#[test]
fn a_guest_under_one_cpu_gets_its_share_of_the_timeout_in_cpu_time() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let spin = attack("", "(loop $spin (br $spin))");
    deploy(
        &server,
        &spin,
        json!({"name": "tenth", "cpu": "100m", "timeout": 30}),
    );
    let started = std::time::Instant::now();
    let (status, outcome, body) = run(&server, "tenth", "");
    let body = String::from_utf8_lossy(&body);
    // A throttled container would have reached its timeout: so is this one reported.
    assert_eq!((status, outcome.as_str()), (504, "timeout"), "{body}");
    assert!(body.contains("CPU time budget of 3.000 s"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    // From one core up, the timeout alone bounds it.
    deploy(
        &server,
        &spin,
        json!({"name": "whole", "cpu": "1", "timeout": 1}),
    );
    let (status, outcome, _) = run(&server, "whole", "");
    assert_eq!((status, outcome.as_str()), (504, "timeout"));
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "bad", "module": upload(&server, &spin), "cpu": "lots"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not a positive CPU quantity"));
    healthy(&server);
}

#[test]
fn folders_count_against_the_output_entry_limit() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-output-files", "500"]);
    // 2,000 empty folders with three-letter names: each cost the host kernel memory, uncounted.
    let folders = attack(
        "(local $i i32)",
        "(loop $next
           (i32.store8 (i32.const 32) (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
           (i32.store8 (i32.const 33) (i32.add (i32.const 97) (i32.rem_u (i32.div_u (local.get $i) (i32.const 26)) (i32.const 26))))
           (i32.store8 (i32.const 34) (i32.add (i32.const 97) (i32.div_u (local.get $i) (i32.const 676))))
           (drop (call $mkdir (i32.const 4) (i32.const 32) (i32.const 3)))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $next (i32.lt_u (local.get $i) (i32.const 2000))))",
    );
    deploy(&server, &folders, json!({"name": "folders"}));
    let (status, outcome, body) = run(&server, "folders", "");
    assert_eq!((status, outcome.as_str()), (500, "limit"));
    assert!(
        String::from_utf8_lossy(&body).contains("more than 500 output files and folders"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    healthy(&server);
}

#[test]
fn a_sparse_output_file_counts_at_its_full_length() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-output", "1Mi"]);
    // 256 MiB that cost the module nothing: the host would read it all.
    let sparse = attack(
        "(local $err i32)",
        "(local.set $err (call $open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1)
           (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)))
         (if (local.get $err) (then (call $exit (local.get $err))))
         (call $exit (call $truncate (i32.load (i32.const 16)) (i64.const 268435456)))",
    );
    deploy(&server, &sparse, json!({"name": "sparse"}));
    let (status, outcome, body) = run(&server, "sparse", "");
    assert_eq!((status, outcome.as_str()), (500, "limit"));
    assert!(String::from_utf8_lossy(&body).contains("more than 1048576 bytes of output"));
    healthy(&server);
}

#[test]
fn a_job_that_keeps_killing_the_server_ends_failed_after_three_attempts() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "fatal", "timeout": 600}),
    );
    let r = post_job(&server, "fatal", b"sleep 600000\n");
    assert_eq!(r.status(), 201);
    let job = r.json::<Value>().unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    // Each start runs it; each run ends with the process killed, as a crash would.
    for _ in 0..3 {
        wait_status(&server, "fatal", &job, "Running");
        server.kill();
        server = Server::start(&dir.data(), &[]);
    }
    wait_status(&server, "fatal", &job, "Failed");
    let log = log_of(&server, "fatal", &job);
    assert!(log.contains("3 times; it is not run again"), "{log}");
    assert_eq!(log.matches("it will run again").count(), 2, "{log}");
    healthy(&server);
}

#[test]
fn a_storage_event_reads_only_the_services_own_input_folders() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw"]);
    let create = |definition: Value| {
        deploy_as(&server, "pw", &guest("uppercase"), definition)["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plain = create(json!({"name": "plain"}));
    let reader = create(json!({"name": "reader",
        "input": [{"storage_provider": "minio", "path": "inbox/in"}]}));
    // Another user's data, in a bucket of the embedded store.
    std::fs::create_dir_all(dir.data().join("buckets/private")).unwrap();
    let store = s3(server.s3.as_ref().unwrap(), "private", "oscar", "oscar");
    put(&store, "secret.txt", b"not yours").unwrap();
    let event = |bucket: &str, key: &str| {
        json!({"Records": [{"eventSource": "minio:s3", "eventTime": "2026-11-26T00:00:00Z",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})
    };
    let invoke = |(service, token): (&str, &str), body: &Value| {
        let r = client()
            .post(server.url(&format!("/run/{service}")))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // A service without inputs takes no events: an existing and a missing object get the
    // same answer, so nothing can be probed either.
    let existing = invoke(("plain", &plain), &event("private", "secret.txt"));
    let missing = invoke(("plain", &plain), &event("private", "nothing.txt"));
    assert_eq!(existing.0, 400, "{}", existing.1);
    assert_eq!(existing, missing);
    assert!(existing.1.contains("no input folders"), "{}", existing.1);
    // A service with inputs: only keys inside them.
    let (status, text) = invoke(("reader", &reader), &event("private", "secret.txt"));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("outside every input folder"), "{text}");
    healthy(&server);
}

/// Sends raw bytes on a new connection; returns the connection.
fn raw(server: &Server, bytes: &[u8]) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Reads the status line's code, waiting up to `within`.
fn status_of(stream: &mut TcpStream, within: Duration) -> u16 {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "no status line ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap()
}

#[test]
fn credentials_are_checked_before_a_body_is_read_and_bodies_have_a_deadline() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw", "--body-timeout", "1"]);
    deploy_as(&server, "pw", &guest("uppercase"), json!({"name": "upper"}));
    let rss = || rss_kib(&server);
    let before = rss();
    // 2 GiB announced, nothing sent: refused at once, nothing read.
    for path in ["/run/upper", "/job/upper", "/kube/invocations/x/result"] {
        let mut stream = raw(
            &server,
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n")
                .as_bytes(),
        );
        let code = status_of(&mut stream, Duration::from_secs(10));
        assert!(matches!(code, 401 | 404), "{path}: {code}");
    }
    // Three unauthenticated 100 MiB bodies sent whole: refused without being kept.
    for _ in 0..3 {
        let r = client()
            .post(server.url("/run/upper"))
            .body(vec![b'A'; 100 << 20])
            .send();
        if let Ok(r) = r {
            assert_eq!(r.status(), 401);
        }
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 150 * 1024, "the server grew by {grown} KiB");
    // With credentials, a body sent too slowly: 408 after --body-timeout.
    let token = "Basic b3NjYXI6cHc="; // oscar:pw
    let mut stream = raw(
        &server,
        format!(
            "POST /run/upper HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nContent-Length: 1000\r\n\r\naGVs"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&mut stream, Duration::from_secs(20)), 408);
    // A body over --max-body is refused from its Content-Length.
    let mut stream = raw(
        &server,
        format!(
            "POST /run/upper HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nContent-Length: 99999999999\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&mut stream, Duration::from_secs(10)), 413);
    healthy(&server);
}

/// The server's resident memory in KiB.

#[test]
fn idle_connections_are_capped_and_closed() {
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &["--max-connections", "20", "--header-timeout", "1"],
    );
    // More idle connections than the cap: they are closed after the header deadline, and
    // /health answers meanwhile or right after.
    let mut idle: Vec<TcpStream> = (0..40).map(|_| raw(&server, b"")).collect();
    healthy(&server);
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 256];
        // Closed by the server: end of stream (possibly after a 408), never a hang.
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("an idle connection was kept open: {e}"),
            }
        }
    }
    // A kept-alive connection left idle after a request is closed too.
    let mut stream = raw(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&mut stream, Duration::from_secs(10)), 200);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    healthy(&server);
}

#[test]
fn json_bodies_cost_bounded_memory() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-json-body", "1Mi"]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let before = rss_kib(&server);
    // An 8 MiB array of numbers: refused without being built as a tree (once: +423 MiB).
    let array = format!("[{}1]", "1,".repeat(4 << 20));
    let r = client()
        .post(server.url("/run/upper"))
        .body(array)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("JSON array"));
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(grown < 100 * 1024, "the server grew by {grown} KiB");
    // A JSON object over --max-json-body: 413 with the way out.
    let object = format!("{{\"a\": [{}1]}}", "1,".repeat(1 << 20));
    let r = client()
        .post(server.url("/run/upper"))
        .body(object)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("base64"));
    // Small JSON objects are still inputs.
    let (status, _, body) = run(&server, "upper", "{\"a\": 1}");
    assert_eq!(status, 200);
    assert_eq!(unb64(&body), b"{\"A\": 1}");
    healthy(&server);
}

#[test]
fn pending_jobs_are_bounded_per_service_and_overall() {
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &[
            "--job-workers",
            "1",
            "--max-pending-jobs",
            "3",
            "--max-pending-total",
            "4",
        ],
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "slow", "timeout": 600}),
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "other", "timeout": 600}),
    );
    for _ in 0..3 {
        assert_eq!(post_job(&server, "slow", b"sleep 600000\n").status(), 201);
    }
    let r = post_job(&server, "slow", b"sleep 600000\n");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().unwrap().contains("3 unfinished jobs"));
    assert_eq!(post_job(&server, "other", b"sleep 1\n").status(), 201);
    let r = post_job(&server, "other", b"sleep 1\n");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // Refused jobs left nothing on disk.
    let kept = std::fs::read_dir(dir.data().join("jobs/slow"))
        .unwrap()
        .count();
    assert_eq!(kept, 3);
    healthy(&server);
}

#[test]
fn secrets_and_users_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "environment": {"secrets": {"KEY": "s3cr3t"}}}),
    );
    let r = post_job(&server, "probe", b"output a.txt x\n");
    assert_eq!(r.status(), 201);
    wait_jobs(&server, "probe", 1);
    let mut checked = 0;
    let mut stack = vec![dir.data(), dir.scratch()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
        checked += 1;
    }
    assert!(checked > 10);
    healthy(&server);
}

#[test]
fn an_exposed_store_needs_a_password() {
    let dir = TestDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "0.0.0.0:0",
        ])
        .arg("--data-dir")
        .arg(dir.data())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("embedded S3 store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn local_storage_endpoints_are_refused_by_default() {
    let dir = TestDir::new();
    let server = Server::start_with_generated_store_keys(&dir.data(), &[]);
    let digest = upload(&server, &guest("uppercase"));
    for endpoint in [
        "http://127.0.0.1:9000",
        "http://169.254.169.254",
        "http://localhost:9000",
    ] {
        let r = client()
            .post(server.url("/system/services"))
            .json(&json!({"name": "x", "module": digest,
                "storage_providers": {"minio": {"m": {"endpoint": endpoint, "access_key": "a", "secret_key": "b"}}}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{endpoint}");
        assert!(r.text().unwrap().contains("--allow-local-endpoints"));
    }
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "x", "module": digest,
            "storage_providers": {"minio": {"m": {"endpoint": "http://user:pw@minio.example.org", "access_key": "a", "secret_key": "b"}}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("must not hold credentials") && !text.contains("pw@"),
        "{text}"
    );
    healthy(&server);
}

#[test]
fn a_huge_timeout_does_not_overflow_the_clock() {
    let dir = TestDir::new();
    // 1e19 s fits a Duration but not the clock: the deadline once overflowed and panicked.
    let server = Server::start(&dir.data(), &["--max-timeout", "1.5e19"]);
    deploy(
        &server,
        &guest("uppercase"),
        json!({"name": "upper", "timeout": 1e19}),
    );
    let (status, _, body) = run(&server, "upper", b64(b"ok"));
    assert_eq!((status, unb64(&body)), (200, b"OK".to_vec()));
    healthy(&server);
}

#[test]
fn scratch_roots_go_at_shutdown_and_a_killed_servers_at_the_next_start() {
    let dir = TestDir::new();
    let tmp = dir.data().parent().unwrap().to_path_buf();
    let root_a = tmp.join("oscar-wasm-a");
    let root_b = tmp.join("oscar-wasm-b");
    let scratch =
        |root: &std::path::Path| ["--scratch-dir".to_string(), root.display().to_string()];
    let a = scratch(&root_a);
    let mut killed = Server::start(&tmp.join("data-a"), &[&a[0], &a[1]]);
    deploy(
        &killed,
        &guest("sandbox-probe"),
        json!({"name": "slow", "timeout": 600}),
    );
    // A call running when the server is killed leaves its input behind.
    let url = killed.url("/run/slow");
    std::thread::spawn(move || {
        let _ = client().post(url).body(b64(b"sleep 600000\n")).send();
    });
    eventually("the call to start", || {
        std::fs::read_dir(&root_a).is_ok_and(|d| {
            d.flatten()
                .any(|e| !e.file_name().to_string_lossy().starts_with('.'))
        })
    });
    killed.kill();
    assert!(root_a.exists());
    let b = scratch(&root_b);
    let server = Server::start(&tmp.join("data-b"), &[&b[0], &b[1]]);
    assert!(!root_a.exists(), "a dead server's scratch root was left");
    assert!(root_b.exists());
    healthy(&server);
    // SIGTERM: the server stops and takes its scratch root with it.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually("the server to remove its scratch root", || !root_b.exists());
}
