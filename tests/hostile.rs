//! Hostile inputs: each must fail cleanly, with a clear status and message, while the server
//! keeps serving everyone else and leaves nothing behind.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wat(source: &str) -> Vec<u8> {
    wat::parse_str(source).unwrap()
}

fn scratch_is_empty(dir: &TestDir) -> bool {
    dir.scratch_left().is_empty()
}

#[test]
fn runaway_modules_are_stopped_while_others_are_served() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &wat("(module (func (export \"_start\") (loop (br 0))))"),
        json!({"name": "spin", "timeout": 2}),
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "sleepy", "timeout": 1, "log_level": "CRITICAL"}),
    );
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let server = &server;
    std::thread::scope(|scope| {
        let spin = scope.spawn(|| run(server, "spin", ""));
        // Sleeping in WASI is interrupted at the deadline too, not only wasm loops.
        let sleepy = scope.spawn(|| {
            let started = Instant::now();
            (
                run(server, "sleepy", b64(b"sleep 600000\n")),
                started.elapsed(),
            )
        });
        for i in 0..20 {
            let (status, _, body) = run(server, "upper", b64(format!("call {i}").as_bytes()));
            assert_eq!(status, 200);
            assert_eq!(unb64(&body), format!("CALL {i}").as_bytes());
        }
        assert_eq!(spin.join().unwrap().0, 504);
        let ((status, outcome, _), took) = sleepy.join().unwrap();
        assert_eq!((status, outcome.as_str()), (504, "timeout"));
        assert!(
            took < Duration::from_secs(15),
            "sleep not interrupted: {took:?}"
        );
    });
}

#[test]
fn memory_is_limited_per_service() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    // Grows by `pages` and traps if that failed.
    let grower = |pages: u32| {
        wat(&format!(
            "(module (memory 1) (func (export \"_start\") \
             (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))))"
        ))
    };
    // 100 pages = 6.25 MiB: fits in 16 MiB; 65535 pages (the maximum, 4 GiB) does not.
    deploy(
        &server,
        &grower(100),
        json!({"name": "fits", "memory": "16Mi"}),
    );
    deploy(
        &server,
        &grower(65535),
        json!({"name": "bomb", "memory": "16Mi"}),
    );
    deploy(
        &server,
        &grower(400),
        json!({"name": "over", "memory": "16Mi"}),
    );
    assert_eq!(run(&server, "fits", "").0, 200);
    let (status, outcome, body) = run(&server, "bomb", "");
    assert_eq!((status, outcome.as_str()), (500, "trap"), "{}", text(&body));
    assert_eq!(run(&server, "over", "").1, "trap");

    // A loop growing a page at a time until refused, then trapping.
    let creep = wat("(module (memory 1) (func (export \"_start\") \
         (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable))");
    deploy(&server, &creep, json!({"name": "creep", "memory": "32Mi"}));
    assert_eq!(run(&server, "creep", "").1, "trap");
    assert_eq!(run(&server, "fits", "").0, 200);
}

#[test]
fn unbounded_recursion_traps() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let recurse = wat("(module (func $f (call $f)) (func (export \"_start\") (call $f)))");
    deploy(&server, &recurse, json!({"name": "recurse"}));
    let (status, outcome, body) = run(&server, "recurse", "");
    assert_eq!((status, outcome.as_str()), (500, "trap"));
    assert!(
        text(&body).contains("call stack exhausted"),
        "{}",
        text(&body)
    );
}

#[test]
fn output_limits_stop_a_module_filling_the_disk() {
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &[
            "--max-output",
            "8Mi",
            "--max-output-files",
            "1000",
            "--max-log",
            "64Ki",
        ],
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "timeout": 60}),
    );

    let started = Instant::now();
    let (status, outcome, body) = run(&server, "probe", b64(b"fill $OUT/huge 0\n"));
    assert_eq!(
        (status, outcome.as_str()),
        (500, "limit"),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("more than 8388608 bytes"),
        "{}",
        text(&body)
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    let (status, outcome, body) = run(&server, "probe", b64(b"files 3000\n"));
    assert_eq!(
        (status, outcome.as_str()),
        (500, "limit"),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("more than 1000 output files"),
        "{}",
        text(&body)
    );

    // Exactly at the limits is fine.
    let (status, _, body) = run(&server, "probe", b64(b"fill $OUT/big 8\n"));
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(unb64(&body).len(), 8 << 20);

    // A flood of stdout is cut at --max-log, not fatal.
    let (status, _, body) = run(&server, "probe", b64(b"spam 1048576\n"));
    assert_eq!(status, 200);
    let body = text(&body);
    assert!(
        body.contains("Module output truncated"),
        "{}",
        &body[..body.len().min(2000)]
    );
    assert!(body.len() < 70 * 1024, "{} bytes", body.len());

    eventually("scratch cleanup", || scratch_is_empty(&dir));
}

#[test]
fn symlinks_in_the_output_folder_are_not_followed() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL"}),
    );
    let script = b"symlink /etc/passwd passwd\nsymlink / root\nsymlink ../../../../etc/hostname host\noutput real.txt fine\n";
    let (status, _, body) = run(&server, "probe", b64(script));
    assert_eq!(status, 200, "{}", text(&body));
    // The one regular file is the answer: guests make no links (wasm::no_symlinks), and any
    // found would be skipped.
    assert_eq!(unb64(&body), b"fine");

    let (_, _, body) = run(
        &server,
        "probe",
        b64(b"symlink /etc/passwd passwd\nsymlink /etc passwd2\n"),
    );
    let body = text(&body);
    assert!(!body.contains("root:"), "{body}");
    assert!(body.contains("symlink passwd: denied"), "{body}");
}

