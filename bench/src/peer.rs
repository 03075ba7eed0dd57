//! The peer: OSCAR's per-invocation path, FaaS Supervisor run once per request with a /bin/sh
//! script doing the same upper-casing, as OSCAR runs it in a container, minus Kubernetes.

use crate::load::Stats;
use base64::Engine as _;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script OSCAR users would write for this service.
pub const SCRIPT: &str = "#!/bin/sh\ntr '[:lower:]' '[:upper:]' < \"$INPUT_FILE_PATH\" > \"$TMP_OUTPUT_DIR/upper.txt\"\n";

/// Runs the supervisor `runs` times on each of `concurrency` threads.
pub fn measure(
    python: &Path,
    body: &[u8],
    expect: &[u8],
    concurrency: usize,
    runs: usize,
) -> Stats {
    let script = base64::engine::general_purpose::STANDARD.encode(SCRIPT);
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let script = script.clone();
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    for _ in 0..runs {
                        let sent = Instant::now();
                        match once(python, &script, body) {
                            Some(out) if out.trim_ascii() == expect => {
                                latencies.push(sent.elapsed())
                            }
                            _ => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed();
    let errors = results.iter().map(|(_, e)| e).sum();
    Stats::new(
        results.into_iter().flat_map(|(l, _)| l).collect(),
        errors,
        elapsed,
    )
}

fn once(python: &Path, script: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(python)
        .args(["-m", "faassupervisor.supervisor"])
        .env("SCRIPT", script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(body).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}
