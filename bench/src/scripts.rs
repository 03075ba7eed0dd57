//! Script services next to a compiled one: the Python and JavaScript runtimes
//! (`oscar-wasm/python:3.14`, `oscar-wasm/javascript:1`) running a script that upper-cases
//! the input, beside the Rust `uppercase` module, on one server. Measured: the first script
//! service of each language on a new server (the runtime compiled by Winch) to its first
//! answer; POST /run at concurrency 1 and 16; the server's resident memory idle with both
//! runtimes loaded, and its growth per concurrent call.

use crate::server::Process;
use crate::wrk::{Figures, Load, Wrk};
use crate::{deploy, post, wait_optimized};
use bytes::Bytes;
use std::path::Path;
use std::time::{Duration, Instant};

/// The Python script: what `uppercase` does.
const PYTHON: &str = "import os\n\
with open(os.environ['INPUT_FILE_PATH'], 'rb') as f:\n    data = f.read()\n\
with open(os.path.join(os.environ['TMP_OUTPUT_DIR'], 'upper.txt'), 'wb') as f:\n    f.write(data.upper())\n";

/// The JavaScript script: the same.
const JAVASCRIPT: &str = "writeFile(env.TMP_OUTPUT_DIR + '/upper.txt', \
readTextFile(env.INPUT_FILE_PATH).toUpperCase());\n";

/// Concurrencies measured.
pub const CONCURRENCIES: [usize; 2] = [1, 16];

/// One service's figures.
pub struct Row {
    /// "Rust module", "Python script", "JavaScript script".
    pub what: &'static str,
    /// Creation of the first service of its kind on a new server to its first answer
    /// (`None` for the Rust module, measured with the other uploads).
    pub first_answer: Option<Duration>,
    /// Concurrency, figures, server CPU per request.
    pub load: Vec<(usize, Figures, Duration)>,
    /// Resident memory above idle at concurrency 16, per connection, in KiB.
    pub per_call_kib: u64,
}

/// The section's figures.
pub struct Scripts {
    /// The services.
    pub rows: Vec<Row>,
    /// Resident memory of a server that has run nothing, in KiB.
    pub empty_kib: u64,
    /// Resident memory of the server idle after both runtimes ran, in KiB.
    pub idle_kib: u64,
}

/// What the section needs.
pub struct Setup<'a> {
    pub server_bin: &'a Path,
    pub runtimes_dir: &'a Path,
    pub uppercase: &'a [u8],
    pub body: &'a Bytes,
    pub expect: &'a Bytes,
    pub wrk: &'a Wrk,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs the section on one new server.
pub fn measure(rt: &tokio::runtime::Runtime, setup: &Setup<'_>) -> Scripts {
    let dir = crate::workdir();
    let runtimes = setup.runtimes_dir.to_str().expect("runtimes dir");
    let server = Process::oscar(
        setup.server_bin,
        &dir.path().join("data"),
        &["--max-concurrency", "64", "--runtimes-dir", runtimes],
    );
    let empty_kib = server.memory_kib().1;
    rt.block_on(deploy(server.addr, setup.uppercase, "upper"));
    let mut first = Vec::new();
    for (name, image, script) in [
        ("pyupper", "oscar-wasm/python:3.14", PYTHON),
        ("jsupper", "oscar-wasm/javascript:1", JAVASCRIPT),
    ] {
        let started = Instant::now();
        rt.block_on(create(server.addr, name, image, script));
        check(rt, &server, name, setup);
        let took = started.elapsed();
        eprintln!("first {image} service to first answer: {took:?}");
        first.push(took);
        // Each runtime is measured on an idle server, not beside the other's compilation.
        rt.block_on(wait_optimized(server.addr));
    }
    for name in ["upper", "pyupper", "jsupper"] {
        check(rt, &server, name, setup);
    }
    settle();
    let idle_kib = server.memory_kib().1;
    let mut rows = Vec::new();
    for (what, name, first_answer) in [
        ("Rust module (`uppercase`)", "upper", None),
        ("Python script", "pyupper", Some(first[0])),
        ("JavaScript script", "jsupper", Some(first[1])),
    ] {
        let (load, peak_kib) = levels(&server, name, setup);
        settle();
        let idle = server.memory_kib().1;
        rows.push(Row {
            what,
            first_answer,
            load,
            per_call_kib: peak_kib.saturating_sub(idle) / 16,
        });
    }
    server.stop();
    Scripts {
        rows,
        empty_kib,
        idle_kib,
    }
}

/// Lets the server return what the last calls used (pool slots are reset lazily).
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

/// One call answers the upper-cased input.
fn check(rt: &tokio::runtime::Runtime, server: &Process, name: &str, setup: &Setup<'_>) {
    let (status, answer) = rt.block_on(post(
        server.addr,
        &format!("/run/{name}"),
        setup.body.clone(),
    ));
    assert_eq!(
        (status, answer),
        (200, setup.expect.to_vec()),
        "POST /run/{name}"
    );
}

/// wrk at each concurrency; the peak resident memory sampled during the last level.
fn levels(
    server: &Process,
    name: &str,
    setup: &Setup<'_>,
) -> (Vec<(usize, Figures, Duration)>, u64) {
    let load = Load {
        url: format!("http://{}/run/{name}", server.addr),
        body: setup.body,
        headers: vec![],
    };
    let mut peak = 0;
    let figures = CONCURRENCIES
        .iter()
        .map(|&c| {
            setup.wrk.run(&load, c, setup.warmup);
            let cpu = server.cpu_time();
            let figures = std::thread::scope(|s| {
                let run = s.spawn(|| setup.wrk.run(&load, c, setup.duration));
                while !run.is_finished() {
                    peak = peak.max(server.memory_kib().1);
                    std::thread::sleep(Duration::from_millis(20));
                }
                run.join().expect("wrk thread")
            });
            let cpu = crate::per_request(server.cpu_time() - cpu, figures.requests);
            eprintln!("{name} c={c}: {}", crate::report::line(&figures));
            (c, figures, cpu)
        })
        .collect();
    (figures, peak)
}

/// Creates a script service.
async fn create(addr: std::net::SocketAddr, name: &str, image: &str, script: &str) {
    let definition = serde_json::json!({
        "name": name, "image": image, "script": script, "log_level": "CRITICAL",
    });
    let (status, body) = post(
        addr,
        "/system/services",
        Bytes::from(definition.to_string()),
    )
    .await;
    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&body));
}
