//! OIDC users as OSCAR has them: a test identity provider on loopback (discovery document,
//! JWKS, userinfo) signs real RS256 tokens with keys made at test time, and rotates them. Two
//! users and the administrator over the API and through oscar-python's OIDC client; every
//! kind of bad token; private, public and restricted services; per-user store keys.

mod common;

use common::idp::*;
use common::minio::FakeMinio;
use common::*;
use serde_json::{Value, json};

const GROUP: &str = "vo.test.eu";

/// A server trusting `idp` for members of GROUP, with an administrator password.
fn server_for(idp: &Idp, dir: &TestDir) -> Server {
    server_with(idp, dir, &[])
}

/// [`server_for`] with `extra` flags.
fn server_with(idp: &Idp, dir: &TestDir, extra: &[&str]) -> Server {
    let mut args = vec![
        "--password",
        "pw",
        "--oidc-issuer",
        &idp.issuer,
        "--oidc-group",
        GROUP,
    ];
    args.extend_from_slice(extra);
    Server::start(&dir.data(), &args)
}

/// Uploads the example module `name` with `token`; returns its digest.
fn upload_as(server: &Server, token: &str, name: &str) -> Value {
    let (status, text) = with(
        token,
        client()
            .post(server.url("/system/modules"))
            .body(guest(name)),
    );
    assert!(status == 200 || status == 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["digest"].clone()
}

fn names(body: &str) -> Vec<String> {
    let mut names: Vec<String> = serde_json::from_str::<Vec<Value>>(body)
        .unwrap_or_else(|e| panic!("{e}: {body}"))
        .iter()
        .map(|s| {
            s.get("name")
                .or_else(|| s.get("bucket_name"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// Alice and Bob (EGI entitlements and Keycloak groups), and the administrator: who sees,
/// invokes, changes and deletes what, services and buckets alike, and each user's own keys
/// for the embedded store.
#[test]
fn users_and_the_admin_get_what_oscar_lets_them() {
    let idp = Idp::start();
    idp.user(
        "alice-sub",
        json!({"name": "Alice Example", "entitlements": [format!("urn:mace:egi.eu:group:{GROUP}:role=member#aai.egi.eu")]}),
    );
    idp.user(
        "bob-sub",
        json!({"name": "Bob", "group_membership": [format!("/{GROUP}")]}),
    );
    idp.user(
        "carol-sub",
        json!({"name": "Carol", "group_membership": ["/other"]}),
    );
    let (alice, bob, carol) = (
        idp.token("alice-sub", json!({})),
        idp.token("bob-sub", json!({})),
        idp.token("carol-sub", json!({})),
    );
    let dir = TestDir::new();
    let server = server_for(&idp, &dir);
    let c = client();

    // Carol is a valid user outside the allowed groups.
    let (status, text) = with(&carol, c.get(server.url("/system/services")));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("carol-sub") && text.contains(GROUP), "{text}");

    // Alice uploads a module and creates three services.
    let digest = upload_as(&server, &alice, "uppercase");
    for (name, extra) in [
        ("a-private", json!({})),
        ("a-public", json!({"visibility": "public"})),
        (
            "a-restricted",
            json!({"visibility": "restricted", "allowed_users": ["bob-sub"]}),
        ),
    ] {
        let mut definition = json!({"name": name, "module": digest, "owner": "someone-else"});
        for (k, v) in extra.as_object().unwrap() {
            definition[k] = v.clone();
        }
        let (status, text) = with(
            &alice,
            c.post(server.url("/system/services")).json(&definition),
        );
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(created["owner"], "alice-sub");
        assert_eq!(created["labels"]["owner_name"], "Alice_Example");
    }

    // Who sees what.
    let list = |token: &str| names(&with(token, c.get(server.url("/system/services"))).1);
    assert_eq!(list(&alice), ["a-private", "a-public", "a-restricted"]);
    assert_eq!(list(&bob), ["a-public", "a-restricted"]);
    assert_eq!(
        names(&as_admin(c.get(server.url("/system/services"))).1),
        ["a-private", "a-public", "a-restricted"]
    );
    assert_eq!(
        with(&bob, c.get(server.url("/system/services/a-private"))).0,
        403
    );
    assert_eq!(
        with(&bob, c.get(server.url("/system/services/a-public"))).0,
        200
    );

    // Bob through oscar-python's OIDC client sees and runs what he may.
    let script = r#"
import sys, base64
from oscar_python.client import Client
endpoint, token = sys.argv[1:3]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "oidc_token": token, "ssl": "False"})
names = sorted(s["name"] for s in c.list_services().json())
assert names == ["a-public", "a-restricted"], names
r = c.run_service("a-restricted", input="from bob")
assert base64.b64decode(r.text) == b"FROM BOB", r.text
try:
    c.get_service("a-private")
    raise SystemExit("a-private should be refused")
except Exception as e:
    assert "403" in str(e) or "Forbidden" in str(e), e
print("ok")
"#;
    run_python(script, &[&server.base, &bob], &server);

    // Who invokes what: OIDC tokens on /run and /job, as oscar-python sends them.
    let run_as = |token: &str, name: &str| {
        with(
            token,
            c.post(server.url(&format!("/run/{name}"))).body(b64(b"hi")),
        )
    };
    assert_eq!(run_as(&bob, "a-public").0, 200);
    assert_eq!(run_as(&bob, "a-restricted").0, 200);
    let (status, text) = run_as(&bob, "a-private");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("bob-sub"), "{text}");
    assert_eq!(run_as(&alice, "a-private").0, 200);
    assert_eq!(run_as(&carol, "a-public").0, 403);
    let (status, text) = with(
        &bob,
        c.post(server.url("/job/a-restricted")).body(b64(b"job")),
    );
    assert_eq!(status, 201, "{text}");
    let job = serde_json::from_str::<Value>(&text).unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("bob's job to succeed", || {
        let (_, text) = with(&alice, c.get(server.url("/system/logs/a-restricted")));
        serde_json::from_str::<Value>(&text).unwrap()["jobs"][&job]["status"] == "Succeeded"
    });
    assert_eq!(
        with(&bob, c.get(server.url("/system/logs/a-private"))).0,
        403
    );
    assert_eq!(
        with(
            &bob,
            c.get(server.url(&format!("/system/logs/a-restricted/{job}")))
        )
        .0,
        200
    );

    // Who changes and deletes: the owner and the administrator.
    let (status, _) = with(&bob, c.delete(server.url("/system/services/a-public")));
    assert_eq!(status, 403);
    let update =
        json!({"name": "a-public", "module": digest, "visibility": "public", "memory": "32Mi"});
    assert_eq!(
        with(&bob, c.put(server.url("/system/services")).json(&update)).0,
        403
    );
    assert_eq!(
        with(&alice, c.put(server.url("/system/services")).json(&update)).0,
        204
    );
    let shown: Value =
        serde_json::from_str(&as_admin(c.get(server.url("/system/services/a-public"))).1).unwrap();
    assert_eq!(
        (shown["owner"].clone(), shown["memory"].clone()),
        (json!("alice-sub"), json!("32Mi"))
    );
    assert_eq!(
        as_admin(c.delete(server.url("/system/services/a-private"))).0,
        204
    );

    // The administrator's own routes.
    for (method, path) in [
        ("GET", "/system/modules"),
        ("GET", "/metrics"),
        ("GET", "/system/logs"),
        ("PUT", "/system/config"),
    ] {
        let request = c
            .request(method.parse().unwrap(), server.url(path))
            .json(&json!({}));
        let (status, text) = with(&bob, request);
        assert_eq!(status, 403, "{method} {path}: {text}");
    }

    // Each user's own keys for the embedded store, from GET /system/config.
    let (endpoint, alice_key, alice_secret) = user_store_keys(&server, &alice);
    let (_, bob_key, bob_secret) = user_store_keys(&server, &bob);
    let admin_config: Value =
        serde_json::from_str(&as_admin(c.get(server.url("/system/config"))).1).unwrap();
    assert!(!alice_key.is_empty() && alice_key != bob_key);
    assert_ne!(
        admin_config["minio_provider"]["access_key"],
        alice_key.as_str()
    );
    assert_eq!(
        user_store_keys(&server, &alice).1,
        alice_key,
        "a user's keys are made once"
    );

    // Alice's private bucket: hers, not Bob's; the administrator sees everything.
    let (status, text) = with(
        &alice,
        c.post(server.url("/system/buckets"))
            .json(&json!({"bucket_name": "alice-data"})),
    );
    assert_eq!(status, 201, "{text}");
    let buckets = |token: &str| names(&with(token, c.get(server.url("/system/buckets"))).1);
    assert!(buckets(&alice).contains(&"alice-data".to_string()));
    assert!(!buckets(&bob).contains(&"alice-data".to_string()));
    assert!(
        names(&as_admin(c.get(server.url("/system/buckets"))).1)
            .contains(&"alice-data".to_string())
    );
    assert_eq!(
        with(&bob, c.get(server.url("/system/buckets/alice-data"))).0,
        403
    );
    assert_eq!(
        with(&bob, c.delete(server.url("/system/buckets/alice-data"))).0,
        403
    );
    let alice_store = s3(&endpoint, "alice-data", &alice_key, &alice_secret);
    put(&alice_store, "notes.txt", b"alice's").unwrap();
    assert_eq!(get(&alice_store, "notes.txt").unwrap(), b"alice's");
    let bob_store = s3(&endpoint, "alice-data", &bob_key, &bob_secret);
    assert!(get(&bob_store, "notes.txt").is_none());
    let refused = put(&bob_store, "mine.txt", b"bob's")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("AccessDenied") || refused.contains("403"),
        "{refused}"
    );
    // Shared with Bob, the bucket is his to read too.
    let (status, text) = with(
        &alice,
        c.put(server.url("/system/buckets"))
            .json(&json!({"bucket_name": "alice-data", "visibility": "restricted", "allowed_users": ["bob-sub"]})),
    );
    assert_eq!(status, 204, "{text}");
    assert_eq!(get(&bob_store, "notes.txt").unwrap(), b"alice's");
    // Users make buckets through the API, which records their owner, not through S3.
    let own = s3(&endpoint, "bob-made", &bob_key, &bob_secret);
    let made = rt().block_on(async {
        use object_store::ObjectStoreExt as _;
        own.put(&object_store::path::Path::from("x"), b"x".to_vec().into())
            .await
    });
    assert!(made.is_err());
}

/// Every kind of bad token gets 401 naming why; a user outside the groups 403; a rotated key
/// is fetched again; oscar-python's OIDC client works with a good token.
#[test]
fn bad_tokens_are_refused_with_the_reason_and_rotation_needs_no_restart() {
    let idp = Idp::start();
    idp.user(
        "dana-sub",
        json!({"name": "Dana", "group_membership": [GROUP]}),
    );
    let dir = TestDir::new();
    let server = server_for(&idp, &dir);
    let c = client();
    let ask = |token: &str| with(token, c.get(server.url("/system/services")));

    let good = idp.token("dana-sub", json!({}));
    assert_eq!(ask(&good).0, 200);
    let expired = idp.token(
        "dana-sub",
        json!({"exp": now() - 3600, "iat": now() - 7200}),
    );
    let early = idp.token("dana-sub", json!({"nbf": now() + 3600}));
    let foreign = idp.token(
        "dana-sub",
        json!({"iss": "https://idp.elsewhere.example/realms/x"}),
    );
    let mut tampered = idp
        .token("dana-sub", json!({}))
        .split('.')
        .map(str::to_string)
        .collect::<Vec<_>>();
    tampered[1] = b64url(
        json!({"iss": idp.issuer, "sub": "admin", "exp": now() + 3600})
            .to_string()
            .as_bytes(),
    );
    let tampered = tampered.join(".");
    for (token, why) in [
        (expired.as_str(), "expired"),
        (early.as_str(), "not valid yet"),
        (foreign.as_str(), "idp.elsewhere.example"),
        (tampered.as_str(), "signature"),
        (
            "not-a-token",
            "neither a service token nor an OIDC access token",
        ),
    ] {
        let (status, text) = ask(token);
        assert_eq!(status, 401, "{why}: {text}");
        assert!(text.contains(why), "{why}: {text}");
    }

    // Rotation: the new key is fetched when a token names it; the old one stops working.
    let old_key = idp.rotate("key-2");
    let rotated = idp.token("dana-sub", json!({}));
    eventually("a token signed with the new key to be accepted", || {
        ask(&rotated).0 == 200
    });
    let stale = old_key.sign(&json!({"iss": idp.issuer, "sub": "dana-sub", "exp": now() + 3600}));
    let (status, text) = ask(&stale);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not publish"), "{text}");

    // oscar-python's OIDC client, with Dana's token.
    let stored = with(
        &rotated,
        c.post(server.url("/system/modules"))
            .body(guest("uppercase")),
    );
    let digest = serde_json::from_str::<Value>(&stored.1).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let work = dir.data().parent().unwrap().join("py");
    std::fs::create_dir_all(&work).unwrap();
    let script = r##"
import os, sys, base64
from oscar_python.client import Client
endpoint, token, digest, work = sys.argv[1:5]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "oidc_token": token, "ssl": "False"})
assert c.get_cluster_info().status_code == 200
config = c.get_cluster_config().json()
assert config["minio_provider"]["access_key"], config
with open(os.path.join(work, "s.sh"), "w") as f:
    f.write("#!/bin/sh\n")
