//! Services whose `image` names a WebAssembly artifact, against a real registry: the CNCF
//! distribution registry from Debian (`docker-registry`, installed by scripts/test.sh), started
//! on loopback by each test with its own folder.

mod common;

use common::*;
use serde_json::{Value, json};

/// `oscar-wasm push FILE REF` through the real CLI; returns what it printed.
fn push(registry: &Registry, file: &std::path::Path, reference: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    oscar_cli(
        None,
        home.path(),
        &[
            "push",
            file.to_str().unwrap(),
            reference,
            "--insecure-registry",
            &registry.host,
        ],
        b"",
    )
    .ok()
}

fn guest_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, guest(name)).unwrap();
    path
}

/// oscar-python's create_service from an FDL whose `image` is the pushed artifact; the next
/// job runs a new version pushed under the same tag; a deleted tag is a clear error on update.
#[test]
fn push_then_apply_with_oscar_python_then_a_new_version_reaches_the_next_job() {
    let registry = Registry::start();
    let dir = TestDir::new();
    let work = dir.data().parent().unwrap().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let server = Server::start(
        &dir.data(),
        &["--password", "pw", "--insecure-registry", &registry.host],
    );
    let image = format!("{}/tools/upper:1", registry.host);
    let printed = push(&registry, &guest_file(&work, "uppercase"), &image);
    assert!(
        printed
            .trim()
            .starts_with(&format!("{}/tools/upper:1@sha256:", registry.host)),
        "{printed}"
    );

    let script = r##"
import os, sys
from oscar_python.client import Client
endpoint, image, work = sys.argv[1:4]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "user": "oscar", "password": "pw", "ssl": "False"})
with open(os.path.join(work, "script.sh"), "w") as f:
    f.write("#!/bin/sh\n# kept, not run: the image is a wasm module\n")
fdl = os.path.join(work, "upper.yaml")
with open(fdl, "w") as f:
    f.write(f"functions:\n  oscar:\n  - wasm:\n      name: upper\n      image: {image}\n      cpu: 0.5\n      memory: 64Mi\n      script: script.sh\n")
