//! Python services end to end: a definition whose `image` is the Python runtime
//! (`oscar-wasm/python:3.14`) and whose `script` is a Python program runs that program under
//! CPython compiled to WebAssembly, with OSCAR's contract and the sandbox of every module.
//!
//! The runtime is built by runtimes/python/build.sh (scripts/test.sh runs it) into
//! runtimes/dist; one server runs every case, since compiling the 31 MB runtime is the slow
//! part and each server does it once.

mod common;

use common::scripts::*;
use common::*;
use serde_json::{Value, json};

const RUNTIME: &str = "oscar-wasm/python:3.14";

fn create(server: &Server, name: &str, script: &str, extra: Value) -> (u16, String) {
    create_script_service(server, RUNTIME, name, script, extra)
}

const UPPER: &str = r#"
import os, sys, json, hashlib, csv, re, zipfile, gzip, base64, datetime, statistics
source = os.environ["INPUT_FILE_PATH"]
with open(source, "rb") as f:
    data = f.read()
out = os.environ["TMP_OUTPUT_DIR"]
with open(os.path.join(out, "upper.txt"), "wb") as f:
    f.write(data.upper())
print("sha256", hashlib.sha256(data).hexdigest(), "greeting", os.environ.get("GREETING"))
"#;

#[test]
fn python_scripts_run_as_services_with_the_file_contract_and_the_sandbox() {
    let dir = TestDir::new();
    let runtimes = runtimes_dir();
    let server = Server::start(&dir.data(), &["--runtimes-dir", &runtimes]);

    // The runtime compiles once (Cranelift, 31 MB); the service answers from then on.
    let (status, text) = create(
        &server,
        "pyupper",
        UPPER,
        json!({"environment": {"variables": {"GREETING": "hola"}}}),
    );
    assert_eq!(status, 201, "{text}");
    let (status, outcome, body) = run(&server, "pyupper", b64(b"hello python").into_bytes());
    assert_eq!(
        (status, outcome.as_str()),
        (200, "success"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(unb64(&body), b"HELLO PYTHON");

    // As a job: the output kept, the script's print in the log.
    let job = client()
        .post(server.url("/job/pyupper"))
        .body(b64(b"job input"))
        .send()
        .unwrap();
    assert_eq!(job.status(), 201);
    let jobs = wait_jobs(&server, "pyupper", 1);
    let (name, record) = jobs.iter().next().unwrap();
    assert_eq!(
        record["status"],
        "Succeeded",
        "{}",
        log_of(&server, "pyupper", name)
    );
    let log = log_of(&server, "pyupper", name);
    assert!(log.contains("greeting hola"), "{log}");
    let hash = hex_sha256(b"job input");
    assert!(log.contains(&hash), "{log}");

    // A second service shares the compiled runtime: its creation does not compile again.
    let (status, text) = create(
        &server,
        "pyexit",
        "import sys\nprint('leaving')\nsys.exit(3)\n",
        json!({}),
    );
    assert_eq!(status, 201, "{text}");
    let (status, outcome, body) = run(&server, "pyexit", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:3"), "{body}");
    assert!(body.contains("leaving"), "{body}");

    // An exception: exit status 1 and the traceback, naming the script's line.
    let raises = "def f():\n    raise ValueError('bad input')\nf()\n";
    assert_eq!(create(&server, "pyraise", raises, json!({})).0, 201);
    let (status, outcome, body) = run(&server, "pyraise", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:1"), "{body}");
    assert!(
        body.contains("ValueError: bad input") && body.contains("line 2"),
        "{body}"
    );

    // A native extension without a wasm build: a clear ImportError, not a crash.
    assert_eq!(
        create(&server, "pynative", "import ctypes\n", json!({})).0,
        201
    );
    let (status, _, body) = run(&server, "pynative", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("No module named 'ctypes'"), "{body}");

    // Nothing outside its folders: the host's files and the other folders are not there,
    // the input and the script are read-only.
    let escape = r#"
import os
for path in ["/etc/passwd", "/proc/self/environ", "../../etc/passwd"]:
    try:
        open(path).read()
        print("READ", path)
    except OSError as e:
        print("refused", path, type(e).__name__)
for path in [os.environ["INPUT_FILE_PATH"], "/oscar/app/script.py"]:
    try:
        open(path, "a").write("x")
        print("WROTE", path)
    except OSError as e:
        print("refused", path, type(e).__name__)
try:
    os.listdir("/")
    print("LISTED /")
except OSError as e:
    print("refused / " + type(e).__name__)
# No links either (preview 2's symlink-at): a link could lead the store out of a bucket.
try:
    os.symlink("..", os.path.join(os.environ["TMP_OUTPUT_DIR"], "up"))
    print("LINKED")
except OSError as e:
    print("refused link " + type(e).__name__)
"#;
    assert_eq!(create(&server, "pyescape", escape, json!({})).0, 201);
    let (status, _, body) = run(&server, "pyescape", b64(b"x").into_bytes());
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("READ")
            && !body.contains("WROTE")
            && !body.contains("LISTED")
            && !body.contains("LINKED"),
        "{body}"
    );
    assert_eq!(body.matches("refused").count(), 7, "{body}");
    assert!(body.contains("refused link PermissionError"), "{body}");

    // The service's limits hold: a loop that never ends stops at its timeout.
    let (status, text) = create(
        &server,
        "pyloop",
        "while True:\n    pass\n",
        json!({"timeout": 2}),
    );
    assert_eq!(status, 201, "{text}");
    let (status, outcome, _) = run(&server, "pyloop", b64(b"x").into_bytes());
    assert_eq!((status, outcome.as_str()), (504, "timeout"));

    // And its memory: a script that keeps allocating is stopped, the server keeps serving.
    let hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20))\n";
    assert_eq!(
        create(&server, "pyhog", hog, json!({"memory": "96Mi"})).0,
        201
    );
    let (status, outcome, body) = run(&server, "pyhog", b64(b"x").into_bytes());
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert!(outcome == "exit:1" || outcome == "trap", "{outcome}");
    assert!(
        String::from_utf8_lossy(&body).contains("MemoryError") || outcome == "trap",
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = run(&server, "pyupper", b64(b"still here").into_bytes());
    assert_eq!((status, unb64(&body)), (200, b"STILL HERE".to_vec()));

    // A runtime image without a script, or an unknown runtime version: 400, saying why.
    let (status, text) = create(&server, "pyempty", "", json!({}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("script"), "{text}");
    let response = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "pyold", "image": "oscar-wasm/python:2.7", "script": "print(1)"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("oscar-wasm/python:3.14"));

    from_the_clients_and_a_bucket(&server, &dir);
    a_component_built_by_its_author(&server);
    with_packages(&server, &dir);
}

/// Pure-Python packages: a zip uploaded to /system/packages and named by digest, or a folder
/// `service apply` zips and uploads (here `tabulate`, installed from PyPI with pip).
fn with_packages(server: &Server, dir: &TestDir) {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("greet/__init__.py", options).unwrap();
    zip.write_all(b"from .words import WORD\ndef hello(name):\n    return f'{WORD}, {name}'\n")
        .unwrap();
    zip.start_file("greet/words.py", options).unwrap();
    zip.write_all(b"WORD = 'hola'\n").unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let response = client()
        .post(server.url("/system/packages"))
        .body(zip)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().unwrap();
    assert_eq!(stored["files"], 2);
    let digest = stored["digest"].as_str().unwrap().to_string();
    let script = "import os, greet\nname = open(os.environ['INPUT_FILE_PATH']).read()\n\
open(os.path.join(os.environ['TMP_OUTPUT_DIR'], 'out.txt'), 'w').write(greet.hello(name))\n\
print(greet.__file__)\n";
    let (status, text) = create(server, "pygreet", script, json!({"packages": digest}));
    assert_eq!(status, 201, "{text}");
    let (status, outcome, body) = run(server, "pygreet", b64(b"mundo").into_bytes());
    assert_eq!((status, outcome.as_str()), (200, "success"));
    assert_eq!(unb64(&body), b"hola, mundo");

    // What cannot be a package, or a package never uploaded: 400, saying why.
    let response = client()
        .post(server.url("/system/packages"))
        .body("not a zip")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, text) = create(server, "pynopkg", "print(1)", json!({"packages": unknown}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("/system/packages"), "{text}");

    // The example: tabulate from PyPI in its lib folder, zipped and uploaded by the CLI.
    let example = dir.data().parent().unwrap().join("csv-table");
    std::fs::create_dir_all(&example).unwrap();
    for file in ["script.py", "service.yaml"] {
        std::fs::copy(
            repo_root().join("examples/python/csv-table").join(file),
            example.join(file),
        )
        .unwrap();
    }
    let pip = std::process::Command::new(test_python())
        .args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(example.join("lib"))
        .arg("tabulate==0.9.0")
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "{}",
        String::from_utf8_lossy(&pip.stderr)
    );
    let service = example.join("service.yaml");
    let table = apply_and_run(
        server,
        service.to_str().unwrap(),
        "csv-table",
        b"name,qty\napple,3\npear,5\n",
    );
    assert_eq!(
        table,
        "| name   |   qty |\n|--------|-------|\n| apple  |     3 |\n| pear   |     5 |\n"
    );
}

/// The example's definition through our CLI (its `script` a file beside it), a file put into
/// its input bucket, and oscar-python's create_service and run_service: the same service
/// each way, answered by the same runtime.
fn from_the_clients_and_a_bucket(server: &Server, dir: &TestDir) {
    let answer = apply_and_run(
        server,
        "examples/python/word-frequency/service.yaml",
        "word-frequency",
        b"To be, or not to be",
    );
    let counts: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        counts,
        json!({"words": 6, "distinct": 4, "top": [["to", 2], ["be", 2], ["or", 1], ["not", 1]]})
    );
    let (log, counts) = counted_from_bucket(
        server,
        "words",
        "word-frequency",
        b"the rest is silence, the rest",
    );
    assert!(log.contains("counted 6 words, 4 distinct"), "{log}");
    assert_eq!(counts["top"][0], json!(["the", 2]));
    let sum = "import os\nnumbers = open(os.environ['INPUT_FILE_PATH']).read().split()\n\
open(os.path.join(os.environ['TMP_OUTPUT_DIR'], 'sum.txt'), 'w').write(str(sum(map(int, numbers))))\n";
    let answer = through_oscar_python(server, dir, (RUNTIME, "pysum"), ("sum.py", sum), "1 2 3 4");
    assert_eq!(answer, "10");
}

#[test]
fn a_server_without_the_runtime_says_how_to_get_it() {
    let dir = TestDir::new();
    let missing = dir.data().join("no-runtimes");
    let server = Server::start(&dir.data(), &["--runtimes-dir", missing.to_str().unwrap()]);
    let (status, text) = create(&server, "py", "print(1)", json!({}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("runtimes/python/build.sh"), "{text}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The example its author builds with componentize-py
/// (examples/python/component/build.sh, which scripts/test.sh runs): a `wasi:cli/command`
/// component uploaded by `service apply` and run like any module.
fn a_component_built_by_its_author(server: &Server) {
    let answer = apply_and_run(
        server,
        "examples/python/component/service.yaml",
        "reverse-lines",
        b"one\ntwo\nthree\n",
    );
    assert_eq!(answer, "three\ntwo\none\n");
}
