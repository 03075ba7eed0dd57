//! Cluster mode end to end: real `nats-server`s with JetStream on loopback (one, or a cluster
//! of three), and several real oscar-wasm servers joined to them with `--cluster`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One `nats-server` with JetStream, its data in its own folder, killed on drop.
struct Nats {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    config: PathBuf,
}

impl Nats {
    /// A single NATS server.
    fn start(dir: &Path) -> Self {
        Self::launch(dir, "single", None)
    }

    /// Three NATS servers routed into one cluster.
    fn cluster(dir: &Path) -> Vec<Self> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        (0..3)
            .map(|i| Self::launch(dir, &format!("n{i}"), Some((i, &routes))))
            .collect()
    }

    /// A single NATS server that lets in only `user` with `password`.
    fn with_login(dir: &Path, user: &str, password: &str) -> Self {
        let mut nats = Self::launch(dir, "login", None);
        nats.stop();
        let mut config = std::fs::read_to_string(&nats.config).unwrap();
        config.push_str(&format!(
            "authorization {{ user: {user}, password: {password} }}\n"
        ));
        std::fs::write(&nats.config, config).unwrap();
        nats.spawn();
        nats
    }

    fn launch(dir: &Path, name: &str, cluster: Option<(usize, &[u16])>) -> Self {
        let (port, monitor) = (free_port(), free_port());
        let store = dir.join(format!("nats-{name}"));
        std::fs::create_dir_all(&store).unwrap();
        let mut config = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\njetstream {{ store_dir: {:?} }}\n",
            store.display().to_string()
        );
        if let Some((i, routes)) = cluster {
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            config.push_str(&format!(
                "cluster {{ name: oscar, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                routes[i],
                others.join(", ")
            ));
        }
        let path = dir.join(format!("nats-{name}.conf"));
        std::fs::write(&path, config).unwrap();
        let mut nats = Self {
            child: None,
            port,
            monitor,
            config: path,
        };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        self.child = Some(
            Command::new("nats-server")
                .arg("-c")
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server (Debian's package; scripts/test.sh installs it)"),
        );
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Waits until JetStream answers health checks (a cluster's has elected its leader).
    fn wait_ready(&self) {
        eventually("NATS JetStream to be ready", || {
            client()
                .get(format!("http://127.0.0.1:{}/healthz", self.monitor))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An oscar-wasm server of the cluster at `urls`, with its own data folder `dir/name`.
fn member(dir: &Path, name: &str, urls: &str, extra: &[&str]) -> Server {
    let data = dir.join(name).join("data");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let mut args = vec!["--cluster", urls, "--max-pending-jobs", "1000"];
    args.extend_from_slice(extra);
    Server::start(&data, &args)
}

/// The S3 store every member shares: a server of its own, whose embedded store holds the
/// bucket `pollb`; its address.
fn external_store(dir: &Path) -> (Server, String) {
    let store = Server::start(&dir.join("store/data"), &[]);
    deploy(
        &store,
        &guest("uppercase"),
        json!({"name": "buckets", "output": [{"storage_provider": "minio", "path": "pollb/out"}]}),
    );
    let endpoint = store.s3.clone().unwrap();
    (store, endpoint)
}

/// The flags that make a member use the store at `endpoint`.
fn external_flags(endpoint: &str) -> [&str; 6] {
    [
        "--storage-endpoint",
        endpoint,
        "--storage-access-key",
        "oscar",
        "--storage-secret-key",
        "oscar",
    ]
}

fn submit(server: &Server, service: &str, input: &[u8]) -> String {
    let response = client()
        .post(server.url(&format!("/job/{service}")))
        .body(b64(input))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    let body: Value = response.json().unwrap();
    body["job_name"].as_str().unwrap().to_string()
}

fn service(server: &Server, name: &str) -> Option<Value> {
    let response = client()
        .get(server.url(&format!("/system/services/{name}")))
        .send()
        .unwrap();
    response
        .status()
        .is_success()
        .then(|| response.json().unwrap())
}

fn runs_uppercase(server: &Server, name: &str) -> bool {
    let (status, _, body) = run(server, name, b64(b"hello cluster"));
    status == 200 && unb64(&body) == b"HELLO CLUSTER"
}

/// Every job of `service` (one page of up to 1,000).
fn jobs_of(server: &Server, service: &str) -> serde_json::Map<String, Value> {
    let response = client()
        .get(server.url(&format!("/system/logs/{service}?limit=1000")))
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(
        status.is_success(),
        "{status}: {text}\n{}",
        server.log_text()
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    body["jobs"].as_object().cloned().unwrap_or_default()
}

/// Waits until `n` jobs of `service` have ended, the same on every server's listing; returns
/// the listing.
fn all_ended(servers: &[&Server], service: &str, n: usize) -> serde_json::Map<String, Value> {
    let started = std::time::Instant::now();
    let listing = loop {
        let jobs = jobs_of(servers[0], service);
        let ended = jobs
            .values()
            .filter(|j| matches!(j["status"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        if ended >= n {
            break jobs;
        }
        if started.elapsed() > std::time::Duration::from_secs(90) {
            let problems: Vec<String> = servers
                .iter()
                .flat_map(|s| s.log_text().lines().map(str::to_string).collect::<Vec<_>>())
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            let unfinished: Vec<String> = jobs
                .iter()
                .filter(|(_, j)| !matches!(j["status"].as_str(), Some("Succeeded" | "Failed")))
                .map(|(name, j)| {
                    format!(
                        "{name} {}: {}",
                        j["status"],
                        log_of(servers[0], service, name)
                    )
                })
                .collect();
            panic!(
                "{ended} of {n} jobs of {service} ended.\nUnfinished: {unfinished:#?}\nServers' warnings:\n{}",
                problems.join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for other in &servers[1..] {
        eventually("every server to list the same jobs", || {
            let theirs = jobs_of(other, service);
            theirs.len() == listing.len()
                && theirs
                    .iter()
                    .all(|(name, j)| listing[name]["status"] == j["status"])
        });
    }
    listing
}

#[test]
fn three_servers_share_services_modules_and_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    nats.wait_ready();
    let url = nats.url();
    let a = member(dir.path(), "a", &url, &[]);
    let b = member(dir.path(), "b", &url, &[]);
    let c = member(dir.path(), "c", &url, &[]);

    // Deployed on one, invoked on the others.
    deploy(&a, &guest("uppercase"), json!({"name": "upper"}));
    eventually("b and c to run a's service", || {
        runs_uppercase(&b, "upper") && runs_uppercase(&c, "upper")
    });

    // A module uploaded on one runs on another.
    let probe = upload(&b, &guest("sandbox-probe"));
    let modules: Value = client()
        .get(c.url("/system/modules"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(modules.to_string().contains(&probe), "{modules}");
    let created = client()
        .post(c.url("/system/services"))
        .json(&json!({"name": "probe", "module": probe}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().unwrap());
    eventually("a to have the probe", || service(&a, "probe").is_some());

    // 300 jobs submitted across the three all end Succeeded, each once.
    let servers = [&a, &b, &c];
    let mut submitted = Vec::new();
    for i in 0..300 {
        let server = servers[i % 3];
        let input = format!("output out.txt job-{i}\n");
        submitted.push((submit(server, "probe", input.as_bytes()), i));
    }
    let listing = all_ended(&servers, "probe", 300);
    assert_eq!(listing.len(), 300);
    for (job, _) in &submitted {
        assert_eq!(
            listing[job]["status"], "Succeeded",
            "{job}: {}",
            listing[job]
        );
    }
    // Outputs and logs are read from a server that did not accept the job.
    for (job, i) in submitted.iter().take(30) {
        let reader = servers[(i + 1) % 3];
        let output = client()
            .get(reader.url(&format!("/system/outputs/probe/{job}/out.txt")))
            .send()
            .unwrap();
        assert_eq!(output.status(), 200, "{job}");
        assert_eq!(output.text().unwrap(), format!("job-{i}"));
        assert!(log_of(reader, "probe", job).contains("Job accepted"));
    }
    // Job counts are the cluster's, on every server.
    for server in servers {
        eventually("cluster-wide job counts", || {
            metrics_text(server).contains("oscar_wasm_jobs{status=\"Succeeded\"} 300")
        });
    }
    let ran_twice: Vec<&String> = submitted
        .iter()
        .map(|(job, _)| job)
        .filter(|job| log_of(&a, "probe", job).contains("run again"))
        .take(3)
        .collect();
    assert!(ran_twice.is_empty(), "jobs that ran twice: {ran_twice:?}");

    // Two concurrent updates of one service: one of them wins whole, never a mix.
    let updates: Vec<Value> = (0..2)
        .map(|i| {
            json!({"name": "upper", "module": service(&a, "upper").unwrap()["module"],
                   "environment": {"variables": {"WHO": format!("writer-{i}"), "SAME": format!("writer-{i}")}},
                   "memory": format!("{}Mi", 64 + i)})
        })
        .collect();
    std::thread::scope(|scope| {
        for (i, update) in updates.iter().enumerate() {
            let server = servers[i];
            scope.spawn(move || {
                let status = client()
                    .put(server.url("/system/services"))
                    .json(update)
                    .send()
                    .unwrap()
                    .status();
                assert!(status == 204 || status == 200 || status == 409, "{status}");
            });
        }
    });
    let expected = eventually_some("every server to agree on the update", || {
        let seen: Vec<Value> = servers
            .iter()
            .map(|s| service(s, "upper").unwrap())
            .collect();
        (seen[0] == seen[1] && seen[1] == seen[2]).then(|| seen[0].clone())
    });
    let who = expected["environment"]["variables"]["WHO"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(expected["environment"]["variables"]["SAME"], who.as_str());
    let i: u64 = who.trim_start_matches("writer-").parse().unwrap();
    assert!(
        expected["memory"]
            .to_string()
            .contains(&format!("{}", 64 + i)),
        "a mix of two updates: {expected}"
    );

    // Deleted on one, gone from all.
    let deleted = client()
        .delete(b.url("/system/services/upper"))
        .send()
        .unwrap();
    assert_eq!(deleted.status(), 204);
    eventually("the deletion to reach every server", || {
        servers.iter().all(|s| service(s, "upper").is_none())
    });

    // Everything restarted: nothing accepted is lost.
    let pending = submit(&c, "probe", b"output late.txt after\n");
    drop((a, b, c));
    let mut nats = nats;
    nats.stop();
    nats.spawn();
    nats.wait_ready();
    let a = member(dir.path(), "a", &url, &[]);
    let b = member(dir.path(), "b", &url, &[]);
    assert!(service(&b, "probe").is_some());
    let listing = all_ended(&[&a, &b], "probe", 301);
    assert_eq!(listing[&pending]["status"], "Succeeded");
}

#[test]
fn jobs_of_a_killed_server_finish_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    nats.wait_ready();
    let url = nats.url();
    // A short ack wait keeps the redelivery quick; one worker each, so jobs spread.
    let flags = ["--cluster-ack-wait", "2", "--job-workers", "2"];
    let mut a = member(dir.path(), "a", &url, &flags);
    let b = member(dir.path(), "b", &url, &flags);
    let c = member(dir.path(), "c", &url, &flags);
    deploy(&a, &guest("sandbox-probe"), json!({"name": "slow"}));
    eventually("b and c to have the service", || {
        service(&b, "slow").is_some() && service(&c, "slow").is_some()
    });
    let jobs: Vec<String> = (0..12)
        .map(|i| {
            submit(
                [&a, &b, &c][i % 3],
                "slow",
                b"sleep 1500\noutput done.txt yes\n",
            )
        })
        .collect();
    // Kill a while it runs jobs: with five running, at least one is a's (b and c have four
    // workers between them).
    eventually("five jobs to run", || {
        let listing = jobs_of(&b, "slow");
        listing
            .values()
            .filter(|j| j["status"] == "Running")
            .count()
            >= 5
    });
    a.kill();
    let listing = all_ended(&[&b, &c], "slow", jobs.len());
    for job in &jobs {
        assert_eq!(
            listing[job]["status"], "Succeeded",
            "{job}: {}",
            listing[job]
        );
    }
    // The jobs a was running ran again elsewhere, and their logs say so.
    let again = jobs
        .iter()
        .filter(|job| log_of(&b, "slow", job).contains("stopped before it finished"))
        .count();
    assert!(again >= 1, "no job was taken over from the killed server");
}

#[test]
fn the_cluster_keeps_working_when_a_nats_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nats::cluster(dir.path());
    for node in &nodes {
        node.wait_ready();
    }
    let urls: Vec<String> = nodes.iter().map(Nats::url).collect();
    // Each server knows every NATS server; three replicas survive the loss of one.
    let all = urls.join(",");
    let flags = ["--cluster-replicas", "3", "--cluster-ack-wait", "3"];
    let a = member(dir.path(), "a", &all, &flags);
    let b = member(dir.path(), "b", &urls[1..].join(","), &flags);
    deploy(&a, &guest("sandbox-probe"), json!({"name": "probe"}));
    eventually("b to have the service", || service(&b, "probe").is_some());
    let before: Vec<String> = (0..10)
        .map(|i| submit([&a, &b][i % 2], "probe", b"output o.txt x\n"))
        .collect();
    all_ended(&[&a, &b], "probe", before.len());

    nodes[0].stop();
    // Accepting and finishing work goes on with two of three NATS servers.
    let after: Vec<String> = (0..10)
        .map(|i| {
            let server = [&a, &b][i % 2];
            eventually_some("a job to be accepted", || {
                let response = client()
                    .post(server.url("/job/probe"))
                    .body(b64(b"output o.txt y\n"))
                    .send()
                    .ok()?;
                if response.status() != 201 {
                    return None;
                }
                let body: Value = response.json().ok()?;
                body["job_name"].as_str().map(str::to_string)
            })
        })
        .collect();
    let listing = all_ended(&[&a, &b], "probe", before.len() + after.len());
    for job in before.iter().chain(&after) {
        assert_eq!(
            listing[job]["status"],
            "Succeeded",
            "{job}: {}",
            log_of(&a, "probe", job)
        );
    }
    assert!(runs_probe(&b));
}

fn runs_probe(server: &Server) -> bool {
    let (status, _, _) = run(server, "probe", b64(b"output o.txt z\n"));
    status == 200
}

#[test]
fn the_kubernetes_manifest_sets_only_real_settings() {
    let manifest =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/oscar-wasm.yaml")).unwrap();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let names: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("OSCAR_WASM_"))
        .collect();
    assert!(names.contains(&"OSCAR_WASM_CLUSTER"), "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("[env: {name}")),
            "{name} is not a setting of oscar-wasm serve"
        );
    }
    // The readiness probe asks a route that exists, and that reports NATS's loss.
    assert!(manifest.contains("path: /health"));
}

#[test]
fn a_server_that_lost_nats_is_not_ready_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path());
    nats.wait_ready();
    let server = member(dir.path(), "a", &nats.url(), &[]);
    let health = || {
        client()
            .get(server.url("/health"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(health(), 200);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    nats.stop();
    eventually("the server to report NATS lost", || health() == 503);
    // A job cannot be stored meanwhile: 503, to be tried again, never a lost job.
    let refused = client()
        .post(server.url("/job/upper"))
        .body(b64(b"later"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 503, "{}", refused.text().unwrap());
    assert!(refused.headers().contains_key("retry-after"));
    // Synchronous calls need no NATS.
    assert!(runs_uppercase(&server, "upper"));
    nats.spawn();
    nats.wait_ready();
    eventually("the server to be ready again", || health() == 200);
    let job = submit(&server, "upper", b"later");
    all_ended(&[&server], "upper", 1);
    assert_eq!(jobs_of(&server, "upper")[&job]["status"], "Succeeded");
}

#[test]
fn the_poller_runs_on_one_server_and_another_carries_on_after_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    nats.wait_ready();
    let (_store, endpoint) = external_store(dir.path());
    let flags = external_flags(&endpoint);
    let mut a = member(dir.path(), "a", &nats.url(), &flags);
    let mut b = member(dir.path(), "b", &nats.url(), &flags);
    let bucket = s3(&endpoint, "pollb", "oscar", "oscar");
    put(&bucket, "in/before.txt", b"already there").unwrap();
    deploy(
        &a,
        &guest("uppercase"),
        json!({"name": "poll", "poll_interval": 1,
               "input": [{"storage_provider": "minio", "path": "pollb/in"}],
               "output": [{"storage_provider": "minio", "path": "pollb/out"}]}),
    );
    // b deploys a's service once it has compiled the module itself.
    eventually("b to have the service", || service(&b, "poll").is_some());
    let first_round = "poller: first round";
    eventually("the poller's first round", || {
        a.log_text().contains(first_round) || b.log_text().contains(first_round)
    });
    put(&bucket, "in/one.txt", b"one").unwrap();
    all_ended(&[&a, &b], "poll", 1);

    // The lease holder dies; the other server takes the poller over, with what it had seen.
    let holds = "lease changed hands lease=poller holds=true";
    let (leader, survivor) = if a.log_text().contains(holds) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    leader.kill();
    put(&bucket, "in/two.txt", b"two").unwrap();
    let listing = all_ended(&[survivor], "poll", 2);
    put(&bucket, "in/three.txt", b"three").unwrap();
    let listing_after = all_ended(&[survivor], "poll", 3);
    // Once each: one.txt was not taken for new by the second holder, nor before.txt.
    assert_eq!(listing.len(), 2, "{listing:?}");
    assert_eq!(listing_after.len(), 3, "{listing_after:?}");
    let mut downloaded: Vec<String> = listing_after
        .keys()
        .map(|job| {
            let log = log_of(survivor, "poll", job);
            assert!(log.contains("Downloaded s3://pollb/in/"), "{log}");
            log.split("Downloaded s3://pollb/in/")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    downloaded.sort();
    assert_eq!(downloaded, ["one.txt", "three.txt", "two.txt"]);
}

#[test]
fn nats_logins_are_used_and_a_refused_one_stops_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::with_login(dir.path(), "oscar", "s3cret");
    nats.wait_ready();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_oscar-wasm"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .args(["--cluster", &nats.url()])
        .args(["--cluster-user", "oscar", "--cluster-password", "wrong"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("could not connect to NATS"), "{stderr}");
    let server = Server::start_with_env(
        &dir.path().join("a/data"),
        &["--cluster", &nats.url(), "--cluster-user", "oscar"],
        &[("OSCAR_WASM_CLUSTER_PASSWORD", "s3cret")],
    );
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    assert!(runs_uppercase(&server, "upper"));
}

#[test]
fn settings_and_bucket_records_are_the_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path());
    nats.wait_ready();
    let (_store, endpoint) = external_store(dir.path());
    let flags = external_flags(&endpoint);
    let a = member(dir.path(), "a", &nats.url(), &flags);
    let b = member(dir.path(), "b", &nats.url(), &flags);

    let put = client()
        .put(a.url("/system/config"))
        .json(&json!({"allowed_image_repositories": ["ghcr.io/grycap/"]}))
        .send()
        .unwrap();
    assert_eq!(put.status(), 200);
    eventually("b to have a's settings", || {
        let config: Value = client()
            .get(b.url("/system/config"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        config["allowed_image_repositories"] == json!(["ghcr.io/grycap/"])
    });

    // Two buckets made at once on two servers: both records kept, on both servers.
    std::thread::scope(|scope| {
        for (server, name) in [(&a, "from-a"), (&b, "from-b")] {
            scope.spawn(move || {
                let created = client()
                    .post(server.url("/system/buckets"))
                    .json(&json!({"bucket_name": name, "visibility": "public"}))
                    .send()
                    .unwrap();
                assert_eq!(created.status(), 201, "{}", created.text().unwrap());
            });
        }
    });
    for server in [&a, &b] {
        eventually("both buckets public on every server", || {
            let buckets: Value = client()
                .get(server.url("/system/buckets"))
                .send()
                .unwrap()
                .json()
                .unwrap();
            ["from-a", "from-b"].iter().all(|name| {
                buckets.as_array().is_some_and(|list| {
                    list.iter()
                        .any(|b| b["bucket_name"] == *name && b["visibility"] == "public")
                })
            })
        });
    }
}