fdl = os.path.join(work, "svc.yaml")
with open(fdl, "w") as f:
    f.write(f"functions:\n  oscar:\n  - wasm:\n      name: dana-upper\n      module: {digest}\n      cpu: 0.5\n      script: s.sh\n")
r = c.create_service(fdl)
assert r.status_code == 201, r.text
assert c.get_service("dana-upper").json()["owner"] == "dana-sub"
r = c.run_service("dana-upper", input="from dana")
assert base64.b64decode(r.text) == b"FROM DANA", r.text
assert [s["name"] for s in c.list_services().json()] == ["dana-upper"]
assert c.create_bucket("dana-files").status_code == 201
assert "dana-files" in [b["bucket_name"] for b in c.list_buckets().json()]
assert c.remove_service("dana-upper").status_code == 204
print("ok")
"##;
    run_python(
        script,
        &[&server.base, &rotated, &digest, work.to_str().unwrap()],
        &server,
    );
}

/// With an external MinIO and `--storage-minio-admin`, each user is made a MinIO user with the
/// keys GET /system/config gives them, and their policy follows the buckets OSCAR's rules open
/// to them; a server whose keys MinIO refuses says so at login.
#[test]
fn users_become_minio_users_whose_policies_follow_their_buckets() {
    let idp = Idp::start();
    for sub in ["dana-sub", "erin-sub"] {
        idp.user(
            sub,
            json!({"name": sub, "group_membership": [format!("/{GROUP}")]}),
        );
    }
    let (dana, erin) = (
        idp.token("dana-sub", json!({})),
        idp.token("erin-sub", json!({})),
    );
    let minio = FakeMinio::start("root", "root-secret-key");
    // A server on that MinIO, signing its admin calls with `secret`.
    let server_on_minio = |dir: &TestDir, secret: &str| {
        server_with(
            &idp,
            dir,
            &[
                "--storage-endpoint",
                &minio.endpoint,
                "--storage-access-key",
                "root",
                "--storage-secret-key",
                secret,
                "--storage-minio-admin",
            ],
        )
    };
    let dir = TestDir::new();
    let server = server_on_minio(&dir, "root-secret-key");
    let c = client();
    let keys = |token: &str| {
        let (status, text) = with(token, c.get(server.url("/system/config")));
        assert_eq!(status, 200, "{text}");
        let config: Value = serde_json::from_str(&text).unwrap();
        let provider = &config["minio_provider"];
        (
            provider["access_key"].as_str().unwrap().to_string(),
            provider["secret_key"].as_str().unwrap().to_string(),
        )
    };

    // Dana's first request makes her a MinIO user with the keys she is given.
    let (dana_key, dana_secret) = keys(&dana);
    assert!(!dana_key.is_empty() && dana_key != "root");
    let state = minio.state();
    assert_eq!(
        state["users"][&dana_key]["secretKey"],
        json!(dana_secret),
        "{state}"
    );
    assert_eq!(state["users"][&dana_key]["status"], "enabled");
    assert_eq!(state["refused"], 0, "a request MinIO would refuse: {state}");
    assert!(minio.buckets_of(&dana_key).is_empty());

    // Her new bucket reaches her policy; Erin's policy has none of it.
    let (status, text) = with(
        &dana,
        c.post(server.url("/system/buckets"))
            .json(&json!({"bucket_name": "dana-data"})),
    );
    assert_eq!(status, 201, "{text}");
    eventually("Dana's policy to grant her bucket", || {
        minio.buckets_of(&dana_key) == ["dana-data"]
    });
    let (erin_key, _) = keys(&erin);
    assert_ne!(erin_key, dana_key);
    assert!(minio.buckets_of(&erin_key).is_empty(), "{}", minio.state());

    // Shared with Erin: her policy follows; made private again: it goes.
    let share = |visibility: &str, users: Value| {
        let (status, text) = with(
            &dana,
            c.put(server.url("/system/buckets")).json(&json!({
                "bucket_name": "dana-data", "visibility": visibility, "allowed_users": users,
            })),
        );
        assert_eq!(status, 204, "{text}");
    };
    share("restricted", json!(["erin-sub"]));
    eventually("Erin's policy to grant the shared bucket", || {
        minio.buckets_of(&erin_key) == ["dana-data"]
    });
    share("private", json!([]));
    eventually("Erin's policy to lose it", || {
        minio.buckets_of(&erin_key).is_empty()
    });
    assert_eq!(minio.buckets_of(&dana_key), ["dana-data"]);
    assert_eq!(minio.state()["refused"], 0);

    // A server whose keys MinIO refuses cannot make users, and says so.
    drop(server);
    let dir = TestDir::new();
    let server = server_on_minio(&dir, "not-the-secret");
    let (status, text) = with(&dana, c.get(server.url("/system/config")));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("MinIO") && text.contains("403"), "{text}");
}

