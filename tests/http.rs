//! End-to-end tests of HTTP services: the `wasi:http/proxy` example (examples/http/hello,
//! built by examples/http/build.sh) deployed through the API and the CLI, called at OSCAR's
//! exposed path with and without `set_auth`, bodies streamed both ways, its memory and time
//! limits met, and its outbound requests let through or refused by its allow-list.

mod common;

use common::*;
use serde_json::json;

/// An example component built by `script` (run by scripts/test.sh) at `path` under the
/// checkout.
fn built(path: &str, script: &str) -> Vec<u8> {
    let path = repo_root().join(path);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build it first: {script}", path.display()))
}

/// The example HTTP component.
fn hello() -> Vec<u8> {
    built(
        "examples/http/dist/hello-http.wasm",
        "examples/http/build.sh",
    )
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let response = client().get(server.url(path)).send().unwrap();
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

#[test]
fn an_http_component_is_served_at_the_exposed_path_with_paths_and_bodies_as_sent() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &hello(),
        json!({"name": "web", "memory": "64Mi", "expose": {"api_port": 8080}}),
    );
    // It has no folders: a mount is refused with the reason, not ignored.
    let digest = upload(&server, &hello());
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "web-mount", "module": digest,
            "mount": {"storage_provider": "minio.default", "path": "shared/data"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let reason = r.text().unwrap();
    assert!(
        reason.contains("mount") && reason.contains("HTTP service"),
        "{reason}"
    );

    // As OSCAR's ingress rewrites it: the path after /exposed, its trailing slash and the
    // query as sent; the service's root is `/`.
    let (status, text) = get(&server, "/system/services/web/exposed/a/b/?x=1&y=two");
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "Method::Get /a/b/ query=x=1&y=two\n");
    let (status, text) = get(&server, "/system/services/web/exposed");
    assert_eq!((status, text.as_str()), (200, "Method::Get / query=\n"));

    // A body larger than any buffer streams through and back, upper-cased.
    let body: Vec<u8> = (0..8 << 20).map(|i| b"abcdefghij\n"[i % 11]).collect();
    let response = client()
        .post(server.url("/system/services/web/exposed/upper"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let answered = response.bytes().unwrap();
    assert_eq!(answered.len(), body.len());
    assert!(
        answered
            .iter()
            .zip(&body)
            .all(|(a, b)| *a == b.to_ascii_uppercase())
    );

    // It is an HTTP service: /run says where to call it.
    let response = client()
        .post(server.url("/run/web"))
        .body(b64(b"x"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .unwrap()
            .contains("/system/services/web/exposed/")
    );
    // Nor does /job take work it could never run.
    let response = client()
        .post(server.url("/job/web"))
        .body(b64(b"x"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("is an HTTP service"));

    // Its stdout reaches the server's log; its requests are in OSCAR's execution log.
    eventually("the guest's line in the server's log", || {
        server.log_text().contains("served /a/b/")
    });
    let logs = client()
        .get(server.url("/system/logs"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        logs.contains("/system/services/web/exposed/upper"),
        "{logs}"
    );

    // Its usage is accounted as exposed requests: three, the 8 MiB body in and out, the CPU
    // its polls used.
    let usage = eventually_some("the streamed request to be accounted", || {
        let (_, text) = get(&server, "/system/metrics");
        let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
        (summary["totals"]["bytes_out"].as_u64() >= Some(8 << 20)).then_some(summary)
    });
    let totals = &usage["totals"];
    assert_eq!(totals["requests_count_exposed"], 3, "{usage}");
    assert_eq!(totals["requests_count_total"], 0, "{usage}");
    assert_eq!(totals["bytes_in"], 8 << 20, "{usage}");
    assert!(totals["cpu_hours_total"].as_f64().unwrap() > 0.0, "{usage}");
    assert!(totals["peak_memory_bytes"].as_u64().unwrap() > 0, "{usage}");

    // A service that is not an HTTP component has no exposed side.
    deploy(&server, &guest("uppercase"), json!({"name": "files"}));
    let (status, text) = get(&server, "/system/services/files/exposed/");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not an HTTP service"), "{text}");
    assert_eq!(get(&server, "/system/services/nobody/exposed/").0, 404);
}

#[test]
fn set_auth_asks_for_the_service_name_and_token_and_rewrite_target_keeps_the_whole_path() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "admin-secret"]);
    let digest = {
        let response = client()
            .post(server.url("/system/modules"))
            .basic_auth("oscar", Some("admin-secret"))
            .body(hello())
            .send()
            .unwrap();
        assert!(response.status().is_success());
        response.json::<serde_json::Value>().unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let response = client()
        .post(server.url("/system/services"))
        .basic_auth("oscar", Some("admin-secret"))
        .json(&json!({"name": "private-web", "module": digest,
            "expose": {"set_auth": true, "rewrite_target": true}}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let token = response.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.url("/system/services/private-web/exposed/inner/page?q=1");

    let nobody = client().get(&url).send().unwrap();
    assert_eq!(nobody.status(), 401);
    assert!(nobody.headers().contains_key("www-authenticate"));
    let wrong = client()
        .get(&url)
        .basic_auth("private-web", Some("not-the-token"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let allowed = client()
        .get(&url)
        .basic_auth("private-web", Some(&token))
        .send()
        .unwrap();
    assert_eq!(allowed.status(), 200);
    // rewrite_target: the guest sees the whole path, as OSCAR's ingress passes it.
    assert_eq!(
        allowed.text().unwrap(),
        "Method::Get /system/services/private-web/exposed/inner/page query=q=1\n"
    );
    let admin = client()
        .get(&url)
        .basic_auth("oscar", Some("admin-secret"))
        .send()
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[test]
fn memory_and_time_limits_end_a_request_and_the_service_goes_on() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &hello(),
        json!({"name": "bounded", "memory": "32Mi", "timeout": 2,
            "expose": {"api_port": 8080}}),
    );
    let (status, text) = get(&server, "/system/services/bounded/exposed/alloc?mib=8");
    assert_eq!((status, text.as_str()), (200, "allocated 8 MiB\n"));
    let (status, text) = get(&server, "/system/services/bounded/exposed/alloc?mib=64");
    assert_eq!(status, 500, "{text}");
    assert!(text.contains("the service failed"), "{text}");
    let started = std::time::Instant::now();
    let (status, text) = get(&server, "/system/services/bounded/exposed/spin");
    assert_eq!(status, 504, "{text}");
    assert!(text.contains("timeout of 2.000 s"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let (status, _) = get(&server, "/system/services/bounded/exposed/alloc?mib=1");
    assert_eq!(status, 200);
}

/// A loopback HTTP server for outbound requests: `/pong` answers `pong`, `/redirect?to=URL`
/// answers 302 to URL. Returns its port.
fn upstream() -> u16 {
    loopback_http(|_, target| match target.split_once("/redirect?to=") {
        Some((_, to)) => format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        None => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npong".to_string(),
    })
}

fn fetch(server: &Server, service: &str, url: &str) -> String {
    let (status, text) = get(
        server,
        &format!("/system/services/{service}/exposed/fetch?url={url}"),
    );
    assert!(status == 200 || status == 502, "{status} {text}");
    text
}

#[test]
fn outbound_requests_go_where_the_allow_list_says_and_nowhere_else() {
    let dir = TestDir::new();
    // The harness passes --allow-local-endpoints: the list alone decides here.
    let server = Server::start(&dir.data(), &[]);
    let port = upstream();
    let other = upstream();
    deploy(
        &server,
        &hello(),
        json!({"name": "caller", "expose": {"api_port": 8080},
            "allowed_outbound_hosts": [format!("http://127.0.0.1:{port}")]}),
    );
    assert_eq!(
        fetch(&server, "caller", &format!("http://127.0.0.1:{port}/pong")),
        "upstream status 200\npong"
    );
    // Another port, another host name for the same address, and a redirect off the list.
    for refused in [
        format!("http://127.0.0.1:{other}/pong"),
        format!("http://localhost:{port}/pong"),
        format!("http://127.0.0.1:{port}/redirect?to=http://127.0.0.1:{other}/pong"),
    ] {
        let text = fetch(&server, "caller", &refused);
        assert!(text.contains("HttpRequestDenied"), "{refused}: {text}");
    }
    // A service without a list reaches nothing.
    deploy(
        &server,
        &hello(),
        json!({"name": "closed", "expose": {"api_port": 8080}}),
    );
    let text = fetch(&server, "closed", &format!("http://127.0.0.1:{port}/pong"));
    assert!(text.contains("HttpRequestDenied"), "{text}");
    assert!(
        server
            .log_text()
            .contains("is not in allowed_outbound_hosts")
    );

    // A malformed entry is refused at creation.
    let response = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "bad", "module": upload(&server, &hello()),
            "allowed_outbound_hosts": ["api.example.com"]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("has no scheme"));
}

#[test]
fn names_resolving_to_local_addresses_stay_refused_without_allow_local_endpoints() {
    let dir = TestDir::new();
    let server = Server::start_strict(&dir.data(), &[], 4096);
    let port = upstream();
    deploy(
        &server,
        &hello(),
        json!({"name": "strict", "expose": {"api_port": 8080},
            "allowed_outbound_hosts": [format!("http://localhost:{port}"),
                format!("http://127.0.0.1:{port}")]}),
    );
    for url in [
        format!("http://localhost:{port}/pong"),
        format!("http://127.0.0.1:{port}/pong"),
    ] {
        let text = fetch(&server, "strict", &url);
        assert!(text.contains("DestinationIpProhibited"), "{url}: {text}");
    }
    assert!(
        server
            .log_text()
            .contains("on this machine or a private network")
    );
}

#[test]
fn components_of_other_worlds_are_refused_naming_what_is_missing() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    // Exports neither wasi:cli/run nor wasi:http/incoming-handler.
    let nothing = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m)))"#,
    )
    .unwrap();
    let response = client()
        .post(server.url("/system/modules"))
        .body(nothing)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().unwrap();
    assert!(
        text.contains("wasi:cli/command") && text.contains("wasi:http/proxy"),
        "{text}"
    );
    assert!(text.contains("wasi:http/incoming-handler"), "{text}");
}

#[test]
fn the_cli_deploys_the_example_from_its_definition() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let home = tempfile::tempdir().unwrap();
    oscar_cli(
        Some(&server.base),
        home.path(),
        &[
            "service",
            "apply",
            "examples/http/hello/service.yaml",
            "--module",
            "examples/http/dist/hello-http.wasm",
        ],
        b"",
    )
    .ok();
    let definition: serde_json::Value = client()
        .get(server.url("/system/services/hello-http"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(definition["expose"]["set_auth"], true);
    assert_eq!(
        definition["allowed_outbound_hosts"][0],
        "https://api.github.com"
    );
    let token = definition["token"].as_str().unwrap();
    let response = client()
        .get(server.url("/system/services/hello-http/exposed/greeting"))
        .basic_auth("hello-http", Some(token))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "Method::Get /greeting query=\n");
}

/// oscar-python 2.2.0 creates the HTTP service from an FDL file with `expose`, as its users
/// write one for OSCAR (its `script` and `cpu` are required by the client, kept here).
const OSCAR_PYTHON: &str = r##"
import os, sys
from oscar_python.client import Client

endpoint, digest, work = sys.argv[1:4]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "user": "oscar", "password": "pw",
            "ssl": "False"})
