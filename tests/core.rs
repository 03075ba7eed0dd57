//! End-to-end tests of the core: deploy services and modules, invoke them synchronously under
//! FaaS Supervisor's rules, the sandbox, durability across `kill -9`. Each test starts the real
//! `oscar-wasm` binary and talks HTTP to it.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn health_and_info() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let r = client().get(server.url("/health")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "Ok");
    let info: Value = client()
        .get(server.url("/system/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for field in [
        "version",
        "git_commit",
        "architecture",
        "kubernetes_version",
        "serverless_backend",
    ] {
        assert!(info.get(field).is_some(), "info lacks {field}: {info}");
    }
    assert_eq!(info["backends"]["wasm"]["available"], true);
    assert_eq!(info["backends"]["kubernetes"]["available"], false);
}

#[test]
fn service_crud_follows_oscar() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let c = client();
    let digest = upload(&server, &guest("uppercase"));
    let definition = json!({
        "name": "upper", "module": digest, "memory": "64Mi", "cpu": "0.5", "vo": "vo.example",
        "input": [{"storage_provider": "minio.default", "path": "in"}], "custom_field": {"kept": [1, 2]}
    });

    let r = c
        .post(server.url("/system/services"))
        .json(&definition)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);

    let got: Value = c
        .get(server.url("/system/services/upper"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    for field in ["memory", "cpu", "vo", "input", "custom_field", "module"] {
        assert_eq!(got[field], definition[field], "field {field} round-trips");
    }
    assert_eq!(got["token"], token.as_str());

    // Duplicate name.
    let r = c
        .post(server.url("/system/services"))
        .json(&definition)
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);

    // Listed.
    let list: Vec<Value> = c
        .get(server.url("/system/services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "upper");

    // Update keeps the token when the new definition has none.
    let mut updated = definition.clone();
    updated["log_level"] = json!("CRITICAL");
    let r = c
        .put(server.url("/system/services"))
        .json(&updated)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let got: Value = c
        .get(server.url("/system/services/upper"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["log_level"], "CRITICAL");
    assert_eq!(got["token"], token.as_str());

    // Unknown names.
    let mut ghost = definition.clone();
    ghost["name"] = json!("ghost");
    assert_eq!(
        c.put(server.url("/system/services"))
            .json(&ghost)
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(server.url("/system/services/ghost"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(server.url("/system/services/ghost"))
            .send()
            .unwrap()
            .status(),
        404
    );

    // Delete.
    assert_eq!(
        c.delete(server.url("/system/services/upper"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(server.url("/system/services/upper"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn bad_definitions_get_400_naming_the_problem() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let c = client();
    let digest = upload(&server, &guest("uppercase"));
    let missing = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(String, &str)> = vec![
        (
            json!({"name": "Bad_Name", "module": digest}).to_string(),
            "invalid service name",
        ),
        (
            json!({"name": "a".repeat(40), "module": digest}).to_string(),
            "invalid service name",
        ),
        (
            json!({"name": "-x", "module": digest}).to_string(),
            "invalid service name",
        ),
        (json!({"module": digest}).to_string(), "name"),
        (json!({"name": "x"}).to_string(), "module"),
        (
            json!({"name": "x", "module": missing}).to_string(),
            "upload it first",
        ),
        (
            json!({"name": "x", "module": "sha256:xyz"}).to_string(),
            "\"module\"",
        ),
        (
            json!({"name": "x", "module": digest, "memory": "lots"}).to_string(),
            "\"memory\"",
        ),
        (
            json!({"name": "x", "module": digest, "memory": "64Gi"}).to_string(),
            "\"memory\"",
        ),
        (
            json!({"name": "x", "module": digest, "timeout": "soon"}).to_string(),
            "\"timeout\"",
        ),
        (
            // An unknown level is INFO, as in OSCAR; a level that is not a string is refused.
            json!({"name": "x", "module": digest, "log_level": 5}).to_string(),
            "\"log_level\"",
        ),
        ("{not json".to_string(), "not valid JSON"),
        ("[1, 2]".to_string(), "JSON object"),
    ];
    // An image this server cannot reach, with no cluster to leave it to: the registry's
    // failure (502), saying why a cluster would matter.
    for body in [
        json!({"name": "x", "image": "ghcr.invalid/x/y", "script": "echo hi"}),
        json!({"name": "x", "image": "ghcr.invalid/x/y"}),
    ] {
        let r = c
            .post(server.url("/system/services"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 502, "{body}");
        let message = r.text().unwrap();
        assert!(
            message.contains("ghcr.invalid/x/y") && message.contains("Kubernetes"),
            "{message}"
        );
    }
    for (body, expected) in cases {
        let r = c
            .post(server.url("/system/services"))
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let message = r.text().unwrap();
        assert!(
            message.contains(expected),
            "{body} -> {message:?} should mention {expected:?}"
        );
    }
    let list: Vec<Value> = c
        .get(server.url("/system/services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(list.is_empty());
}

#[test]
fn modules_are_content_addressed_validated_and_protected() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let c = client();
    let wasm = guest("uppercase");

    let r = c
        .post(server.url("/system/modules"))
        .body(wasm.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().unwrap();
    let digest = first["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71);
    assert_eq!(first["size"], wasm.len());
    let r = c
        .post(server.url("/system/modules"))
        .body(wasm.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["digest"], digest.as_str());

    let list: Vec<Value> = c
        .get(server.url("/system/modules"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], digest.as_str());
    let bytes = c
        .get(server.url(&format!("/system/modules/{digest}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(bytes.to_vec(), wasm);

    // Refused uploads say why.
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"hello, not wasm".to_vec(), "not a WebAssembly module"),
        (wasm[..wasm.len() / 2].to_vec(), "invalid WebAssembly"),
        (
            wat::parse_str(r#"(module (import "env" "magic" (func)) (func (export "_start")))"#)
                .unwrap(),
            "env::magic",
        ),
        (
            wat::parse_str(r#"(module (func (export "process")))"#).unwrap(),
            "not a WASI command",
        ),
    ];
    for (body, expected) in bad {
        let r = c
            .post(server.url("/system/modules"))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400);
        let message = r.text().unwrap();
        assert!(
            message.contains(expected),
            "{message:?} should mention {expected:?}"
        );
    }

    // In use: 409; unused: deleted.
    let r = c
        .post(server.url("/system/services"))
        .json(&json!({"name": "up", "module": digest}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .delete(server.url(&format!("/system/modules/{digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("up"));
    assert_eq!(
        c.delete(server.url("/system/services/up"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(server.url(&format!("/system/modules/{digest}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(server.url(&format!("/system/modules/{digest}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(server.url("/system/modules/sha256:..%2F..%2Fetc%2Fpasswd"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn run_one_output_file_from_base64_and_json_bodies() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));

    let (status, outcome, body) = run(&server, "upper", "aGVsbG8gd29ybGQK");
    assert_eq!(
        (status, outcome.as_str()),
        (200, "success"),
        "{}",
        text(&body)
    );
    assert_eq!(text(&body), b64(b"HELLO WORLD\n"));

    // base64 as the `base64` tool wraps it.
    let long = "abcdefghij".repeat(20);
    let wrapped: String = b64(long.as_bytes())
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", text(c)))
        .collect();
    let (status, _, body) = run(&server, "upper", wrapped);
    assert_eq!(status, 200);
    assert_eq!(unb64(&body), long.to_uppercase().as_bytes());

    // A JSON object becomes the input file as Python's json.dumps writes it.
    let (status, _, body) = run(
        &server,
        "upper",
        "{\"message\":  \"h\u{e9}llo\",\n \"n\": [1,2.50, true]}",
    );
    assert_eq!(status, 200);
    assert_eq!(
        text(&unb64(&body)),
        r#"{"MESSAGE": "H\U00E9LLO", "N": [1, 2.5, TRUE]}"#
    );

    // An empty body is an empty input file, as in FaaS Supervisor.
    let (status, _, body) = run(&server, "upper", "");
    assert_eq!(status, 200);
    assert_eq!(text(&body), "");
}

#[test]
fn run_several_output_files_returns_a_zip() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("split-lines"),
        json!({"name": "split", "environment": {"variables": {"PREFIX": "> "}}}),
    );
    let (status, _, body) = run(&server, "split", b64(b"one\ntwo\nthree\n"));
    assert_eq!(status, 200, "{}", text(&body));
    let zip_bytes = unb64(&body);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let expected = [
        ("lines/0001.txt", "> one\n"),
        ("lines/0002.txt", "> two\n"),
        ("lines/0003.txt", "> three\n"),
        ("summary.json", "{\"lines\": 3, \"bytes\": 14}\n"),
    ];
    let mut names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        expected
            .iter()
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
    );
    for (name, content) in expected {
        let mut entry = archive.by_name(name).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut got = String::new();
        entry.read_to_string(&mut got).unwrap();
        assert_eq!(got, content, "{name}");
    }
}

#[test]
fn run_without_output_files_returns_logs() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let wasm = guest("sandbox-probe");
    deploy(&server, &wasm, json!({"name": "info", "log_level": "INFO"}));
    deploy(
        &server,
        &wasm,
        json!({"name": "quiet", "log_level": "CRITICAL"}),
    );
    deploy(
        &server,
        &wasm,
        json!({"name": "verbose", "log_level": "DEBUG"}),
    );
    let script = b64(b"print hello\nstderr to stderr\n");

    let (status, _, body) = run(&server, "quiet", script.clone());
    assert_eq!(status, 200);
    assert_eq!(text(&body), "hello\nto stderr\n");

    let (status, _, body) = run(&server, "info", script.clone());
    assert_eq!(status, 200);
    let body = text(&body);
    let lines: Vec<&str> = body.lines().collect();
    assert!(body.ends_with("hello\nto stderr\n"), "{body}");
    let runtime: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(" - supervisor - "))
        .collect();
    assert!(runtime.len() >= 2, "{body}");
    assert!(
        runtime
            .iter()
            .all(|l| l.contains(" - supervisor - INFO - ")),
        "{body}"
    );
    // `YYYY-MM-DD HH:MM:SS,mmm - supervisor - LEVEL - message`
    assert_eq!(&runtime[0][4..5], "-");
    assert_eq!(&runtime[0][19..20], ",");

    let (_, _, body) = run(&server, "verbose", script);
    assert!(
        text(&body).contains(" - supervisor - DEBUG - Input file /tmp/input/event-file-"),
        "{}",
        text(&body)
    );
}

#[test]
fn failing_modules_and_bad_bodies_are_reported_and_the_server_keeps_serving() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL"}),
    );

    let (status, outcome, body) = run(&server, "probe", b64(b"print before\nexit 3\n"));
    assert_eq!((status, outcome.as_str()), (500, "exit:3"));
    let body = text(&body);
    assert!(
        body.contains("exited with status 3") && body.ends_with("before\n"),
        "{body}"
    );

    let (status, outcome, body) = run(&server, "probe", b64(b"panic\n"));
    assert_eq!((status, outcome.as_str()), (500, "trap"));
    let body = text(&body);
    assert!(
        body.contains("unreachable") && body.contains("probe asked to panic"),
        "{body}"
    );

    let (status, _, body) = run(&server, "nope", b64(b"x"));
    assert_eq!(status, 404, "{}", text(&body));

    for (bad, expected) in [
        ("aGVsbG8", "padding"),
        ("!!!!", "base64 alphabet"),
        ("[1,2]", "JSON array"),
        ("42", "JSON number"),
        ("null", "JSON null"),
        ("\"a string\"", "JSON string"),
    ] {
        let (status, _, body) = run(&server, "probe", bad);
        assert_eq!(status, 400, "{bad}");
        assert!(text(&body).contains(expected), "{bad} -> {}", text(&body));
    }

    let (status, _, body) = run(&server, "probe", b64(b"print still here\n"));
    assert_eq!((status, text(&body).as_str()), (200, "still here\n"));
}

#[test]
fn a_module_past_its_timeout_is_stopped() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let spin = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#,
    )
    .unwrap();
    // One core: no CPU-time budget (tests/hardening.rs), the wall-clock timeout alone.
    deploy(
        &server,
        &spin,
        json!({"name": "spin", "timeout": 0.5, "cpu": "1"}),
    );
    let started = std::time::Instant::now();
    let (status, outcome, body) = run(&server, "spin", "");
    assert_eq!(
        (status, outcome.as_str()),
        (504, "timeout"),
        "{}",
        text(&body)
    );
    assert!(
        text(&body).contains("timeout of 0.500 s"),
        "{}",
        text(&body)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_sandbox_exposes_only_the_input_and_output_folders() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL", "environment": {"variables": {"GREETING": "hi"}}}),
    );
    let host_file = dir.data().join("services").join("probe.json");
    assert!(host_file.exists());
    let script = format!(
        "read /etc/passwd\nread $IN/../../../etc/passwd\nread ../etc/passwd\nread $OUT/../input/x\nread {host}\n\
         list /\nlist /tmp\nlist ..\nwrite /tmp/evil x\nwrite $IN/evil x\nwrite $OUT/../evil x\n\
         read $INPUT\nwrite $OUT/fine x\nremove $OUT/fine\nenv\n",
        host = host_file.display()
    );
    let (status, _, body) = run(&server, "probe", b64(script.as_bytes()));
    assert_eq!(status, 200);
    let body = text(&body);
    for line in body.lines() {
        let ok = line.starts_with("read /tmp/input/event-file-")
            || line == "write /tmp/output/fine: ok"
            || line == "remove /tmp/output/fine: ok"
            || line.starts_with("env ");
        if ok {
            assert!(line.contains(": ok") || line.starts_with("env "), "{line}");
        } else {
            assert!(
                line.contains(": denied"),
                "escaped the sandbox: {line}\n{body}"
            );
        }
    }
    assert!(body.contains("read /tmp/input/event-file-"), "{body}");
    let env: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("env "))
        .collect();
    let names: Vec<&str> = env.iter().map(|v| v.split('=').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "GREETING",
            "INPUT_FILE_PATH",
            "TMP_INPUT_DIR",
            "TMP_OUTPUT_DIR"
        ],
        "{body}"
    );
    assert!(env.contains(&"TMP_OUTPUT_DIR=/tmp/output"));
}

#[test]
fn concurrent_invocations_never_see_each_other() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL"}),
    );
    let server = &server;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                scope.spawn(move || {
                    let script = format!("write $OUT/mine-{i} {i}\nsleep 300\nlist $OUT\nlist $IN\nremove $OUT/mine-{i}\n");
                    let (status, _, body) = run(server, "probe", b64(script.as_bytes()));
                    (i, status, text(&body))
                })
            })
            .collect();
        for handle in handles {
            let (i, status, body) = handle.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains(&format!("list /tmp/output: ok [mine-{i}]\n")),
                "{body}"
            );
            let inputs = body
                .lines()
                .find(|l| l.starts_with("list /tmp/input"))
                .unwrap();
            assert_eq!(inputs.matches("event-file-").count(), 1, "{inputs}");
        }
    });
}

#[test]
fn scratch_folders_are_removed_after_every_invocation() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(&server, &guest("sandbox-probe"), json!({"name": "probe"}));
    for script in [
        "output a.txt x\n",
        "output a x\noutput b y\n",
        "print x\n",
        "exit 2\n",
        "panic\n",
    ] {
        run(&server, "probe", b64(script.as_bytes()));
    }
    let left = dir.scratch_left();
    assert!(left.is_empty(), "scratch folders left: {left:?}");
}

#[test]
fn services_and_modules_survive_kill_9_without_recompiling() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &[]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    assert_eq!(
        text(&run(&server, "upper", b64(b"before")).2),
        b64(b"BEFORE")
    );
    let modules = |server: &Server| -> Vec<Value> {
        client()
            .get(server.url("/system/modules"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // Answered on Winch's code; Cranelift's artifact is written in the background.
    eventually("the module to be optimized", || {
        modules(&server)[0]["compiled"] == "optimized"
    });
    server.kill();

    let server = Server::start(&dir.data(), &[]);
    let (status, _, body) = run(&server, "upper", b64(b"after restart"));
    assert_eq!(status, 200);
    assert_eq!(text(&body), b64(b"AFTER RESTART"));
    let log = server.log_text();
    assert!(log.contains("loaded from its compiled artifact"), "{log}");
    assert!(
        !log.contains("compiling") && !log.contains("module compiled"),
        "recompiled after restart:\n{log}"
    );
    let modules = modules(&server);
    assert_eq!(modules.len(), 1);
    assert_eq!(modules[0]["services"], json!(["upper"]));
}

#[test]
fn a_second_server_cannot_share_the_data_folder() {
    let dir = TestDir::new();
    let _server = Server::start(&dir.data(), &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.data())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("another oscar-wasm server"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn put_module_attaches_a_new_version_without_disturbing_running_calls() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "svc", "log_level": "CRITICAL"}),
    );
    let server = &server;
    std::thread::scope(|scope| {
        // A slow call on the old module...
        let slow = scope.spawn(|| run(server, "svc", b64(b"sleep 700\nprint old module\n")));
        eventually("the slow call to start", || !dir.scratch_left().is_empty());
        // ...while the service is switched to the upper-case module.
        let r = client()
            .put(server.url("/system/services/svc/module"))
            .body(guest("uppercase"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let attached: Value = r.json().unwrap();
        let (status, _, body) = slow.join().unwrap();
        assert_eq!((status, text(&body).as_str()), (200, "old module\n"));
        let got: Value = client()
            .get(server.url("/system/services/svc"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(got["module"], attached["digest"]);
        assert_eq!(text(&run(server, "svc", b64(b"new")).2), b64(b"NEW"));
    });
    let r = client()
        .put(server.url("/system/services/ghost/module"))
        .body(guest("uppercase"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .put(server.url("/system/services/svc/module"))
        .body("garbage")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn preview2_command_components_run_too() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let core = guest("uppercase");
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .unwrap()
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    deploy(&server, &component, json!({"name": "upper-p2"}));
    let (status, _, body) = run(&server, "upper-p2", b64(b"component"));
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(text(&body), b64(b"COMPONENT"));
}

/// Many calls at once, half of them leaving files in their output folder and trying to leave
/// some in their input folder, half listing both folders: every call sees only its own input
/// file and an empty output folder, whatever ran before or beside it.
#[test]
fn no_call_ever_sees_another_calls_files() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-concurrency", "8"]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "log_level": "CRITICAL"}),
    );
    let server = &server;
    std::thread::scope(|scope| {
        for thread in 0..8 {
            scope.spawn(move || {
                for call in 0..30 {
                    let id = format!("{thread}-{call}");
                    if call % 2 == 0 {
                        let script = format!(
                            "write $IN/left-{id} x\nwrite $OUT/left-{id} y\nwrite $OUT/more-{id} z\n"
                        );
                        let (status, _, _) = run(server, "probe", b64(script.as_bytes()));
                        assert_eq!(status, 200);
                    } else {
                        let (status, _, body) =
                            run(server, "probe", b64(b"list $IN\nlist $OUT\n"));
                        assert_eq!(status, 200);
                        let body = String::from_utf8_lossy(&body).into_owned();
                        let lines: Vec<&str> = body.lines().collect();
                        assert_eq!(lines.len(), 2, "{body}");
                        let input = lines[0].split(": ok [").nth(1).unwrap_or_else(|| panic!("{body}"));
                        assert!(
                            !input.trim_end_matches(']').contains(',') && !input.contains("left-"),
                            "another call's file is visible: {body}"
                        );
                        assert!(lines[1].ends_with(": ok []"), "output not empty: {body}");
                    }
                }
            });
        }
    });
    assert!(dir.scratch_left().is_empty(), "{:?}", dir.scratch_left());
}

/// `--log-format json`: every line is one JSON object, and a request's lines (the guest's
/// own, from its blocking thread, included) carry its id (the client's `X-Request-ID`) and
/// the trace id of its `traceparent`; the answer names the id, a fresh one when none was sent.
#[test]
fn json_logs_carry_the_request_id_and_trace_id() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--log-format", "json"]);
    deploy(
        &server,
        &guest("uppercase"),
        serde_json::json!({"name": "upper"}),
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client()
        .post(server.url("/run/upper"))
        .header("x-request-id", "client-chosen-1")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .body(b64(b"hi"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-chosen-1");
    let fresh = client()
        .post(server.url("/run/upper"))
        .body(b64(b"hi"))
        .send()
        .unwrap();
    let fresh_id = fresh.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        fresh_id.len() == 32 && fresh_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fresh_id}"
    );
    let lines = || -> Vec<serde_json::Value> {
        server
            .log_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    };
    let succeeded = |id: &str| {
        lines().into_iter().find(|l| {
            l["fields"]["message"] == "invocation succeeded" && l["span"]["request_id"] == id
        })
    };
    let line = eventually_some("the traced invocation's log line", || {
        succeeded("client-chosen-1")
    });
    assert_eq!(line["span"]["trace_id"], trace, "{line}");
    assert_eq!(line["span"]["path"], "/run/upper", "{line}");
    assert_eq!(line["fields"]["service"], "upper", "{line}");
    let line = eventually_some("the other invocation's log line", || succeeded(&fresh_id));
    assert!(line["span"].get("trace_id").is_none(), "{line}");
}

/// A receiver of OTLP/HTTP JSON on loopback: every body posted to /v1/traces, kept.
fn otlp_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        rt().block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| async move {
                    if let Ok(value) = serde_json::from_slice(&body) {
                        sink.lock().unwrap().push(value);
                    }
                    "{}"
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        })
    });
    (endpoint, bodies)
}

/// Every span the receiver got: (name, trace id, span id, parent span id, attributes).
fn received_spans(
    bodies: &std::sync::Mutex<Vec<serde_json::Value>>,
) -> Vec<(String, String, String, String, serde_json::Value)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_lowercase();
    bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                text(&s["name"]),
                text(&s["traceId"]),
                text(&s["spanId"]),
                text(&s["parentSpanId"]),
                s["attributes"].clone(),
            )
        })
        .collect()
}

/// The spans of `trace` at the receiver, once every one of `names` has arrived.
fn spans_of_trace(
    bodies: &std::sync::Mutex<Vec<serde_json::Value>>,
    trace: &str,
    names: &[&str],
) -> Vec<(String, String, String, String, serde_json::Value)> {
    eventually_some(&format!("the spans {names:?} of trace {trace}"), || {
        let spans: Vec<_> = received_spans(bodies)
            .into_iter()
            .filter(|s| s.1 == trace)
            .collect();
        let arrived: Vec<&str> = spans.iter().map(|s| s.0.as_str()).collect();
        names.iter().all(|n| arrived.contains(n)).then_some(spans)
    })
}

/// With OTEL_EXPORTER_OTLP_ENDPOINT set, a /run's spans reach the OTLP receiver: the request
/// continues the caller's `traceparent` (same trace, the caller's span as parent) and carries
/// its request id; admission, instantiation, the guest's run and delivery are its children.
#[test]
fn a_runs_trace_reaches_the_otlp_receiver() {
    let (endpoint, bodies) = otlp_receiver();
    let dir = TestDir::new();
    let server = Server::start_with_env(
        &dir.data(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    deploy(
        &server,
        &guest("uppercase"),
        serde_json::json!({"name": "upper"}),
    );
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = client()
        .post(server.url("/run/upper"))
        .header("x-request-id", "traced-1")
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .body(b64(b"traced"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = spans_of_trace(
        &bodies,
        trace,
        &["request", "admission", "instantiate", "guest", "delivery"],
    );
    let request = spans.iter().find(|s| s.0 == "request").unwrap();
    assert_eq!(
        request.3, caller,
        "the request's parent is the caller's span"
    );
    assert!(
        request.4.to_string().contains("traced-1"),
        "the request id is an attribute: {}",
        request.4
    );
    for child in ["admission", "instantiate", "guest", "delivery"] {
        let span = spans.iter().find(|s| s.0 == child).unwrap();
        assert_eq!(
            span.3, request.2,
            "{child} is a child of the request's span"
        );
    }
    assert!(
        !received_spans(&bodies).iter().any(|s| s.0.contains("wasi")),
        "only this server's spans are exported"
    );

    // A job: accepted in one request's trace, run by a worker in the same trace.
    let job_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let accepted = client()
        .post(server.url("/job/upper"))
        .header("traceparent", format!("00-{job_trace}-{caller}-01"))
        .body(b64(b"a traced job"))
        .send()
        .unwrap();
    assert_eq!(accepted.status(), 201);
    let spans = spans_of_trace(&bodies, job_trace, &["request", "job", "guest"]);
    let request = spans.iter().find(|s| s.0 == "request").unwrap();
    let job = spans.iter().find(|s| s.0 == "job").unwrap();
    assert_eq!(
        job.3, request.2,
        "the job continues the request that accepted it"
    );
    let guest = spans.iter().find(|s| s.0 == "guest").unwrap();
    assert_eq!(guest.3, job.2, "the job's run is a child of the job's span");
}

/// `environment.secrets`: sealed in the stored definition (no value on disk), blank in
/// answers, listed by name, set through PUT .../secrets without resending the definition, and
/// seen by the next invocation, after a restart too.
#[test]
fn secrets_are_sealed_at_rest_listed_by_name_and_set_in_place() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "environment": {"variables": {"V": "plain"}, "secrets": {"S": "first-s3cr3t"}}}),
    );
    let env = |server: &Server| text(&run(server, "probe", b64(b"env\n")).2);
    assert!(env(&server).contains("env S=first-s3cr3t\n"));
    let secrets_url = server.url("/system/services/probe/secrets");
    let r = client()
        .put(&secrets_url)
        .json(&json!({"S": "second-s3cr3t", "T": "another-s3cr3t"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let shown = env(&server);
    assert!(
        shown.contains("env S=second-s3cr3t\n") && shown.contains("env T=another-s3cr3t\n"),
        "{shown}"
    );
    assert!(shown.contains("env V=plain\n"), "{shown}");
    let names: Value = client().get(&secrets_url).send().unwrap().json().unwrap();
    assert_eq!(names, json!({"service": "probe", "secrets": ["S", "T"]}));
    let definition: Value = client()
        .get(server.url("/system/services/probe"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        definition["environment"]["secrets"],
        json!({"S": "", "T": ""})
    );
    assert!(definition.get("oscar_wasm_sealed_secrets").is_none());
    // No value anywhere in the data folder's definitions.
    for entry in std::fs::read_dir(dir.data().join("services")).unwrap() {
        let stored = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!stored.contains("s3cr3t"), "{stored}");
    }
    for (body, why) in [
        (json!({}), "at least one secret"),
        (json!(["S"]), "JSON object"),
        (json!({"S": 1}), "text values"),
        (json!({"A=B": "x"}), "no '='"),
    ] {
        let r = client().put(&secrets_url).json(&body).send().unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.text().unwrap().contains(why), "{body}");
    }
    let sealed = client()
        .post(server.url("/system/services"))
        .json(
            &json!({"name": "forged", "module": upload(&server, &guest("sandbox-probe")),
                      "oscar_wasm_sealed_secrets": "AAAA"}),
        )
        .send()
        .unwrap();
    assert_eq!(sealed.status(), 400);
    server.kill();
    let server = Server::start(&dir.data(), &[]);
    assert!(env(&server).contains("env S=second-s3cr3t\n"));
}

/// `mount`: a folder of the embedded store is a third preopen at `/mnt/<bucket>/<folder>`,
/// read-write, as OSCAR's rclone mounts it: what a guest writes there is an object of the
/// bucket, and what is there it reads; nothing else of the store is reachable.
#[test]
fn a_mounted_bucket_folder_is_read_and_written_by_the_guest_as_objects() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "mount": {"storage_provider": "minio", "path": "shared/data"}}),
    );
    let script = "write /mnt/shared/data/note.txt from the guest\nlist /mnt/shared/data\nlist /mnt/shared\nread /mnt/other/x\n";
    let (status, _, body) = run(&server, "probe", b64(script.as_bytes()));
    assert_eq!(status, 200);
    let body = text(&body);
    assert!(
        body.contains("write /mnt/shared/data/note.txt: ok"),
        "{body}"
    );
    assert!(
        body.contains("list /mnt/shared/data: ok [note.txt]"),
        "{body}"
    );
    // Only the mounted folder: not its bucket, nor another bucket.
    assert!(body.contains("list /mnt/shared: denied"), "{body}");
    assert!(body.contains("read /mnt/other/x: denied"), "{body}");
    // The file is an object of the bucket, listed and read through the API.
    let listed: Value = client()
        .get(server.url("/system/buckets/shared"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["object_name"].as_str())
        .collect();
    assert_eq!(names, ["data/note.txt"], "{listed}");
    // And the next call sees it.
    let (_, _, body) = run(&server, "probe", b64(b"read /mnt/shared/data/note.txt\n"));
    assert!(
        text(&body).contains("read /mnt/shared/data/note.txt: ok 14 bytes"),
        "{}",
        text(&body)
    );
    // A link a guest leaves in the folder (WASI lets it make relative ones) is not followed
    // by the store: here one out to the server's own store keys.
    let folder = dir.data().join("buckets/shared/data");
    std::os::unix::fs::symlink("../../../store-keys.json", folder.join("leak")).unwrap();
    std::os::unix::fs::symlink("../../other", folder.join("linked")).unwrap();
    let download = |key: &str| -> (u16, String) {
        let signed: Value = client()
            .post(server.url("/system/buckets/shared/presign"))
            .json(&json!({"object_key": key, "operation": "download"}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let r = client()
            .get(signed["url"].as_str().unwrap())
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(
        download("data/note.txt"),
        (200, "from the guest".to_string())
    );
    let (status, body) = download("data/leak");
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("secret_key"), "{body}");
    assert_eq!(download("data/linked/x").0, 403);

    // A mount of a store the service does not declare is refused, with the reason (one it
    // declares is copied read-only: tests/storage.rs).
    let digest = upload(&server, &guest("sandbox-probe"));
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "probe2", "module": digest,
            "mount": {"storage_provider": "s3.nowhere", "path": "bkt/f"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let reason = r.text().unwrap();
    assert!(reason.contains("mount.storage_provider"), "{reason}");
}