/// `vo`, as OSCAR has it: a user's service names one of the user's groups (or gets the first
/// of the server's they are in), and a service of a VO is its members' only.
#[test]
fn a_services_vo_holds_its_users_to_its_members() {
    let idp = Idp::start();
    idp.user(
        "bob-sub",
        json!({"name": "Bob", "group_membership": [format!("/{GROUP}"), "/other-vo"]}),
    );
    idp.user(
        "carol-sub",
        json!({"name": "Carol", "group_membership": [format!("/{GROUP}")]}),
    );
    let (bob, carol) = (
        idp.token("bob-sub", json!({})),
        idp.token("carol-sub", json!({})),
    );
    let dir = TestDir::new();
    let server = server_with(&idp, &dir, &["--oidc-group", "other-vo"]);
    let c = client();
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/modules"))
            .body(guest("uppercase")),
    );
    assert_eq!(status, 201, "{text}");
    let module: Value = serde_json::from_str(&text).unwrap();
    let service = |name: &str, vo: &str| json!({"name": name, "module": module["digest"], "visibility": "public", "vo": vo});
    // Not one of Bob's groups: refused.
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/services"))
            .json(&service("x", "vo.else")),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("vo.else"), "{text}");
    // None named: the first of the server's groups Bob is in, as the vo and its label.
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/services"))
            .json(&service("mine", "")),
    );
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["vo"], GROUP);
    assert_eq!(created["labels"]["vo"], GROUP);
    // A public service of other-vo: Bob's to see and run, not Carol's.
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/services"))
            .json(&service("others", "other-vo")),
    );
    assert_eq!(status, 201, "{text}");
    let listed = |token: &str| names(&with(token, c.get(server.url("/system/services"))).1);
    assert_eq!(listed(&bob), ["mine", "others"]);
    assert_eq!(listed(&carol), ["mine"]);
    let invoke = |token: &str| with(token, c.post(server.url("/run/others")).body(b64(b"hi"))).0;
    assert_eq!(invoke(&bob), 200);
    assert_eq!(invoke(&carol), 403);
    // An update cannot move a service to a VO its owner is not in.
    let (status, text) = with(
        &bob,
        c.put(server.url("/system/services"))
            .json(&service("mine", "vo.else")),
    );
    assert_eq!(status, 403, "{text}");
    // The cluster's status says how users log in, as it is.
    let status: Value =
        serde_json::from_str(&as_admin(c.get(server.url("/system/status"))).1).unwrap();
    assert_eq!(status["oscar"]["oidc"]["enabled"], true);
    assert_eq!(status["oscar"]["oidc"]["issuers"], json!([idp.issuer]));
    assert_eq!(
        status["oscar"]["oidc"]["groups"],
        json!([GROUP, "other-vo"])
    );
    assert_eq!(status["oscar"]["ready"], true);
}