with open(os.path.join(work, "script.sh"), "w") as f:
    f.write("#!/bin/sh\n")
fdl = os.path.join(work, "web.yaml")
with open(fdl, "w") as f:
    f.write(f"""functions:
  oscar:
  - wasm:
      name: pyweb
      module: {digest}
      cpu: 0.5
      memory: 64Mi
      script: script.sh
      expose:
        api_port: 8080
        set_auth: true
""")
r = c.create_service(fdl)
assert r.status_code == 201, r.status_code
print("token", c.get_service("pyweb").json()["token"])
"##;

#[test]
fn oscar_python_deploys_an_http_service_from_its_fdl() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "pw"]);
    let stored: serde_json::Value = client()
        .post(server.url("/system/modules"))
        .basic_auth("oscar", Some("pw"))
        .body(hello())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let work = dir.data().parent().unwrap().join("python");
    std::fs::create_dir_all(&work).unwrap();
    let stdout = run_python(
        OSCAR_PYTHON,
        &[
            &server.base,
            stored["digest"].as_str().unwrap(),
            work.to_str().unwrap(),
        ],
        &server,
    );
    let token = stdout.trim().strip_prefix("token ").unwrap();
    let url = server.url("/system/services/pyweb/exposed/from/python");
    assert_eq!(client().get(&url).send().unwrap().status(), 401);
    let response = client()
        .get(&url)
        .basic_auth("pyweb", Some(token))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().unwrap(),
        "Method::Get /from/python query=\n"
    );
}

