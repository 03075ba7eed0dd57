//! Authentication as OSCAR does it: basic auth for /system, the service token (or the admin)
//! for /run; the server refuses to start exposed without a password.

mod common;

use common::*;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret-pass";

fn admin(req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
    req.basic_auth("oscar", Some(PASSWORD))
}

fn create(server: &Server, name: &str, digest: &str) -> String {
    let r = admin(client().post(server.url("/system/services")))
        .json(&json!({"name": name, "module": digest}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn system_routes_need_the_admin() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", PASSWORD]);
    let c = client();
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
    for path in ["/system/services", "/system/info", "/system/modules"] {
        let r = c.get(server.url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert_eq!(
            c.get(server.url(path))
                .basic_auth("oscar", Some("wrong"))
                .send()
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            c.get(server.url(path))
                .basic_auth("root", Some(PASSWORD))
                .send()
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            c.get(server.url(path))
                .bearer_auth(PASSWORD)
                .send()
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            admin(c.get(server.url(path))).send().unwrap().status(),
            200,
            "{path}"
        );
    }
    let r = c
        .post(server.url("/system/modules"))
        .body(guest("uppercase"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        std::fs::read_dir(dir.data().join("modules"))
            .unwrap()
            .next()
            .is_none(),
        "nothing stored"
    );
}

#[test]
fn invocations_need_the_service_token_or_the_admin() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", PASSWORD]);
    let c = client();
    let r = admin(c.post(server.url("/system/modules")))
        .body(guest("uppercase"))
        .send()
        .unwrap();
    let digest = r.json::<Value>().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let upper = create(&server, "upper", &digest);
    let other = create(&server, "other", &digest);
    // The definition carries its token for the admin, as OSCAR's clients expect.
    let got: Value = admin(c.get(server.url("/system/services/upper")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["token"], upper.as_str());

    let post = |name: &str| c.post(server.url(&format!("/run/{name}"))).body("aGk=");
    assert_eq!(post("upper").send().unwrap().status(), 401);
    assert_eq!(
        post("upper")
            .bearer_auth("not-a-token")
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("upper").bearer_auth(&other).send().unwrap().status(),
        403
    );
    let r = post("upper").bearer_auth(&upper).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "SEk=");
    assert_eq!(admin(post("upper")).send().unwrap().status(), 200);
    assert_eq!(
        post("upper")
            .basic_auth("oscar", Some("nope"))
            .send()
            .unwrap()
            .status(),
        401
    );
    // Unknown services: 404 only to someone with valid credentials.
    assert_eq!(admin(post("ghost")).send().unwrap().status(), 404);
    assert_eq!(post("ghost").send().unwrap().status(), 401);
}

#[test]
fn credentials_come_from_flags_env_or_a_config_file() {
    let dir = TestDir::new();
    let config = dir.data().parent().unwrap().join("oscar-wasm.toml");
    std::fs::write(
        &config,
        format!("user = \"alice\"\npassword = \"{PASSWORD}\"\nmax_concurrency = 8\n"),
    )
    .unwrap();
    let config_flag = config.to_string_lossy().into_owned();
    let server = Server::start(&dir.data(), &["--config", &config_flag]);
    let c = client();
    let path = server.url("/system/services");
    assert_eq!(
        c.get(&path)
            .basic_auth("alice", Some(PASSWORD))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(&path)
            .basic_auth("oscar", Some(PASSWORD))
            .send()
            .unwrap()
            .status(),
        401
    );
    drop(server);

    // A flag beats the file.
    let server = Server::start(&dir.data(), &["--config", &config_flag, "--user", "bob"]);
    let path = server.url("/system/services");
    assert_eq!(
        c.get(&path)
            .basic_auth("bob", Some(PASSWORD))
            .send()
            .unwrap()
            .status(),
        200
    );
    drop(server);

    std::fs::write(&config, "no_such_setting = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args(["serve", "--config", &config_flag])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_setting"));
}

#[test]
fn an_exposed_server_needs_a_password_or_insecure() {
    let dir = TestDir::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.data())
        .env_remove("OSCAR_WASM_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without a password") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(
        !dir.data().exists(),
        "refused before touching the data folder"
    );

    // With a password it starts (and is reached over loopback only).
    let server = Server::start(&dir.data(), &["--password", PASSWORD]);
    assert_eq!(
        client().get(server.url("/health")).send().unwrap().status(),
        200
    );
}
