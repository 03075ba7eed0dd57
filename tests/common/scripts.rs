//! Script services (Python, JavaScript) through the clients users have: our CLI on an
//! example's service file, a file put into a bucket, and oscar-python on an FDL file.

use super::*;
use serde_json::Value;

/// Applies `service_file` with our CLI (a path from the repository's root) and runs
/// `service` on `input`; the answer.
pub fn apply_and_run(server: &Server, service_file: &str, service: &str, input: &[u8]) -> String {
    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], stdin: &[u8]| oscar_cli(Some(&server.base), home.path(), args, stdin);
    cli(&["service", "apply", service_file], b"").ok();
    cli(&["run", service, "-i", "-"], input).ok()
}

/// Puts `text` under `bucket`/in/ of the embedded store and waits for `service`'s job; its
/// log and the `counts.json` it left under `bucket`/out/.
pub fn counted_from_bucket(
    server: &Server,
    bucket: &str,
    service: &str,
    text: &[u8],
) -> (String, Value) {
    let store = s3(server.s3.as_deref().unwrap(), bucket, "oscar", "oscar");
    put(&store, "in/text.txt", text).unwrap();
    let jobs = wait_jobs(server, service, 1);
    let (job, record) = jobs.iter().next().unwrap();
    let log = log_of(server, service, job);
    assert_eq!(record["status"], "Succeeded", "{log}");
    let counts = serde_json::from_slice(&get(&store, "out/counts.json").unwrap()).unwrap();
    (log, counts)
}

/// oscar-python's create_service on an FDL naming `image` and the file `script_file` (which
/// holds `script`), then run_service on `input`; the decoded answer.
pub fn through_oscar_python(
    server: &Server,
    dir: &TestDir,
    (image, service): (&str, &str),
    (script_file, script): (&str, &str),
    input: &str,
) -> String {
    let work = dir
        .data()
        .parent()
        .unwrap()
        .join(format!("oscar-python-{service}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join(script_file), script).unwrap();
    std::fs::write(
        work.join("service.yaml"),
        format!(
            "functions:\n  oscar:\n  - wasm:\n      name: {service}\n      image: {image}\n      \
             script: {script_file}\n      cpu: 0.5\n      memory: 128Mi\n"
        ),
    )
    .unwrap();
    run_python(
        r#"
import base64, os, sys
from oscar_python.client import Client
endpoint, fdl, service, text = sys.argv[1:5]
c = Client({"cluster_id": "wasm", "endpoint": endpoint, "user": "oscar", "password": "any",
            "ssl": "False"})
assert c.create_service(fdl).status_code == 201
print(base64.b64decode(c.run_service(service, input=text).text).decode(), end="")
"#,
        &[
            &server.base,
            work.join("service.yaml").to_str().unwrap(),
            service,
            input,
        ],
        server,
    )
}
