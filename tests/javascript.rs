//! JavaScript services end to end: a definition whose `image` is the JavaScript runtime
//! (`oscar-wasm/javascript:1`) and whose `script` is a script runs it under StarlingMonkey
//! (SpiderMonkey compiled to WebAssembly, from componentize-js), with OSCAR's contract and
//! the sandbox of every module.
//!
//! The runtime is built by runtimes/javascript/build.sh (scripts/test.sh runs it) into
//! runtimes/dist; one server runs every case, since compiling the runtime is the slow part.

mod common;

use common::scripts::*;
use common::*;
use serde_json::{Value, json};

const RUNTIME: &str = "oscar-wasm/javascript:1";

fn create(server: &Server, name: &str, script: &str, extra: Value) -> u16 {
    let (status, text) = create_script_service(server, RUNTIME, name, script, extra);
    assert_eq!(status, 201, "{text}");
    status
}

const UPPER: &str = r#"
const input = readTextFile(env.INPUT_FILE_PATH);
writeFile(env.TMP_OUTPUT_DIR + "/upper.txt", input.toUpperCase());
console.log("upper-cased " + input.length + " characters for " + env.GREETING);
"#;

#[test]
fn javascript_scripts_run_as_services_with_the_file_contract_and_the_sandbox() {
    let dir = TestDir::new();
    let runtimes = runtimes_dir();
    let server = Server::start(&dir.data(), &["--runtimes-dir", &runtimes]);

    create(
        &server,
        "jsupper",
        UPPER,
        json!({"environment": {"variables": {"GREETING": "hola"}}}),
    );
    let (status, outcome, body) = run(&server, "jsupper", b64(b"hello js").into_bytes());
    assert_eq!(
        (status, outcome.as_str()),
        (200, "success"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(unb64(&body), b"HELLO JS");

    // As a job, with the script's output in the log.
    let job = client()
        .post(server.url("/job/jsupper"))
        .body(b64(b"job input"))
        .send()
        .unwrap();
    assert_eq!(job.status(), 201);
    let jobs = wait_jobs(&server, "jsupper", 1);
    let (name, record) = jobs.iter().next().unwrap();
    let log = log_of(&server, "jsupper", name);
    assert_eq!(record["status"], "Succeeded", "{log}");
    assert!(log.contains("upper-cased 9 characters for hola"), "{log}");

    // exit(3) is the status; an uncaught error exits 1 with its stack on the script's line.
    create(
        &server,
        "jsexit",
        "console.log('leaving');\nexit(3);\n",
        json!({}),
    );
    let (status, outcome, body) = run(&server, "jsexit", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:3"), "{body}");
    assert!(body.contains("leaving"), "{body}");
    create(
        &server,
        "jsthrow",
        "function inner() {\n  throw new Error('boom');\n}\ninner();\n",
        json!({}),
    );
    let (status, outcome, body) = run(&server, "jsthrow", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:1"), "{body}");
    assert!(
        body.contains("boom") && body.contains("script.js:2"),
        "{body}"
    );

    // Nothing outside its folders, the input and the script read-only, no network.
    let escape = r#"
for (const path of ["/etc/passwd", "/proc/self/environ", "../../etc/passwd"]) {
  try { readFile(path); console.log("READ " + path); }
  catch (e) { console.log("refused " + path + " " + e.code); }
}
for (const path of [env.INPUT_FILE_PATH, "/oscar/app/script.js"]) {
  try { appendFile(path, "x"); console.log("WROTE " + path); }
  catch (e) { console.log("refused " + path + " " + e.code); }
}
try { await fetch("http://127.0.0.1/"); console.log("FETCHED"); }
catch (e) { console.log("refused fetch " + e.name); }
"#;
    create(&server, "jsescape", escape, json!({}));
    let (status, _, body) = run(&server, "jsescape", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("READ") && !body.contains("WROTE") && !body.contains("FETCHED"),
        "{body}"
    );
    assert_eq!(
        body.lines().filter(|l| l.starts_with("refused ")).count(),
        6,
        "{body}"
    );
    // The fetch was refused by the outbound rules (no allowed_outbound_hosts), and the
    // invocation's log says so.
    assert!(
        body.contains(
            "Outbound request refused: http://127.0.0.1:80 is not in allowed_outbound_hosts"
        ),
        "{body}"
    );

    // The service's timeout holds.
    create(
        &server,
        "jsloop",
        "while (true) {}\n",
        json!({"timeout": 2}),
    );
    let (status, outcome, _) = run(&server, "jsloop", b64(b"x").into_bytes());
    assert_eq!((status, outcome.as_str()), (504, "timeout"));

    // And its memory: a script that keeps allocating is stopped, the server keeps serving.
    create(
        &server,
        "jshog",
        "const blocks = [];\nwhile (true) blocks.push(new Uint8Array(8 << 20).fill(1));\n",
        json!({"memory": "96Mi"}),
    );
    let (status, outcome, body) = run(&server, "jshog", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 500, "{body}");
    assert!(
        outcome == "trap" || (outcome == "exit:1" && body.contains("out of memory")),
        "{outcome}: {body}"
    );
    let (status, _, body) = run(&server, "jsupper", b64(b"still here").into_bytes());
    assert_eq!((status, unb64(&body)), (200, b"STILL HERE".to_vec()));

    // A Node module the runtime does not have: a clear error naming it.
    create(
        &server,
        "jsnative",
        "require('child_process');\n",
        json!({}),
    );
    let (status, outcome, body) = run(&server, "jsnative", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:1"), "{body}");
    assert!(
        body.contains("Cannot find module 'child_process'"),
        "{body}"
    );

    // Packages are Python's: a JavaScript script bundles its dependencies.
    let digest = format!("sha256:{}", "0".repeat(64));
    let (status, text) = create_script_service(
        &server,
        RUNTIME,
        "jspkg",
        "console.log(1)",
        json!({"packages": digest}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("bundle"), "{text}");

    from_the_clients_and_a_bucket(&server, &dir);
    a_component_built_by_its_author(&server);
}

/// The example's definition through our CLI (its `script` a file beside it), a file put into
/// its input bucket, and oscar-python's create_service and run_service.
fn from_the_clients_and_a_bucket(server: &Server, dir: &TestDir) {
    let answer = apply_and_run(
        server,
        "examples/javascript/word-frequency/service.yaml",
        "word-frequency-js",
        b"To be, or not to be",
    );
    let counts: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        counts,
        json!({"words": 6, "distinct": 4, "top": [["be", 2], ["to", 2], ["not", 1], ["or", 1]]})
    );
    let (log, counts) = counted_from_bucket(
        server,
        "words-js",
        "word-frequency-js",
        b"the rest is silence, the rest",
    );
    assert!(log.contains("counted 6 words, 4 distinct"), "{log}");
    assert_eq!(counts["top"][0], json!(["rest", 2]));
    let sum = "const n = readTextFile(env.INPUT_FILE_PATH).split(/\\s+/).filter(Boolean);\n\
writeFile(env.TMP_OUTPUT_DIR + '/sum.txt', String(n.reduce((a, b) => a + Number(b), 0)));\n";
    let answer = through_oscar_python(server, dir, (RUNTIME, "jssum"), ("sum.js", sum), "1 2 3 4");
    assert_eq!(answer, "10");
}

/// The example its author builds with componentize-js
/// (examples/javascript/component/build.sh, which scripts/test.sh runs): a `wasi:cli/command`
/// component uploaded by `service apply` and run like any module.
fn a_component_built_by_its_author(server: &Server) {
    let answer = apply_and_run(
        server,
        "examples/javascript/component/service.yaml",
        "reverse-lines-js",
        b"one\ntwo\nthree\n",
    );
    assert_eq!(answer, "three\ntwo\none\n");
}