#[test]
fn a_python_http_component_from_componentize_py_is_served_too() {
    let wasm = built(
        "examples/python/http/dist/hello-http-py.wasm",
        "examples/python/http/build.sh",
    );
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &wasm,
        json!({"name": "pyweb", "expose": {"api_port": 8080}}),
    );
    let (status, text) = get(&server, "/system/services/pyweb/exposed/a/b?x=1");
    assert_eq!((status, text.as_str()), (200, "GET /a/b?x=1 (python)\n"));
    let body: Vec<u8> = (0..1 << 20).map(|i| b"python http\n"[i % 12]).collect();
    let response = client()
        .post(server.url("/system/services/pyweb/exposed/upper"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().unwrap().to_vec(),
        body.to_ascii_uppercase()
    );
}

#[test]
fn a_javascript_http_component_from_componentize_js_is_served_too() {
    let wasm = built(
        "examples/javascript/http/dist/hello-http-js.wasm",
        "examples/javascript/http/build.sh",
    );
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &wasm,
        json!({"name": "jsweb", "expose": {"api_port": 8080}}),
    );
    let (status, text) = get(&server, "/system/services/jsweb/exposed/a/b?x=1");
    assert_eq!((status, text.as_str()), (200, "GET /a/b query=x=1\n"));
    let response = client()
        .post(server.url("/system/services/jsweb/exposed/upper"))
        .body("hello from javascript")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "HELLO FROM JAVASCRIPT");
}

