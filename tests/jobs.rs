//! Asynchronous jobs, their logs and outputs in OSCAR's shapes, durability across `kill -9`,
//! retention, and /metrics.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

fn submit(server: &Server, service: &str, input: &[u8]) -> String {
    let r = client()
        .post(server.url(&format!("/job/{service}")))
        .body(b64(input))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let header = r
        .headers()
        .get("x-oscar-wasm-job")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = r.json().unwrap();
    assert_eq!(body["job_name"], header.as_str());
    assert!(header.starts_with(&format!("{service}-")));
    header
}

fn jobs(server: &Server, service: &str) -> serde_json::Map<String, Value> {
    let r = client()
        .get(server.url(&format!("/system/logs/{service}?limit=1000")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["jobs"]
        .as_object()
        .unwrap()
        .clone()
}

/// Waits until every listed job has finished; returns their statuses.
fn wait_finished(server: &Server, service: &str, expected: usize) -> HashMap<String, String> {
    eventually_some(&format!("{expected} jobs of {service} to finish"), || {
        let statuses: HashMap<String, String> = jobs(server, service)
            .iter()
            .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap().to_string()))
            .collect();
        (statuses.len() >= expected && statuses.values().all(|s| s == "Succeeded" || s == "Failed"))
            .then_some(statuses)
    })
}

