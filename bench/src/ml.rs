//! The ML inference example's cost per call: `digits` (a small neural network run by tract
//! inside the guest) on one of its sample images, calls one after another on an idle server
//! once Cranelift has compiled it. CPU time and peak memory per call come from the server's
//! own usage meters (`GET /system/metrics`), which measure each invocation exactly.

use crate::server::Process;
use base64::Engine as _;
use bytes::Bytes;
use std::path::Path;
use std::time::{Duration, Instant};

/// Calls measured (after as many unmeasured).
const CALLS: usize = 200;

/// What one call of the example costs.
pub struct Ml {
    /// The module's size in bytes.
    pub size: usize,
    /// Latency percentiles of POST /run, sequential calls.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// Guest CPU time per call (usage meters).
    pub cpu: Duration,
    /// The guest's largest linear memory over the calls, in bytes.
    pub peak_memory: u64,
}

/// Measures `digits.wasm` of `guests` on `examples/wasm/digits/samples/7.png`, if built.
pub fn measure(rt: &tokio::runtime::Runtime, server_bin: &Path, guests: &Path) -> Option<Ml> {
    let wasm = std::fs::read(guests.join("digits.wasm")).ok()?;
    let sample = std::fs::read(guests.join("../digits/samples/7.png")).ok()?;
    let body = Bytes::from(base64::engine::general_purpose::STANDARD.encode(&sample));
    let dir = crate::workdir();
    let server = Process::oscar(server_bin, &dir.path().join("data"), &[]);
    rt.block_on(crate::deploy(server.addr, &wasm, "digits"));
    rt.block_on(crate::wait_optimized(server.addr));
    let mut latencies = Vec::with_capacity(CALLS);
    for i in 0..2 * CALLS {
        let started = Instant::now();
        let (status, answer) = rt.block_on(crate::post(server.addr, "/run/digits", body.clone()));
        assert_eq!(status, 200, "digits: {}", String::from_utf8_lossy(&answer));
        if i >= CALLS {
            latencies.push(started.elapsed());
        }
    }
    latencies.sort();
    let (status, metrics) = rt.block_on(crate::get(server.addr, "/system/metrics"));
    assert_eq!(status, 200, "GET /system/metrics");
    server.stop();
    let totals = &serde_json::from_slice::<serde_json::Value>(&metrics).expect("json")["totals"];
    let calls = totals["executions_count"].as_f64().unwrap_or(1.0).max(1.0);
    let cpu_hours = totals["cpu_hours"].as_f64().unwrap_or(0.0);
    Some(Ml {
        size: wasm.len(),
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        cpu: Duration::from_secs_f64(cpu_hours * 3600.0 / calls),
        peak_memory: totals["peak_memory_bytes"].as_u64().unwrap_or(0),
    })
}