#[test]
fn path_traversal_in_api_names_goes_nowhere() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let c = client();
    for name in [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        "%2E%2E",
        "upper%2F..%2F..%2Flock",
        "..%5Cx",
        "%00",
    ] {
        assert_eq!(
            c.get(server.url(&format!("/system/services/{name}")))
                .send()
                .unwrap()
                .status(),
            404,
            "{name}"
        );
        assert_eq!(
            c.delete(server.url(&format!("/system/services/{name}")))
                .send()
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            c.get(server.url(&format!("/system/modules/{name}")))
                .send()
                .unwrap()
                .status(),
            404
        );
        assert_eq!(
            c.delete(server.url(&format!("/system/modules/{name}")))
                .send()
                .unwrap()
                .status(),
            404
        );
        let put = c
            .put(server.url(&format!("/system/services/{name}/module")))
            .body(guest("uppercase"))
            .send();
        assert_eq!(put.unwrap().status(), 404, "{name}");
        // `/run/..` resolves to `/`, the dashboard's redirect, which takes GET only.
        let status = run(&server, name, "aGk=").0;
        assert!(matches!(status, 404 | 405), "{name}: {status}");
    }
    for name in ["../evil", "a/b", "..", "UPPER", "x\u{0}y"] {
        let r = c
            .post(server.url("/system/services"))
            .json(&json!({"name": name, "image": "x"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
    }
    // Nothing was written outside the expected files.
    let services: Vec<String> = std::fs::read_dir(dir.data().join("services"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(services, ["upper.json"]);
    assert_eq!(run(&server, "upper", "aGk=").2, b"SEk=");
}

#[test]
fn bad_imports_and_oversized_bodies_are_refused() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-body", "1Mi"]);
    let c = client();
    let wrong_signature = wat(
        "(module (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32))) (func (export \"_start\")))",
    );
    let r = c
        .post(server.url("/system/modules"))
        .body(wrong_signature)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("fd_write"));

    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let big = vec![b'A'; 2 << 20];
    // The 413 is sent from Content-Length, before the body is read, and the connection then
    // closes: a client still sending may see the reset before it reads the answer.
    for path in ["/run/upper", "/system/modules"] {
        match c.post(server.url(path)).body(big.clone()).send() {
            Ok(r) => assert_eq!(r.status(), 413, "{path}"),
            Err(e) => assert!(
                format!("{e:?}").contains("reset") || format!("{e:?}").contains("Broken pipe"),
                "{path}: {e:?}"
            ),
        }
    }
    assert_eq!(run(&server, "upper", "{\"a\": ").0, 400);
    assert_eq!(run(&server, "upper", "aGk=").0, 200);
}

#[test]
fn overload_is_refused_at_once_and_the_server_recovers() {
    let dir = TestDir::new();
    let server = Server::start(
        &dir.data(),
        &["--max-concurrency", "4", "--max-queue", "20"],
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "slow", "log_level": "CRITICAL"}),
    );
    let server = &server;
    let results: Vec<(u16, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                scope.spawn(move || {
                    let started = Instant::now();
                    let (status, _, _) = run(server, "slow", b64(b"sleep 300\n"));
                    (status, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok + refused.len(), 200, "only 200 or 503: {results:?}");
    assert!(ok >= 4, "{ok} succeeded");
    assert!(
        !refused.is_empty(),
        "200 calls at concurrency 4 and queue 20 must overflow"
    );
    assert_eq!(run(server, "slow", b64(b"print alive\n")).2, b"alive\n");
}

/// The value of a gauge or counter line of /metrics.
fn metric(server: &Server, name: &str) -> i64 {
    let text = metrics_text(server);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_full_queue_refuses_at_once_without_waiting_for_a_slot() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-concurrency", "2", "--max-queue", "2"]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "slow", "log_level": "CRITICAL"}),
    );
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let server = &server;
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                run(server, "slow", b64(b"sleep 1500\n"));
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        eventually("two running and two queued", || {
            metric(server, "oscar_wasm_running_instances") == 2
                && metric(server, "oscar_wasm_sync_queue_depth") == 2
        });
        // Every slot and place in the queue taken: refused while all four are still there.
        let (status, _, _) = run(server, "slow", b64(b"print refused\n"));
        assert_eq!(status, 503);
        assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), 0);
    });
    assert_eq!(run(server, "slow", b64(b"print alive\n")).2, b"alive\n");
}

#[test]
fn a_client_that_disconnects_stops_its_invocation() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &wat("(module (func (export \"_start\") (loop (br 0))))"),
        json!({"name": "spin", "timeout": 120}),
    );
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "sleepy", "timeout": 120}),
    );
    for (name, body) in [("spin", String::new()), ("sleepy", b64(b"sleep 120000\n"))] {
        let impatient = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        assert!(
            impatient
                .post(server.url(&format!("/run/{name}")))
                .body(body)
                .send()
                .is_err()
        );
        eventually("the cancelled invocation's cleanup", || {
            scratch_is_empty(&dir)
        });
    }
    eventually("two cancellations in the log", || {
        server.log_text().matches("client went away").count() >= 2
    });
}