fn output(server: &Server, service: &str, job: &str, path: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(server.url(&format!("/system/outputs/{service}/{job}/{path}")))
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[test]
fn fifty_jobs_at_once_all_finish_with_the_right_outputs() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--job-workers", "4"]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let server_ref = &server;
    let names: Vec<(usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                scope.spawn(move || {
                    (
                        i,
                        submit(server_ref, "upper", format!("job number {i}").as_bytes()),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses = wait_finished(&server, "upper", 50);
    assert_eq!(statuses.len(), 50);
    for (i, name) in &names {
        assert_eq!(statuses[name], "Succeeded", "{name}");
        let (status, bytes) = output(&server, "upper", name, "upper.txt");
        assert_eq!(status, 200);
        assert_eq!(bytes, format!("JOB NUMBER {i}").as_bytes());
    }
    // Bad bodies are refused before anything is queued.
    let r = client()
        .post(server.url("/job/upper"))
        .body("[1]")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        client()
            .post(server.url("/job/ghost"))
            .body("aGk=")
            .send()
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn no_accepted_job_is_lost_to_kill_9() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &["--job-workers", "2"]);
    deploy(&server, &guest("sandbox-probe"), json!({"name": "slow"}));
    let names: Vec<(usize, String)> = (0..8)
        .map(|i| {
            (
                i,
                submit(
                    &server,
                    "slow",
                    format!("sleep 400\noutput result.txt {i}\n").as_bytes(),
                ),
            )
        })
        .collect();
    // Let two start running, then crash with the rest queued.
    eventually("a job to run", || {
        jobs(&server, "slow")
            .values()
            .any(|j| j["status"] == "Running")
    });
    server.kill();

    let server = Server::start(&dir.data(), &["--job-workers", "2"]);
    let statuses = wait_finished(&server, "slow", 8);
    let mut rerun = 0;
    for (i, name) in &names {
        assert_eq!(statuses[name], "Succeeded", "{name}");
        assert_eq!(
            output(&server, "slow", name, "result.txt").1,
            i.to_string().as_bytes()
        );
        let log = client()
            .get(server.url(&format!("/system/logs/slow/{name}")))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if log.contains("The server stopped while this job was running; it will run again") {
            rerun += 1;
        }
    }
    assert!(rerun >= 1, "the job running at the crash says it ran again");
}

/// Jobs are acknowledged in group commits: a crash in the middle of a burst of submissions
/// loses none that was answered 201, and each runs to its own output. A killed process keeps
/// what it wrote in the kernel's page cache, so this test checks the order of writes and
/// answers, not the syncs themselves: that an answer waits for a sync covering it is
/// `group_sync`'s unit tests' and `jobs::local`'s (a power cut needs a VM to test).
#[test]
fn kill_9_in_a_burst_of_submissions_loses_no_acknowledged_job() {
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &["--job-workers", "4"]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let acknowledged = std::sync::Mutex::new(Vec::new());
    let url = server.url("/job/upper");
    std::thread::scope(|scope| {
        for submitter in 0..8 {
            let (acknowledged, url) = (&acknowledged, &url);
            scope.spawn(move || {
                for i in 0.. {
                    let input = format!("burst {submitter} {i}");
                    // Once the server is gone, requests fail: the burst is over.
                    let Ok(r) = client().post(url).body(b64(input.as_bytes())).send() else {
                        break;
                    };
                    if r.status() != 201 {
                        break;
                    }
                    let body: Value = r.json().unwrap();
                    let name = body["job_name"].as_str().unwrap().to_string();
                    acknowledged.lock().unwrap().push((name, input));
                }
            });
        }
        eventually("a burst of acknowledged jobs", || {
            acknowledged.lock().unwrap().len() >= 300
        });
        server.kill();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    let server = Server::start(&dir.data(), &["--job-workers", "4"]);
    let statuses = wait_finished(&server, "upper", acknowledged.len());
    for (name, input) in &acknowledged {
        assert_eq!(
            statuses.get(name).map(String::as_str),
            Some("Succeeded"),
            "{name}"
        );
        let (status, bytes) = output(&server, "upper", name, "upper.txt");
        assert_eq!(
            (status, bytes),
            (200, input.to_uppercase().into_bytes()),
            "{name}"
        );
    }
}

#[test]
fn logs_follow_oscar_shapes_and_can_be_deleted() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(
        &server,
        &guest("sandbox-probe"),
        json!({"name": "probe", "timeout": 1}),
    );
    let ok = submit(
        &server,
        "probe",
        b"print hello from the job\noutput a.txt A\noutput b/c.txt C\n",
    );
    let failed = submit(&server, "probe", b"print about to fail\nexit 4\n");
    let timed_out = submit(&server, "probe", b"sleep 100000\n");
    let statuses = wait_finished(&server, "probe", 3);
    assert_eq!(statuses[&ok], "Succeeded");
    assert_eq!(statuses[&failed], "Failed");
    assert_eq!(statuses[&timed_out], "Failed");

    let all = jobs(&server, "probe");
    for job in all.values() {
        assert!(job["status"].is_string());
        for field in ["creation_time", "start_time", "finish_time"] {
            let value = job[field].as_str().unwrap();
            assert!(
                value.len() == 20 && value.ends_with('Z') && &value[10..11] == "T",
                "{field}: {value}"
            );
        }
    }

    let c = client();
    let log = |job: &str, q: &str| {
        c.get(server.url(&format!("/system/logs/probe/{job}{q}")))
            .send()
            .unwrap()
    };
    let text = log(&ok, "").text().unwrap();
    assert!(
        text.contains("hello from the job") && text.contains(" - supervisor - INFO - "),
        "{text}"
    );
    let stamped = log(&ok, "?timestamps=true").text().unwrap();
    assert!(
        stamped
            .lines()
            .all(|l| l.len() > 24 && &l[4..5] == "-" && &l[23..25] == "Z "),
        "{stamped}"
    );
    assert!(
        log(&failed, "")
            .text()
            .unwrap()
            .contains("exited with status 4")
    );
    assert!(
        log(&timed_out, "")
            .text()
            .unwrap()
            .contains("timeout of 1.000 s reached")
    );

    // Outputs: a list, one file, or all as a zip.
    let list: Value = c
        .get(server.url(&format!("/system/outputs/probe/{ok}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        list,
        json!([{"path": "a.txt", "size": 1}, {"path": "b/c.txt", "size": 1}])
    );
    assert_eq!(
        output(&server, "probe", &ok, "b/c.txt"),
        (200, b"C".to_vec())
    );
    assert_eq!(output(&server, "probe", &ok, "..%2F..%2Fjob.json").0, 404);
    assert_eq!(output(&server, "probe", &ok, "nope").0, 404);
    let zip = c
        .get(server.url(&format!("/system/outputs/probe/{ok}?format=zip")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    assert_eq!(archive.len(), 2);

    // Paging.
    let page: Value = c
        .get(server.url("/system/logs/probe?limit=2"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(page["jobs"].as_object().unwrap().len(), 2);
    assert_eq!(page["remaining_jobs"], 1);
    let next = page["next_page"].as_str().unwrap();
    let rest: Value = c
        .get(server.url(&format!("/system/logs/probe?limit=2&page={next}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rest["jobs"].as_object().unwrap().len(), 1);
    assert!(rest.get("next_page").is_none());

    // Delete one, then the finished ones.
    assert_eq!(
        c.delete(server.url(&format!("/system/logs/probe/{failed}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(log(&failed, "").status(), 404);
    assert_eq!(
        c.delete(server.url(&format!("/system/logs/probe/{failed}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(log("probe-../../services", "").status(), 404);
    let running = submit(&server, "probe", b"sleep 100000\n");
    assert_eq!(
        c.delete(server.url("/system/logs/probe"))
            .send()
            .unwrap()
            .status(),
        204
    );
    // As in OSCAR: without ?all, only succeeded jobs go; failed ones stay to be read.
    let left = jobs(&server, "probe");
    assert!(left.contains_key(&running), "{left:?}");
    assert!(
        left.values().all(|j| j["status"] != "Succeeded"),
        "{left:?}"
    );
    assert!(left.values().any(|j| j["status"] == "Failed"), "{left:?}");
    // ?all takes what Go's ParseBool takes.
    assert_eq!(
        c.delete(server.url("/system/logs/probe?all=yes"))
            .send()
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        c.delete(server.url("/system/logs/probe?all=1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(jobs(&server, "probe").is_empty());
}

#[test]
fn failed_sync_calls_leave_a_bounded_log_history() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-failed-runs", "3"]);
    deploy(&server, &guest("sandbox-probe"), json!({"name": "probe"}));
    for i in 0..5 {
        let (status, _, _) = run(
            &server,
            "probe",
            b64(format!("print attempt {i}\nexit 2\n").as_bytes()),
        );
        assert_eq!(status, 500);
    }
    assert_eq!(run(&server, "probe", b64(b"print fine\n")).0, 200);
    let history = eventually_some("the newest failed runs' logs", || {
        let all = jobs(&server, "probe");
        if all.len() != 3 || !all.values().all(|j| j["kind"] == "run") {
            return None;
        }
        let attempts: Vec<String> = all
            .keys()
            .map(|job| {
                client()
                    .get(server.url(&format!("/system/logs/probe/{job}")))
                    .send()
                    .unwrap()
                    .text()
                    .unwrap()
            })
            .collect();
        attempts
            .iter()
            .any(|a| a.contains("attempt 4"))
            .then_some(attempts)
    });
    assert!(
        history
            .iter()
            .all(|log| log.contains("exited with status 2"))
    );
    assert!(
        !history.iter().any(|log| log.contains("attempt 0")),
        "the oldest went first"
    );
}

#[test]
fn retention_and_service_deletion_remove_jobs() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--max-jobs", "3", "--job-workers", "1"]);
    deploy(&server, &guest("uppercase"), json!({"name": "upper"}));
    let names: Vec<String> = (0..6)
        .map(|i| submit(&server, "upper", format!("{i}").as_bytes()))
        .collect();
    let all = eventually_some("three jobs kept, all done", || {
        let all = jobs(&server, "upper");
        (all.len() == 3 && all.values().all(|j| j["status"] == "Succeeded")).then_some(all)
    });
    let kept: Vec<&String> = all.keys().collect();
    for name in &names[3..] {
        assert!(kept.contains(&name), "the newest are kept: {kept:?}");
    }
    for name in &names[..3] {
        assert!(!dir.data().join("jobs/upper").join(name).exists());
    }

    // Deleting a service deletes its jobs, running ones included.
    deploy(&server, &guest("sandbox-probe"), json!({"name": "slow"}));
    let running = submit(&server, "slow", b"sleep 100000\n");
    eventually("the job to run", || {
        jobs(&server, "slow")[&running]["status"] == "Running"
    });
    assert_eq!(
        client()
            .delete(server.url("/system/services/slow"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(!dir.data().join("jobs/slow").exists());
    assert_eq!(
        client()
            .get(server.url("/system/logs/slow"))
            .send()
            .unwrap()
            .status(),
        404
    );
    eventually("the running job to be stopped", || {
        dir.scratch_left().is_empty()
    });
}

#[test]
fn metrics_count_what_happened() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    deploy(&server, &guest("sandbox-probe"), json!({"name": "probe"}));
    for _ in 0..3 {
        assert_eq!(run(&server, "probe", b64(b"print ok\n")).0, 200);
    }
    assert_eq!(run(&server, "probe", b64(b"exit 1\n")).0, 500);
    let job = submit(&server, "probe", b"print job\n");
    wait_finished(&server, "probe", 2);
    let _ = job;
    let text = metrics_text(&server);
    for expected in [
        r#"oscar_wasm_invocations_total{kind="sync",outcome="success",service="probe"} 3"#,
        r#"oscar_wasm_invocations_total{kind="sync",outcome="exit",service="probe"} 1"#,
        r#"oscar_wasm_invocations_total{kind="job",outcome="success",service="probe"} 1"#,
        r#"oscar_wasm_invocation_duration_seconds_count{service="probe"} 5"#,
        "oscar_wasm_running_instances 0",
        "oscar_wasm_job_queue_depth 0",
        "oscar_wasm_module_compile_seconds_count 1",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    assert!(
        text.contains("oscar_wasm_module_cache_total{result=\"memory\"}"),
        "{text}"
    );
}