/// OSCAR's /system/metrics from exact meters: each invocation is accounted to the user who
/// called (or the service's owner), per service and channel, with its CPU time, bytes and
/// memory; users see only the services they may use; the accounts survive `kill -9` once
/// saved, and Prometheus counts the same.
#[test]
fn usage_is_accounted_exactly_per_user_and_service_and_kept() {
    let idp = Idp::start();
    for sub in ["alice-sub", "bob-sub"] {
        idp.user(sub, json!({"group_membership": [format!("/{GROUP}")]}));
    }
    let (alice, bob) = (
        idp.token("alice-sub", json!({})),
        idp.token("bob-sub", json!({})),
    );
    let dir = TestDir::new();
    let mut server = server_for(&idp, &dir);
    let c = client();
    for (token, name) in [(&alice, "meter-a"), (&bob, "meter-b")] {
        let digest = upload_as(&server, token, "uppercase");
        let (status, text) = with(
            token,
            c.post(server.url("/system/services"))
                .json(&json!({"name": name, "module": digest})),
        );
        assert_eq!(status, 201, "{text}");
    }
    let input = b64(&[b'x'; 1000]);
    // Alice twice and the administrator once on Alice's service (accounted to its owner);
    // Bob once, and once as a job.
    for _ in 0..2 {
        let (status, text) = with(
            &alice,
            c.post(server.url("/run/meter-a")).body(input.clone()),
        );
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = as_admin(c.post(server.url("/run/meter-a")).body(input.clone()));
    assert_eq!(status, 200, "{text}");
    let (status, text) = with(&bob, c.post(server.url("/run/meter-b")).body(input.clone()));
    assert_eq!(status, 200, "{text}");
    let (status, text) = with(&bob, c.post(server.url("/job/meter-b")).body(input.clone()));
    assert_eq!(status, 201, "{text}");
    let summary = |token: Option<&str>| -> Value {
        let request = c.get(server.url("/system/metrics"));
        let (status, text) = match token {
            Some(token) => with(token, request),
            None => as_admin(request),
        };
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let all = eventually_some("the job to be accounted", || {
        let s = summary(None);
        (s["totals"]["requests_count_async"] == 1).then_some(s)
    });
    let totals = &all["totals"];
    assert_eq!(totals["requests_count_sync"], 4, "{all}");
    assert_eq!(totals["requests_count_total"], 5, "{all}");
    assert_eq!(totals["requests_count_exposed"], 0, "{all}");
    assert_eq!(totals["services_count_total"], 2, "{all}");
    assert_eq!(totals["users"], json!(["alice-sub", "bob-sub"]), "{all}");
    assert_eq!(totals["bytes_in"], 5000, "{all}");
    assert_eq!(totals["bytes_out"], 5000, "{all}");
    assert!(totals["cpu_hours_total"].as_f64().unwrap() > 0.0, "{all}");
    assert!(
        totals["peak_memory_bytes"].as_u64().unwrap() >= 65536,
        "{all}"
    );
    assert!(
        all["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "usage-meters")
    );

    // Alice sees her service's figures only, and not Bob's service.
    let mine = summary(Some(&alice));
    assert_eq!(mine["totals"]["requests_count_sync"], 3, "{mine}");
    assert_eq!(mine["totals"]["users"], json!(["alice-sub"]), "{mine}");
    let (status, _) = with(&alice, c.get(server.url("/system/metrics/meter-b")));
    assert_eq!(status, 403);
    let (status, text) = with(
        &alice,
        c.get(server.url("/system/metrics/meter-a?metric=bytes-in")),
    );
    assert_eq!(status, 200, "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["value"], 3000.0, "{value}");
    assert_eq!(value["unit"], "bytes");
    let (status, text) = with(
        &alice,
        c.get(server.url("/system/metrics/meter-a?metric=nonsense")),
    );
    assert_eq!(status, 400, "{text}");
    let (status, text) = as_admin(c.get(server.url("/system/metrics?start=yesterday")));
    assert_eq!(status, 400, "{text}");

    // By user and by service, as JSON and CSV.
    let (status, text) = as_admin(c.get(server.url("/system/metrics/breakdown?group_by=user")));
    assert_eq!(status, 200, "{text}");
    let by_user: Value = serde_json::from_str(&text).unwrap();
    let count = |key: &str| {
        by_user["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .map(|i| i["executions_count"].clone())
    };
    assert_eq!(count("alice-sub"), Some(json!(3)), "{by_user}");
    assert_eq!(count("bob-sub"), Some(json!(2)), "{by_user}");
    let (status, csv) =
        as_admin(c.get(server.url("/system/metrics/breakdown?group_by=service&format=csv")));
    assert_eq!(status, 200, "{csv}");
    assert!(csv.contains("\nmeter-a,,3,3,0,0,1,\n"), "{csv}");
    assert!(csv.contains("\nmeter-b,,2,1,1,0,1,\n"), "{csv}");
    let (status, _) = as_admin(c.get(server.url("/system/metrics/breakdown")));
    assert_eq!(status, 400, "group_by is required");

    // Prometheus counts the same.
    let text = as_admin(c.get(server.url("/metrics"))).1;
    assert!(
        text.contains(r#"oscar_wasm_invocation_bytes_total{channel="sync",direction="in",service="meter-a"} 3000"#),
        "{text}"
    );
    assert!(text.contains("oscar_wasm_cpu_seconds_total{"), "{text}");

    // Saved within seconds: once on disk, a kill -9 loses nothing of it.
    let saved = || -> u64 {
        std::fs::read_dir(dir.data().join("usage"))
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .flat_map(|doc| doc["rows"].as_array().cloned().unwrap_or_default())
            .map(|row| row["n"].as_u64().unwrap())
            .sum()
    };
    eventually("the accounts to be saved", || saved() == 5);
    // A job whose end is not yet recorded runs again after a crash, and that second run is
    // rightly accounted too: the kill waits for the job's end.
    eventually("the job to be recorded as finished", || {
        let text = as_admin(c.get(server.url("/system/logs/meter-b"))).1;
        let logs: Value = serde_json::from_str(&text).unwrap();
        logs["jobs"].as_object().is_some_and(|jobs| {
            !jobs.is_empty() && jobs.values().all(|j| j["status"] == "Succeeded")
        })
    });
    server.kill();
    let server = server_for(&idp, &dir);
    let again = as_admin(c.get(server.url("/system/metrics"))).1;
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["totals"]["requests_count_total"], 5, "{again}");
    assert_eq!(again["totals"]["bytes_in"], 5000, "{again}");
}

/// OSCAR's /system/quotas: a default quota from the flags holds every user's running
/// invocations; the administrator raises one user's; calls past a quota are refused with 429
/// naming it, and a job holds its share while it runs.
#[test]
fn quotas_hold_a_users_running_invocations_and_the_administrator_sets_them() {
    let idp = Idp::start();
    idp.user(
        "alice-sub",
        json!({"group_membership": [format!("/{GROUP}")]}),
    );
    let alice = idp.token("alice-sub", json!({}));
    let dir = TestDir::new();
    let server = server_with(
        &idp,
        &dir,
        &["--quota-invocations", "1", "--quota-memory", "1Gi"],
    );
    let c = client();
    let digest = upload_as(&server, &alice, "sandbox-probe");
    let (status, text) = with(
        &alice,
        c.post(server.url("/system/services"))
            .json(&json!({"name": "quota-probe", "module": digest, "memory": "256Mi"})),
    );
    assert_eq!(status, 201, "{text}");
    let mine = || -> Value {
        let (status, text) = with(&alice, c.get(server.url("/system/quotas/user")));
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let quota = mine();
    assert_eq!(quota["user_id"], "alice-sub");
    assert_eq!(
        quota["resources"]["invocations"],
        json!({"max": 1, "used": 0})
    );
    assert_eq!(quota["resources"]["memory"]["max"], 1u64 << 30);

    // A job that sleeps holds Alice's one invocation while it runs.
    let (status, text) = with(
        &alice,
        c.post(server.url("/job/quota-probe"))
            .body(b64(b"sleep 60000\n")),
    );
    assert_eq!(status, 201, "{text}");
    let job = serde_json::from_str::<Value>(&text).unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the job to hold Alice's quota", || {
        mine()["resources"]["invocations"]["used"] == 1
    });
    assert_eq!(mine()["resources"]["memory"]["used"], 256u64 << 20);
    let (status, text) = with(
        &alice,
        c.post(server.url("/run/quota-probe"))
            .body(b64(b"print hi\n")),
    );
    assert_eq!(status, 429, "{text}");
    assert!(
        text.contains("alice-sub's invocations quota is 1"),
        "{text}"
    );

    // Only the administrator reads and sets others' quotas.
    let (status, _) = with(
        &alice,
        c.put(server.url("/system/quotas/user/alice-sub"))
            .json(&json!({"invocations": "5"})),
    );
    assert_eq!(status, 403);
    let (status, text) = as_admin(
        c.put(server.url("/system/quotas/user/alice-sub"))
            .json(&json!({"invocations": "2"})),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = with(
        &alice,
        c.post(server.url("/run/quota-probe"))
            .body(b64(b"print hi\n")),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = as_admin(c.get(server.url("/system/quotas/user/alice-sub")));
    assert_eq!(status, 200, "{text}");
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        seen["resources"]["invocations"],
        json!({"max": 2, "used": 1})
    );

    // Deleting the job stops it and gives its share back.
    let (status, _) = with(
        &alice,
        c.delete(server.url(&format!("/system/logs/quota-probe/{job}"))),
    );
    assert_eq!(status, 204);
    eventually("the stopped job to give its share back", || {
        mine()["resources"]["invocations"]["used"] == 0
    });
}

#[test]
fn bucket_quotas_count_a_users_buckets_and_bound_their_bytes() {
    let idp = Idp::start();
    idp.user(
        "carol-sub",
        json!({"group_membership": [format!("/{GROUP}")]}),
    );
    let carol = idp.token("carol-sub", json!({}));
    let dir = TestDir::new();
    let server = server_for(&idp, &dir);
    let c = client();
    // OSCAR's shape, as its docs/minio-usage.md sets it.
    let (status, text) = as_admin(
        c.put(server.url("/system/quotas/user/carol-sub"))
            .json(&json!({"minio": {"buckets": "1", "storage_per_bucket": "1Ki"}})),
    );
    assert_eq!(status, 200, "{text}");
    let bucket = |name: &str| {
        with(
            &carol,
            c.post(server.url("/system/buckets"))
                .json(&json!({"bucket_name": name})),
        )
    };
    let (status, text) = bucket("carol-one");
    assert_eq!(status, 201, "{text}");
    // A second bucket, by itself or as a service's, is past the quota: OSCAR's 403 and words.
    let (status, text) = bucket("carol-two");
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains(
            "MinIO bucket quota exceeded for user carol-sub: limit 1, current 1, requested new buckets 1"
        ),
        "{text}"
    );
    let digest = upload_as(&server, &carol, "uppercase");
    let service = |input: &str| {
        json!({"name": "carol-upper", "module": digest, "memory": "64Mi",
            "input": [{"storage_provider": "minio.default", "path": format!("{input}/in")}],
            "output": [{"storage_provider": "minio.default", "path": "carol-one/out"}]})
    };
    let (status, text) = with(
        &carol,
        c.post(server.url("/system/services"))
            .json(&service("carol-three")),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("MinIO bucket quota exceeded"), "{text}");
    // Her own bucket is not new: the service is made.
    let (status, text) = with(
        &carol,
        c.post(server.url("/system/services"))
            .json(&service("carol-one")),
    );
    assert_eq!(status, 201, "{text}");

    // Each bucket holds at most 1 KiB: a write past it is refused, naming the quota.
    let upload = |key: &str, bytes: Vec<u8>| -> (u16, String) {
        let (status, text) = with(
            &carol,
            c.post(server.url("/system/buckets/carol-one/presign"))
                .json(&json!({"object_key": key, "operation": "upload"})),
        );
        assert_eq!(status, 200, "{text}");
        let url = serde_json::from_str::<Value>(&text).unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string();
        let r = c.put(url).body(bytes).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(upload("notes/a.txt", vec![b'a'; 600]).0, 200);
    let (status, text) = upload("notes/b.txt", vec![b'b'; 600]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("XMinioAdminBucketQuotaExceeded"), "{text}");
    assert!(
        text.contains("storage_per_bucket quota of 1024 bytes"),
        "{text}"
    );
    // The service's outputs are writes into her bucket too: a job whose output would pass the
    // quota fails with the reason instead of landing.
    let (status, text) = with(
        &carol,
        c.post(server.url("/job/carol-upper"))
            .body(b64(&[b'x'; 600])),
    );
    assert_eq!(status, 201, "{text}");
    let job = serde_json::from_str::<Value>(&text).unwrap()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    let logs_url = server.url(&format!("/system/logs/carol-upper/{job}"));
    eventually("the job to fail on the quota", || {
        let (_, text) = with(&carol, c.get(&logs_url));
        text.contains("storage_per_bucket")
    });

    let (status, text) = with(&carol, c.get(server.url("/system/quotas/user")));
    assert_eq!(status, 200, "{text}");
    let quota: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        quota["minio"]["buckets"],
        json!({"max": 1, "used": 1}),
        "{quota}"
    );
    assert_eq!(quota["minio"]["storage_per_bucket"]["max"], "1Ki");
    assert_eq!(quota["minio"]["storage_total"]["used"], "600", "{quota}");
}

#[test]
fn isolation_level_user_gives_each_allowed_user_a_private_bucket() {
    let idp = Idp::start();
    for sub in ["alice-sub", "bob-sub"] {
        idp.user(sub, json!({"group_membership": [format!("/{GROUP}")]}));
    }
    let (alice, bob) = (
        idp.token("alice-sub", json!({})),
        idp.token("bob-sub", json!({})),
    );
    let dir = TestDir::new();
    let server = server_for(&idp, &dir);
    let c = client();
    let digest = upload_as(&server, &alice, "uppercase");
    let definition = |users: Value| {
        json!({"name": "iso", "module": digest, "memory": "64Mi", "visibility": "restricted",
            "allowed_users": users, "isolation_level": "USER",
            "bucket_list": ["sent-by-the-client"],
            "input": [{"storage_provider": "minio.default", "path": "iso/in"}],
            "output": [{"storage_provider": "minio.default", "path": "iso/out"}]})
    };
    // A user id that cannot name a bucket is refused with the reason.
    let (status, text) = with(
        &alice,
        c.post(server.url("/system/services"))
            .json(&definition(json!(["Not_A_Bucket"]))),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not a valid bucket name"), "{text}");
    let (status, text) = with(
        &alice,
        c.post(server.url("/system/services"))
            .json(&definition(json!(["bob-sub"]))),
    );
    assert_eq!(status, 201, "{text}");
    // OSCAR's list: one bucket per listed user; the creator is added to the users.
    let (_, text) = with(&alice, c.get(server.url("/system/services/iso")));
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["bucket_list"], json!(["iso-bob-sub"]), "{shown}");
    assert_eq!(
        shown["allowed_users"],
        json!(["bob-sub", "alice-sub"]),
        "{shown}"
    );
    // An update listing Alice too gives her one as well.
    let (status, text) = with(
        &alice,
        c.put(server.url("/system/services"))
            .json(&definition(json!(["alice-sub", "bob-sub"]))),
    );
    assert_eq!(status, 204, "{text}");
    let (_, text) = with(&alice, c.get(server.url("/system/services/iso")));
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        shown["bucket_list"],
        json!(["iso-alice-sub", "iso-bob-sub"]),
        "{shown}"
    );

    // Bob's upload to his own input folder runs the service; the output lands in his bucket.
    let (status, text) = with(
        &bob,
        c.post(server.url("/system/buckets/iso-bob-sub/presign"))
            .json(&json!({"object_key": "in/note.txt", "operation": "upload"})),
    );
    assert_eq!(status, 200, "{text}");
    let url = serde_json::from_str::<Value>(&text).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.put(url).body("for bob only").send().unwrap().status(),
        200
    );
    let objects = |token: &str, bucket: &str| -> (u16, Vec<String>) {
        let (status, text) = with(
            token,
            c.get(server.url(&format!("/system/buckets/{bucket}"))),
        );
        let names = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["objects"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|o| o["object_name"].as_str().map(str::to_string))
            .collect();
        (status, names)
    };
    eventually("Bob's output in his private bucket", || {
        objects(&bob, "iso-bob-sub")
            .1
            .contains(&"out/upper.txt".to_string())
    });
    // Nobody else's: Alice (the service's owner) cannot read it, Bob cannot read hers, and
    // the service's shared bucket got nothing.
    assert_eq!(objects(&alice, "iso-bob-sub").0, 403);
    assert_eq!(objects(&bob, "iso-alice-sub").0, 403);
    let (status, shared) = objects(&alice, "iso");
    assert_eq!(status, 200);
    assert!(
        !shared.iter().any(|o| o.starts_with("out/upper")),
        "{shared:?}"
    );
}

#[test]
fn jobs_waiting_for_a_users_quota_leave_the_workers_to_other_users() {
    let idp = Idp::start();
    for sub in ["alice-sub", "bob-sub"] {
        idp.user(sub, json!({"group_membership": [format!("/{GROUP}")]}));
    }
    let (alice, bob) = (
        idp.token("alice-sub", json!({})),
        idp.token("bob-sub", json!({})),
    );
    let dir = TestDir::new();
    // Two job workers: Alice's first job runs on one; before parking, her second held the
    // other while it waited for her quota, and Bob's job waited behind both.
    let server = server_with(
        &idp,
        &dir,
        &["--job-workers", "2", "--quota-invocations", "1"],
    );
    let c = client();
    for (token, name) in [(&alice, "alice-probe"), (&bob, "bob-probe")] {
        let digest = upload_as(&server, token, "sandbox-probe");
        let (status, text) = with(
            token,
            c.post(server.url("/system/services"))
                .json(&json!({"name": name, "module": digest, "memory": "64Mi"})),
        );
        assert_eq!(status, 201, "{text}");
    }
    let submit = |token: &str, service: &str, script: &[u8]| -> String {
        let (status, text) = with(
            token,
            c.post(server.url(&format!("/job/{service}")))
                .body(b64(script)),
        );
        assert_eq!(status, 201, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["job_name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let status = |service: &str, job: &str| -> String {
        let (_, text) = as_admin(c.get(server.url(&format!("/system/logs/{service}"))));
        let listed: Value = serde_json::from_str(&text).unwrap_or_default();
        listed["jobs"][job]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Alice's first job holds her one invocation; her second waits for it, pending.
    let first = submit(&alice, "alice-probe", b"sleep 60000\n");
    eventually("Alice's first job to run", || {
        status("alice-probe", &first) == "Running"
    });
    let second = submit(&alice, "alice-probe", b"print second\n");
    // Bob's job runs meanwhile on the one worker.
    let bobs = submit(&bob, "bob-probe", b"print bob\n");
    eventually("Bob's job to succeed while Alice's wait", || {
        status("bob-probe", &bobs) == "Succeeded"
    });
    assert_eq!(status("alice-probe", &second), "Pending");
    // Once her first job ends (deleted here), her second runs.
    let (code, _) = with(
        &alice,
        c.delete(server.url(&format!("/system/logs/alice-probe/{first}"))),
    );
    assert_eq!(code, 204);
    eventually("Alice's second job to succeed", || {
        status("alice-probe", &second) == "Succeeded"
    });
}
