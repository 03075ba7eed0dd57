//! Issue 24's hostile review of the many-user model, as one server run: two OIDC users with
//! their own store keys, an anonymous client, modules and a registry under the attacker's
//! control, against a server started as operators start it (no `--allow-local-endpoints`,
//! 256 open files). Each step is a finding that once leaked or allocated without bound; the
//! run ends by checking that the server still answers.

mod common;

use common::idp::{Idp, as_admin, with};
use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const GROUP: &str = "vo.test.eu";
const SECRET: &[u8] = b"alice's secret";

/// A listener that counts the connections made to it and answers none.
fn trap(ip: &str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, hits)
}

/// A registry under the attacker's control: a manifest too large to hold, a token realm and a
/// redirect pointing at `internal`, a token answer too large to hold.
fn hostile_registry(internal: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (internal, me) = (internal.to_string(), host.clone());
    std::thread::spawn(move || {
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::routing::get;
        let challenge = |realm: String| {
            move || {
                let realm = realm.clone();
                async move {
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        format!("Bearer realm=\"{realm}\",service=\"x\"")
                            .parse()
                            .unwrap(),
                    );
                    (StatusCode::UNAUTHORIZED, headers, "")
                }
            }
        };
        let redirect = format!("http://{internal}/v2/x/manifests/latest");
        let app = axum::Router::new()
            // 64 MiB of manifest, streamed without a length.
            .route(
                "/v2/huge/manifests/latest",
                get(|| async {
                    let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
                    let stream = futures::stream::iter(
                        (0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    );
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/vnd.oci.image.manifest.v1+json",
                        )],
                        axum::body::Body::from_stream(stream),
                    )
                }),
            )
            .route(
                "/v2/realm/manifests/latest",
                get(challenge(format!("http://{internal}/token"))),
            )
            .route(
                "/v2/bigtoken/manifests/latest",
                get(challenge(format!("http://{me}/token"))),
            )
            .route(
                "/token",
                get(|| async { format!("{{\"token\": \"{}\"}}", "t".repeat(8 << 20)) }),
            )
            .route(
                "/v2/redirect/manifests/latest",
                get(move || {
                    let redirect = redirect.clone();
                    async move { axum::response::Redirect::temporary(&redirect) }
                }),
            );
        listener.set_nonblocking(true).unwrap();
        rt().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    host
}

/// A module whose `_start` grows a table by 33 million entries and exits 0 only if refused.
fn table_bomb() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (table 0 funcref)
          (func (export "_start")
            (call $exit (i32.ne (table.grow (ref.null func) (i32.const 33000000)) (i32.const -1)))))"#,
    )
    .unwrap()
}