r = c.create_service(fdl)
assert r.status_code == 201, r.text
r = c.run_service("upper", input="hello registry")
import base64
assert base64.b64decode(r.text) == b"HELLO REGISTRY", r.text
print("ok")
"##;
    run_python(
        script,
        &[&server.base, &image, work.to_str().unwrap()],
        &server,
    );
    let admin = |path: &str| admin_json(&server, "pw", path);
    let definition = admin("/system/services/upper");
    assert_eq!(definition["image"], image.as_str());
    let first_module = definition["module"].as_str().unwrap().to_string();
    assert!(
        definition["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        definition["script"]
            .as_str()
            .unwrap()
            .contains("kept, not run")
    );

    // A new version under the same tag: the next job checks the tag and runs it.
    push(&registry, &guest_file(&work, "word-count"), &image);
    let job = client()
        .post(server.url("/job/upper"))
        .basic_auth("oscar", Some("pw"))
        .body(b64(b"one two three"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    let c = client();
    eventually("the job to end", || {
        let jobs: Value = c
            .get(server.url("/system/logs/upper"))
            .basic_auth("oscar", Some("pw"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        jobs["jobs"][&job]["status"] == "Succeeded"
    });
    let log = c
        .get(server.url(&format!("/system/logs/upper/{job}")))
        .basic_auth("oscar", Some("pw"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(log.contains("moved from"), "{log}");
    let definition = admin("/system/services/upper");
    let second_module = definition["module"].as_str().unwrap().to_string();
    assert_ne!(first_module, second_module);
    assert!(
        log.contains(&format!("Running module {second_module}")),
        "{log}"
    );

    // The tag deleted: an update says so, and the service keeps running what it had.
    registry.delete_tag("tools/upper", "1");
    let mut updated = definition.clone();
    updated.as_object_mut().unwrap().remove("module");
    let r = c
        .put(server.url("/system/services"))
        .basic_auth("oscar", Some("pw"))
        .json(&updated)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(&image) && text.contains("not found"),
        "{text}"
    );
    assert_eq!(
        admin("/system/services/upper")["module"],
        second_module.as_str()
    );
}

/// A `wasi/wasm` platform image (a tar layer holding the file its entrypoint names) and the
/// older wasm-to-oci layout both deploy as wasm; each failure names the reference and why.
#[test]
fn other_layouts_and_every_error() {
    let registry = Registry::start();
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--insecure-registry", &registry.host]);
    let upper = guest("uppercase");
    let create = |name: &str, image: &str| {
        let r = client()
            .post(server.url("/system/services"))
            .json(&json!({"name": name, "image": image, "script": "unused"}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };

    let wasi = format!("{}/apps/wasi-image:latest", registry.host);
    let config = json!({"architecture": "wasm", "os": "wasip1",
                        "config": {"Entrypoint": ["/app/upper.wasm"]},
                        "rootfs": {"type": "layers", "diff_ids": []}});
    push_layout(
        &registry,
        &wasi,
        vec![(
            tar_gz("app/upper.wasm", &upper),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
        (
            config.to_string().into_bytes(),
            "application/vnd.oci.image.config.v1+json",
        ),
    );
    let (status, text) = create("wasi-image", &wasi);
    assert_eq!(status, 201, "{text}");
    let (status, _, body) = run(&server, "wasi-image", b64(b"abc"));
    assert_eq!((status, unb64(&body)), (200, b"ABC".to_vec()));

    let legacy = format!("{}/apps/legacy:v1", registry.host);
    push_layout(
        &registry,
        &legacy,
        vec![(upper.clone(), "application/vnd.wasm.content.layer.v1+wasm")],
        (b"{}".to_vec(), "application/vnd.oci.image.config.v1+json"),
    );
    let (status, text) = create("legacy", &legacy);
    assert_eq!(status, 201, "{text}");
    let (status, _, body) = run(&server, "legacy", b64(b"xyz"));
    assert_eq!((status, unb64(&body)), (200, b"XYZ".to_vec()));

    // A container image, with no cluster to run it.
    let linux = format!("{}/apps/linux:1", registry.host);
    push_layout(
        &registry,
        &linux,
        vec![(
            tar_gz("bin/sh", b"#!"),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
        (
            json!({"architecture": "amd64", "os": "linux"})
                .to_string()
                .into_bytes(),
            "application/vnd.oci.image.config.v1+json",
        ),
    );
    // Not WebAssembly inside a wasm artifact.
    let broken = format!("{}/apps/broken:1", registry.host);
    push_layout(
        &registry,
        &broken,
        vec![(b"not wasm at all".to_vec(), "application/wasm")],
        (b"{}".to_vec(), "application/vnd.wasm.config.v0+json"),
    );
    let down = format!("127.0.0.1:{}/apps/x:1", free_port());
    for (image, status, why) in [
        (linux.as_str(), 400, "container image"),
        (broken.as_str(), 400, "not usable"),
        (
            &format!("{}/apps/missing:1", registry.host),
            400,
            "not found",
        ),
        (down.as_str(), 502, "could not be reached"),
        (
            "UPPER CASE is not a reference",
            400,
            "not a valid image reference",
        ),
    ] {
        let (got, text) = create("bad", image);
        assert_eq!(got, status, "{image}: {text}");
        assert!(text.contains(why), "{image}: {text}");
        assert!(text.contains(image), "{image}: {text}");
    }
    // Nothing half-deployed.
    let listed: Vec<Value> = client()
        .get(server.url("/system/services"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["legacy", "wasi-image"]);
}

/// Synchronous calls check a tag in the background (here on every call, --image-refresh 0)
/// and switch once the new version is compiled; a digest reference never moves.
#[test]
fn sync_calls_follow_a_moved_tag_and_digests_stay_pinned() {
    let registry = Registry::start();
    let dir = TestDir::new();
    let work = dir.data().parent().unwrap().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let server = Server::start(
        &dir.data(),
        &[
            "--insecure-registry",
            &registry.host,
            "--image-refresh",
            "0",
        ],
    );
    let tag = format!("{}/tools/moving:1", registry.host);
    let pinned = push(&registry, &guest_file(&work, "uppercase"), &tag)
        .trim()
        .to_string();
    assert!(pinned.contains("@sha256:"), "{pinned}");
    for (name, image) in [("by-tag", tag.as_str()), ("by-digest", pinned.as_str())] {
        let r = client()
            .post(server.url("/system/services"))
            .json(&json!({"name": name, "image": image}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let (status, _, body) = run(&server, name, b64(b"abc"));
        assert_eq!((status, unb64(&body)), (200, b"ABC".to_vec()), "{name}");
    }

    push(&registry, &guest_file(&work, "word-count"), &tag);
    eventually("the tag's service to run the new version", || {
        let (status, _, body) = run(&server, "by-tag", b64(b"abc"));
        status == 200 && unb64(&body) != b"ABC"
    });
    let (_, _, body) = run(&server, "by-digest", b64(b"abc"));
    assert_eq!(unb64(&body), b"ABC");
    // A job of the pinned service does not look at the tag either.
    let job = client()
        .post(server.url("/job/by-digest"))
        .body(b64(b"abc"))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, "by-digest", &job, "Succeeded");
    let log = log_of(&server, "by-digest", &job);
    assert!(!log.contains("moved"), "{log}");
    assert!(log.contains(&format!("from {pinned}")), "{log}");
}

/// A private registry: credentials from a docker config.json, for `oscar-wasm push` and the
/// server; never in an answer or a log line. Without them, the refusal says so.
#[test]
fn private_registries_take_docker_credentials() {
    use base64::Engine as _;
    let registry = Registry::start_with_login("alice", "s3cret-pw");
    let dir = TestDir::new();
    let work = dir.data().parent().unwrap().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let auth_file = work.join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw");
    std::fs::write(
        &auth_file,
        json!({"auths": {registry.host.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let image = format!("{}/private/upper:1", registry.host);
    let module = guest_file(&work, "uppercase");
    let home = tempfile::tempdir().unwrap();
    let push_with = |extra: &[&str]| {
        let mut args = vec![
            "push",
            module.to_str().unwrap(),
            image.as_str(),
            "--insecure-registry",
            registry.host.as_str(),
        ];
        args.extend_from_slice(extra);
        oscar_cli(None, home.path(), &args, b"")
    };
    let refused = push_with(&[]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(refused.stderr.contains("refused access"), "{refused:?}");
    push_with(&["--registry-auth-file", auth_file.to_str().unwrap()]).ok();

    let server = Server::start(
        &dir.data(),
        &[
            "--insecure-registry",
            &registry.host,
            "--registry-auth-file",
            auth_file.to_str().unwrap(),
        ],
    );
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "private", "image": image}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 201, "{text}");
    let (status, _, body) = run(&server, "private", b64(b"abc"));
    assert_eq!((status, unb64(&body)), (200, b"ABC".to_vec()));
    assert!(!text.contains("s3cret") && !server.log_text().contains("s3cret"));

    let other = TestDir::new();
    let anonymous = Server::start(&other.data(), &["--insecure-registry", &registry.host]);
    let r = client()
        .post(anonymous.url("/system/services"))
        .json(&json!({"name": "private", "image": image}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("refused access") && text.contains(&image),
        "{text}"
    );
}

/// A registry that serves a layer whose bytes do not match its digest (a real registry never
/// would; a man in the middle or a broken mirror could): refused, nothing deployed.
#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    use sha2::Digest as _;
    let hex = |bytes: &[u8]| -> String {
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let module = guest("uppercase");
    let mut tampered = module.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": format!("sha256:{}", hex(b"{}")), "size": 2},
        "layers": [{"mediaType": "application/wasm",
                    "digest": format!("sha256:{}", hex(&module)), "size": module.len()}]
    })
    .to_string();
    let manifest_digest = format!("sha256:{}", hex(manifest.as_bytes()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/v2/", get(|| async { "{}" }))
            .route(
                "/v2/evil/wasm/manifests/{reference}",
                get(move || async move {
                    (
                        [
                            (
                                "content-type",
                                "application/vnd.oci.image.manifest.v1+json".to_string(),
                            ),
                            ("docker-content-digest", manifest_digest),
                        ],
                        manifest,
                    )
                }),
            )
            .route(
                "/v2/evil/wasm/blobs/{digest}",
                get(move || async move { tampered }),
            );
        listener.set_nonblocking(true).unwrap();
        rt().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--insecure-registry", &host]);
    let image = format!("{host}/evil/wasm:1");
    let r = client()
        .post(server.url("/system/services"))
        .json(&json!({"name": "evil", "image": image}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(&image) && text.contains("arrived with digest"),
        "{text}"
    );
    let listed = admin_json(&server, "", "/system/services");
    assert_eq!(listed, json!([]));
}