/// A JavaScript script service (the `oscar-wasm/javascript:1` runtime, a command component)
/// whose `fetch()` goes through the same allow-list.
const FETCH_JS: &str = r#"
const url = readTextFile(env.INPUT_FILE_PATH).trim();
const response = await fetch(url);
writeFile(env.TMP_OUTPUT_DIR + "/response.txt", "status " + response.status + "\n" + await response.text());
"#;

#[test]
fn a_file_processing_script_calls_out_only_where_its_list_says() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--runtimes-dir", &runtimes_dir()]);
    let port = upstream();
    let other = upstream();
    let response = client()
        .post(server.url("/system/services"))
        .json(
            &json!({"name": "fetcher", "image": "oscar-wasm/javascript:1", "script": FETCH_JS,
            "allowed_outbound_hosts": [format!("http://127.0.0.1:{port}")]}),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let url = format!("http://127.0.0.1:{port}/pong");
    let (status, outcome, body) = run(&server, "fetcher", b64(url.as_bytes()));
    assert_eq!(
        (status, outcome.as_str()),
        (200, "success"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(unb64(&body), b"status 200\npong");

    // Off the list: fetch() rejects, the script fails, and the server logs why.
    let url = format!("http://127.0.0.1:{other}/pong");
    let (status, outcome, body) = run(&server, "fetcher", b64(url.as_bytes()));
    let body = String::from_utf8_lossy(&body);
    assert_eq!((status, outcome.as_str()), (500, "exit:1"), "{body}");
    assert!(body.contains("NetworkError"), "{body}");
    // The invocation's own log says why.
    assert!(
        body.contains(&format!(
            "Outbound request refused: http://127.0.0.1:{other} is not in allowed_outbound_hosts"
        )),
        "{body}"
    );
}