#[test]
fn one_user_never_reaches_anothers_data() {
    let idp = Idp::start();
    for (sub, name) in [("alice-sub", "Alice"), ("bob-sub", "Bob")] {
        idp.user(
            sub,
            json!({"name": name, "group_membership": [format!("/{GROUP}")]}),
        );
    }
    let (alice, bob) = (
        idp.token("alice-sub", json!({})),
        idp.token("bob-sub", json!({})),
    );
    let (internal, internal_hits) = trap("127.0.0.2");
    let (unlisted, unlisted_hits) = trap("127.0.0.1");
    let registry = hostile_registry(&internal);
    let dir = TestDir::new();
    let server = Server::start_strict(
        &dir.data(),
        &[
            "--password",
            "pw",
            "--oidc-issuer",
            &idp.issuer,
            "--oidc-group",
            GROUP,
            "--insecure-registry",
            &registry,
            "--max-json-body",
            "1Mi",
            "--header-timeout",
            "2",
        ],
        256,
    );
    let c = client();
    let (endpoint, alice_key, alice_secret) = user_store_keys(&server, &alice);
    let (_, bob_key, bob_secret) = user_store_keys(&server, &bob);
    let bob_keys = (bob_key.as_str(), bob_secret.as_str());
    for (token, bucket) in [(&alice, "alice-data"), (&bob, "bob-data")] {
        let (status, text) = with(
            token,
            c.post(server.url("/system/buckets"))
                .json(&json!({"bucket_name": bucket})),
        );
        assert_eq!(status, 201, "{text}");
    }
    let alice_store = s3(&endpoint, "alice-data", &alice_key, &alice_secret);
    put(&alice_store, "secret.txt", SECRET).unwrap();
    let still_hers = || get(&alice_store, "secret.txt").as_deref() == Some(SECRET);
    let bob_store = s3(&endpoint, "bob-data", &bob_key, &bob_secret);
    put(&bob_store, "own.txt", b"bob's").unwrap();
    // The raw client itself works: Bob reads his own object with it.
    let (status, body) = s3_raw(&endpoint, "GET", "/bob-data/own.txt", &[], b"", bob_keys);
    assert_eq!((status, body.as_str()), (200, "bob's"));

    // 1. Copies name a second object, whose bucket is checked too.
    let (status, body) = s3_raw(
        &endpoint,
        "PUT",
        "/bob-data/stolen.txt",
        &[("x-amz-copy-source", "/alice-data/secret.txt")],
        b"",
        bob_keys,
    );
    assert_eq!(status, 403, "CopyObject out of Alice's bucket: {body}");
    assert!(get(&bob_store, "stolen.txt").is_none());
    let (status, body) = s3_raw(
        &endpoint,
        "POST",
        "/bob-data/part.bin?uploads",
        &[],
        b"",
        bob_keys,
    );
    assert_eq!(status, 200, "{body}");
    let upload_id = body
        .split("<UploadId>")
        .nth(1)
        .and_then(|s| s.split("</UploadId>").next())
        .unwrap()
        .to_string();
    let (status, body) = s3_raw(
        &endpoint,
        "PUT",
        &format!("/bob-data/part.bin?partNumber=1&uploadId={upload_id}"),
        &[("x-amz-copy-source", "alice-data/secret.txt")],
        b"",
        bob_keys,
    );
    assert_eq!(status, 403, "UploadPartCopy out of Alice's bucket: {body}");
    // The administrator's copies still work.
    let (status, body) = s3_raw(
        &endpoint,
        "PUT",
        "/bob-data/copied.txt",
        &[("x-amz-copy-source", "/bob-data/own.txt")],
        b"",
        ("oscar", "oscar"),
    );
    assert_eq!(status, 200, "{body}");

    // 2. Non-canonical keys, in every form and operation, for users and the administrator.
    for path in [
        "/bob-data/../alice-data/secret.txt",
        "/bob-data/%2e%2e/alice-data/secret.txt",
        "/bob-data/%2E%2E/alice-data/secret.txt",
        "/bob-data/./../alice-data/secret.txt",
        "/bob-data//../alice-data/secret.txt",
        "/bob-data/..%5Calice-data%5Csecret.txt",
    ] {
        for keys in [bob_keys, ("oscar", "oscar")] {
            let (status, body) = s3_raw(&endpoint, "GET", path, &[], b"", keys);
            assert!(
                [400, 403].contains(&status) && !body.contains("alice's"),
                "GET {path}: {status} {body}"
            );
        }
        let (status, body) = s3_raw(&endpoint, "PUT", path, &[], b"planted", bob_keys);
        assert!([400, 403].contains(&status), "PUT {path}: {status} {body}");
        let (status, body) = s3_raw(&endpoint, "DELETE", path, &[], b"", bob_keys);
        assert!(
            [400, 403].contains(&status),
            "DELETE {path}: {status} {body}"
        );
        let (status, body) = s3_raw(
            &endpoint,
            "POST",
            &format!("{path}?uploads"),
            &[],
            b"",
            bob_keys,
        );
        assert!(
            [400, 403].contains(&status),
            "multipart {path}: {status} {body}"
        );
    }
    let (status, body) = s3_raw(
        &endpoint,
        "GET",
        "/bob-data/../../store-keys.json",
        &[],
        b"",
        ("oscar", "oscar"),
    );
    assert!(
        [400, 403].contains(&status) && !body.contains("secret_key"),
        "{body}"
    );
    let (status, body) = s3_raw(
        &endpoint,
        "GET",
        "/bob-data?list-type=2&prefix=../alice-data/",
        &[],
        b"",
        bob_keys,
    );
    assert_eq!(status, 400, "a listing prefix with '..': {body}");
    let delete = b"<Delete><Object><Key>../alice-data/secret.txt</Key></Object></Delete>";
    let md5 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(md5_of(delete))
    };
    let (status, body) = s3_raw(
        &endpoint,
        "POST",
        "/bob-data?delete",
        &[("content-md5", &md5), ("content-type", "application/xml")],
        delete,
        bob_keys,
    );
    assert_eq!(status, 400, "DeleteObjects with a '..' key: {body}");
    assert!(still_hers(), "Alice's object was changed or removed");
    assert!(get(&alice_store, "planted.txt").is_none());

    // 3. Presigned URLs: canonical keys in the caller's bucket, browser headers only.
    let presign = |body: Value| {
        with(
            &bob,
            c.post(server.url("/system/buckets/bob-data/presign"))
                .json(&body),
        )
    };
    let (status, text) =
        presign(json!({"object_key": "../alice-data/secret.txt", "operation": "download"}));
    assert_eq!(status, 400, "{text}");
    let (status, text) = presign(json!({"object_key": "in/x.txt", "operation": "upload",
        "extra_headers": {"x-amz-copy-source": "alice-data/secret.txt"}}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("x-amz-copy-source"), "{text}");
    let (status, text) = presign(json!({"object_key": "in/x.txt", "operation": "upload",
        "content_type": "text/plain", "extra_headers": {"x-amz-meta-origin": "dashboard"}}));
    assert_eq!(status, 200, "{text}");
    let (status, _) = with(
        &bob,
        c.post(server.url("/system/buckets/alice-data/presign"))
            .json(&json!({"object_key": "secret.txt", "operation": "download"})),
    );
    assert_eq!(status, 403);

    // 4. A service may name only buckets its creator may give it.
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/modules"))
            .body(guest("uppercase")),
    );
    assert_eq!(status, 201, "{text}");
    let module: Value = serde_json::from_str(&text).unwrap();
    let service = |name: &str, input: &str, output: &str| {
        json!({"name": name, "module": module["digest"], "memory": "64Mi",
            "input": [{"storage_provider": "minio.default", "path": input}],
            "output": [{"storage_provider": "minio.default", "path": output}]})
    };
    for (input, output) in [
        ("bob-data/in", "alice-data/out"),
        ("alice-data/in", "bob-data/out"),
    ] {
        let (status, text) = with(
            &bob,
            c.post(server.url("/system/services"))
                .json(&service("thief", input, output)),
        );
        assert_eq!(status, 403, "{input} -> {output}: {text}");
        assert!(text.contains("alice-data"), "{text}");
    }
    let define = |token: &str, method: &str, name: &str, input: &str, output: &str| {
        let url = server.url("/system/services");
        let request = match method {
            "PUT" => c.put(url),
            _ => c.post(url),
        };
        with(token, request.json(&service(name, input, output)))
    };
    let (status, text) = define(&bob, "POST", "bobs", "bob-data/in", "bob-new/out");
    assert_eq!(status, 201, "his own bucket and a new one: {text}");
    let (status, text) = define(&bob, "PUT", "bobs", "bob-data/in", "alice-data/out");
    assert_eq!(status, 403, "an update naming Alice's bucket: {text}");
    // Alice cannot take Bob's service's new bucket either.
    let (status, text) = define(&alice, "POST", "alices", "bob-new/in", "alice-data/out");
    assert_eq!(status, 403, "{text}");
    // Once Bob's service is gone, the bucket it made is still his (to read, reuse or delete),
    // and still not Alice's.
    let (status, text) = with(&bob, c.delete(server.url("/system/services/bobs")));
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        with(&bob, c.get(server.url("/system/buckets/bob-new"))).0,
        200
    );
    assert_eq!(
        with(&alice, c.get(server.url("/system/buckets/bob-new"))).0,
        403
    );
    let (status, text) = define(&alice, "POST", "alices", "bob-new/in", "alice-data/out");
    assert_eq!(status, 403, "{text}");
    let (status, text) = define(&bob, "POST", "bobs-again", "bob-new/in", "bob-data/out");
    assert_eq!(status, 201, "Bob reuses his bucket: {text}");
    assert_eq!(
        with(&bob, c.get(server.url("/system/buckets/alice-data"))).0,
        403
    );
    assert!(
        get(
            &s3(&endpoint, "alice-data", &bob_key, &bob_secret),
            "secret.txt"
        )
        .is_none()
    );

    // 5. Anonymous browser-form uploads are refused before the body is read.
    let before = rss_kib(&server);
    let form_status = {
        let host = endpoint.trim_start_matches("http://").to_string();
        let mut stream = TcpStream::connect(&host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let size = 48 << 20;
        let head = format!(
            "POST /bob-data HTTP/1.1\r\nhost: {host}\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: {size}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..48 {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).unwrap_or(0);
        String::from_utf8_lossy(&answer[..n]).to_string()
    };
    assert!(form_status.starts_with("HTTP/1.1 501"), "{form_status}");
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 24 * 1024,
        "a form upload grew the server by {grown} KiB"
    );

    // 7. JSON bodies on every route are held to --max-json-body before parsing.
    // Declared: the answer comes before a byte of the body is sent.
    for (method, path) in [
        ("POST", "/system/services"),
        ("PUT", "/system/services"),
        ("POST", "/system/buckets"),
        ("POST", "/system/buckets/bob-data/presign"),
    ] {
        let host = server.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {bob}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            6 << 20
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 256];
        let n = stream.read(&mut answer).unwrap_or(0);
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: {answer}"
        );
    }
    // Streamed without a length: cut off at the cap while reading.
    let before = rss_kib(&server);
    let big = format!("{{\"name\": \"big\", \"x\": [{}1]}}", "1,".repeat(3 << 20));
    let streamed = reqwest::blocking::Body::new(std::io::Cursor::new(big.into_bytes()));
    match c
        .post(server.url("/system/services"))
        .bearer_auth(&bob)
        .body(streamed)
        .send()
    {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server answered and closed while the client was still sending.
        Err(e) => assert!(!e.is_connect() && !e.is_timeout(), "{e}"),
    }
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "6 MiB of JSON grew the server by {grown} KiB"
    );

    // 8. Guest tables are bounded on baseline code too; what the optimizing configuration
    // refuses is refused at upload.
    let digest = {
        let r = c
            .post(server.url("/system/modules"))
            .basic_auth("oscar", Some("pw"))
            .body(table_bomb())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().unwrap()["digest"].clone()
    };
    let (status, text) = as_admin(
        c.post(server.url("/system/services"))
            .json(&json!({"name": "tables", "module": digest, "memory": "64Mi"})),
    );
    assert_eq!(status, 201, "{text}");
    let before = rss_kib(&server);
    let r = c
        .post(server.url("/run/tables"))
        .basic_auth("oscar", Some("pw"))
        .body("")
        .send()
        .unwrap();
    let outcome = r
        .headers()
        .get("x-oscar-wasm-outcome")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        r.status(),
        200,
        "table.grow by 33 million entries succeeded ({outcome:?})"
    );
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "the table grew the server by {grown} KiB"
    );
    let two_memories =
        wat::parse_str(r#"(module (memory 1) (memory 1) (func (export "_start")))"#).unwrap();
    let (status, text) = as_admin(c.post(server.url("/system/modules")).body(two_memories));
    assert_eq!(status, 400, "{text}");

    // 6 and 9. Registries: bounded reads, and nothing on this machine unless listed.
    let create_image = |image: String| {
        as_admin(
            c.post(server.url("/system/services"))
                .json(&json!({"name": "from-image", "image": image})),
        )
    };
    let (status, text) = create_image(format!("{unlisted}/x/y:latest"));
    assert_eq!(status, 400, "an unlisted loopback registry: {text}");
    assert!(text.contains("--insecure-registry"), "{text}");
    assert_eq!(
        unlisted_hits.load(Ordering::SeqCst),
        0,
        "it was connected to"
    );
    let before = rss_kib(&server);
    let (status, text) = create_image(format!("{registry}/huge:latest"));
    assert_eq!(status, 400, "a 64 MiB manifest: {text}");
    assert!(text.contains("limit"), "{text}");
    let (status, text) = create_image(format!("{registry}/bigtoken:latest"));
    assert!(
        text.contains("limit"),
        "an 8 MiB token answer: {status} {text}"
    );
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "registry answers grew the server by {grown} KiB"
    );
    for attack in ["realm", "redirect"] {
        let (status, text) = create_image(format!("{registry}/{attack}:latest"));
        assert_eq!(status, 400, "{attack}: {text}");
    }
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "a token realm or a redirect reached an internal address"
    );

    // 10. The connection cap fits the open-file limit: idle connections past it never starve
    // /health of file descriptors.
    eventually("the lowered cap in the log", || {
        server.log_text().contains("may open only 256 files")
    });
    let idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(server.base.trim_start_matches("http://")).ok())
        .collect();
    let health = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap()
        .get(server.url("/health"))
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    drop(idle);
    assert!(
        !server.log_text().contains("Too many open files"),
        "the server ran out of file descriptors"
    );

    assert!(still_hers());
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), 200);
}

/// MD5 of `bytes`, which S3 asks for on DeleteObjects.
fn md5_of(bytes: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(bytes).to_vec()
}
