//! `oscar-wasm-bench`: the benchmark behind BENCHMARKS.md. `scripts/bench.sh` builds what it
//! needs and runs it; see the README's "Benchmark" section.
//!
//! It measures, in one run on this machine: POST /run over keep-alive HTTP/1.1 at several
//! concurrencies (throughput, latency percentiles, server CPU per request); the in-process floor
//! (the same work through the runtime library, no HTTP); cold paths (upload to first response,
//! restart to first response); peak memory with 100 services; FaaS Supervisor run once per
//! request (OSCAR's per-invocation path); and, when given, `wasmtime serve`.

mod floor;
mod load;
mod peer;
mod server;

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use load::{Stats, Target};
use server::Process;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Benchmarks oscar-wasm and writes BENCHMARKS.md")]
struct Args {
    /// The release `oscar-wasm` binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// Folder of built example modules (uppercase.wasm and the others).
    #[arg(long)]
    guests: PathBuf,
    /// Python with faas-supervisor 1.5.8 installed: measures the peer.
    #[arg(long)]
    python: Option<PathBuf>,
    /// `wasmtime` 48 CLI: measures `wasmtime serve` too (needs --http-module).
    #[arg(long)]
    wasmtime: Option<PathBuf>,
    /// The wasi-http upper-casing core module (bench/http-upper), turned into a component here.
    #[arg(long)]
    http_module: Option<PathBuf>,
    /// Measured seconds per load level.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up seconds before each level.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// The commit measured, for the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
}

const CONCURRENCIES: [usize; 4] = [1, 4, 16, 64];

fn main() {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let uppercase = std::fs::read(args.guests.join("uppercase.wasm"))
        .expect("uppercase.wasm: build the guests first");
    let (largest_name, largest) = largest_module(&args.guests);

    // A 1 KiB text input, sent base64-encoded as OSCAR clients do.
    let input: Vec<u8> = (0..1024)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz .,\n"[i % 30])
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = Bytes::from(b64.encode(&input));
    let expect = Bytes::from(b64.encode(input.to_ascii_uppercase()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::default();

    // 1. POST /run over HTTP.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Process::oscar(
            &args.server_bin,
            &dir.path().join("data"),
            &["--max-concurrency", "64"],
        );
        rt.block_on(deploy(server.addr, &uppercase, "upper"));
        let target = Target {
            addr: server.addr,
            path: "/run/upper".into(),
            body: body.clone(),
            expect: expect.clone(),
            headers: vec![],
        };
        for c in CONCURRENCIES {
            let cpu = server.cpu_time();
            let stats = rt.block_on(load::drive(&target, c, warmup, duration));
            let cpu_per_req = cpu_per_request(server.cpu_time() - cpu, &stats);
            eprintln!("http c={c}: {}", line(&stats));
            report.http.push((c, stats, cpu_per_req));
        }
        server.stop();
    }

    // 2. The in-process floor.
    for (c, stats) in floor::measure(&uppercase, &body, &expect, &[1, 2, 16], warmup, duration) {
        eprintln!("floor c={c}: {}", line(&stats));
        report.floor.push((c, stats));
    }

    // 3. Cold paths.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let server = Process::oscar(&args.server_bin, &data, &[]);
        for (name, wasm) in [("uppercase", &uppercase), (largest_name.as_str(), &largest)] {
            // A custom section makes the module new to the server, so it is really compiled.
            let fresh = with_custom_section(wasm, &format!("bench-{}", std::process::id()));
            let service = format!("cold-{}", name.replace('_', "-"));
            let started = Instant::now();
            rt.block_on(deploy(server.addr, &fresh, &service));
            let (status, _) =
                rt.block_on(post(server.addr, &format!("/run/{service}"), body.clone()));
            let took = started.elapsed();
            eprintln!(
                "upload to first response ({name}, {} KiB): {took:?} (status {status})",
                wasm.len() / 1024
            );
            report
                .cold_upload
                .push((name.to_string(), wasm.len(), took));
        }
        server.stop();
        let started = Instant::now();
        let server = Process::oscar(&args.server_bin, &data, &[]);
        let (status, response) =
            rt.block_on(post(server.addr, "/run/cold-uppercase", body.clone()));
        let took = started.elapsed();
        assert_eq!(
            (status, &response),
            (200, &expect.to_vec()),
            "first response after restart"
        );
        eprintln!("restart to first response: {took:?}");
        report.restart = Some(took);
        server.stop();
    }

    // 4. Memory with 100 services, each with its own module.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Process::oscar(&args.server_bin, &dir.path().join("data"), &[]);
        let (_, idle) = server.memory_kib();
        for i in 0..100 {
            let wasm = with_custom_section(&uppercase, &format!("service-{i}"));
            rt.block_on(deploy(server.addr, &wasm, &format!("svc-{i}")));
            let (status, _) =
                rt.block_on(post(server.addr, &format!("/run/svc-{i}"), body.clone()));
            assert_eq!(status, 200);
        }
        let (peak, now) = server.memory_kib();
        eprintln!("memory: idle {idle} KiB, 100 services peak {peak} KiB, now {now} KiB");
        report.memory = Some((idle, peak, now));
        server.stop();
    }

    // 5. The peer: FaaS Supervisor once per request.
    if let Some(python) = &args.python {
        for c in [1, 2] {
            let stats = peer::measure(python, &body, &expect, c, 10);
            eprintln!("faas-supervisor c={c}: {}", line(&stats));
            report.peer.push((c, stats));
        }
    }

    // 6. wasmtime serve with a wasi-http component doing the same upper-casing.
    if let (Some(wasmtime), Some(module)) = (&args.wasmtime, &args.http_module) {
        let core = std::fs::read(module).expect("http module");
        let component = wit_component::ComponentEncoder::default()
            .module(&core)
            .and_then(|e| {
                e.adapter(
                    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
                )
            })
            .and_then(|e| e.validate(true).encode())
            .expect("component");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("http-upper.wasm");
        std::fs::write(&path, component).expect("write component");
        let addr = free_addr();
        let server = Process::wasmtime(wasmtime, &path, addr);
        let target = Target {
            addr,
            path: "/".into(),
            body: Bytes::from(input.clone()),
            expect: Bytes::from(input.to_ascii_uppercase()),
            headers: vec![],
        };
        for c in CONCURRENCIES {
            let cpu = server.cpu_time();
            let stats = rt.block_on(load::drive(&target, c, warmup, duration));
            let cpu_per_req = cpu_per_request(server.cpu_time() - cpu, &stats);
            eprintln!("wasmtime serve c={c}: {}", line(&stats));
            report.wasmtime.push((c, stats, cpu_per_req));
        }
        server.stop();
    }

    let text = report.render(&args.commit, duration);
    std::fs::write(&args.output, &text).expect("write report");
    println!("{text}");
}

fn largest_module(dir: &Path) -> (String, Vec<u8>) {
    let mut best: Option<(String, Vec<u8>)> = None;
    for entry in std::fs::read_dir(dir).expect("guests folder").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let bytes = std::fs::read(&path).expect("read module");
            if best.as_ref().is_none_or(|(_, b)| bytes.len() > b.len()) {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                best = Some((name, bytes));
            }
        }
    }
    best.expect("no modules in the guests folder")
}

/// Appends a custom section, which changes the module's digest but not its behaviour.
fn with_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn cpu_per_request(cpu: Duration, stats: &Stats) -> Duration {
    let n = stats.latencies.len().max(1) as u32;
    cpu / n
}

/// One request on a fresh connection.
async fn post(addr: SocketAddr, path: &str, body: Bytes) -> (u16, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::post(path)
        .header("host", "bench")
        .body(Full::new(body))
        .expect("request");
    let response = sender.send_request(request).await.expect("send");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

/// Uploads a module and creates service `name` running it.
async fn deploy(addr: SocketAddr, wasm: &[u8], name: &str) {
    let (status, body) = post(addr, "/system/modules", Bytes::copy_from_slice(wasm)).await;
    assert!(
        status == 200 || status == 201,
        "upload: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let digest =
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["digest"].clone();
    let definition = serde_json::json!({"name": name, "module": digest, "log_level": "CRITICAL"});
    let (status, body) = post(
        addr,
        "/system/services",
        Bytes::from(definition.to_string()),
    )
    .await;
    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&body));
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn line(s: &Stats) -> String {
    format!(
        "{:.0}/s p50 {} p90 {} p99 {} max {} errors {}",
        s.throughput(),
        us(s.percentile(50.0)),
        us(s.percentile(90.0)),
        us(s.percentile(99.0)),
        us(s.max()),
        s.errors
    )
}

#[derive(Default)]
struct Report {
    http: Vec<(usize, Stats, Duration)>,
    floor: Vec<(usize, Stats)>,
    cold_upload: Vec<(String, usize, Duration)>,
    restart: Option<Duration>,
    memory: Option<(u64, u64, u64)>,
    peer: Vec<(usize, Stats)>,
    wasmtime: Vec<(usize, Stats, Duration)>,
}

impl Report {
    fn render(&self, commit: &str, duration: Duration) -> String {
        let mut out = String::new();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().next().map(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .unwrap_or("0")
                        .parse::<u64>()
                        .unwrap_or(0)
                })
            })
            .unwrap_or(0);
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `scripts/bench.sh` (`just bench`); re-run it to refresh this file.\n"
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(
            out,
            "| machine | {cpu}, {cores} cores, {:.0} GiB |",
            mem as f64 / 1024.0 / 1024.0
        );
        let _ = writeln!(out, "| date | {date} |\n| commit | `{commit}` |");
        let _ = writeln!(
            out,
            "| workload | the `uppercase` example: a 1 KiB text input sent base64-encoded to POST /run, one output file returned base64-encoded |"
        );
        let _ = writeln!(
            out,
            "| method | keep-alive HTTP/1.1 connections from a load generator in this repo (`bench/`) on the same machine, {} s measured per level after a warm-up |\n",
            duration.as_secs_f64()
        );

        let _ = writeln!(out, "## POST /run over HTTP\n");
        let _ = writeln!(
            out,
            "| concurrency | requests/s | p50 | p90 | p99 | max | server CPU per request | errors |\n|---|---|---|---|---|---|---|---|"
        );
        for (c, s, cpu) in &self.http {
            let _ = writeln!(
                out,
                "| {c} | {:.0} | {} | {} | {} | {} | {} | {} |",
                s.throughput(),
                us(s.percentile(50.0)),
                us(s.percentile(90.0)),
                us(s.percentile(99.0)),
                us(s.max()),
                us(*cpu),
                s.errors
            );
        }
        let _ = writeln!(out, "\n## In-process floor (runtime library, no HTTP)\n");
        let _ = writeln!(
            out,
            "Body decoding, invocation (scratch folders, instantiate, run, outputs, cleanup) and response building, on a tokio runtime with one worker per core.\n"
        );
        let _ = writeln!(
            out,
            "| concurrency | invocations/s | p50 | p99 | max |\n|---|---|---|---|---|"
        );
        for (c, s) in &self.floor {
            let _ = writeln!(
                out,
                "| {c} | {:.0} | {} | {} | {} |",
                s.throughput(),
                us(s.percentile(50.0)),
                us(s.percentile(99.0)),
                us(s.max())
            );
        }
        let _ = writeln!(out, "\n## Cold paths\n\n| path | time |\n|---|---|");
        for (name, size, took) in &self.cold_upload {
            let _ = writeln!(
                out,
                "| upload to first response, `{name}` ({} KiB, compiled on upload) | {} |",
                size / 1024,
                ms(*took)
            );
        }
        if let Some(t) = self.restart {
            let _ = writeln!(
                out,
                "| server start to first response, deployed service (no recompilation) | {} |",
                ms(t)
            );
        }
        if let Some((idle, peak, now)) = self.memory {
            let _ = writeln!(out, "\n## Memory\n\n| state | resident memory |\n|---|---|");
            let _ = writeln!(out, "| idle server | {:.1} MiB |", idle as f64 / 1024.0);
            let _ = writeln!(
                out,
                "| 100 services deployed (100 distinct modules), each invoked once: peak | {:.1} MiB |",
                peak as f64 / 1024.0
            );
            let _ = writeln!(
                out,
                "| the same, afterwards | {:.1} MiB |",
                now as f64 / 1024.0
            );
        }
        if !self.peer.is_empty() {
            let _ = writeln!(
                out,
                "\n## Peer: OSCAR's FaaS Supervisor, once per request\n"
            );
            let _ = writeln!(
                out,
                "PyPI faas-supervisor 1.5.8 run as OSCAR runs it in a container (minus Kubernetes): one process per invocation, the body on stdin, a /bin/sh script doing the same upper-casing.\n"
            );
            let _ = writeln!(
                out,
                "| parallel runs | invocations/s | p50 | p99 |\n|---|---|---|---|"
            );
            for (c, s) in &self.peer {
                let _ = writeln!(
                    out,
                    "| {c} | {:.2} | {} | {} |",
                    s.throughput(),
                    ms(s.percentile(50.0)),
                    ms(s.percentile(99.0))
                );
            }
        }
        if !self.wasmtime.is_empty() {
            let _ = writeln!(
                out,
                "\n## `wasmtime serve` 48 with a wasi-http component (no files)\n"
            );
            let _ = writeln!(
                out,
                "The body upper-cased in memory by a wasi-http handler: what a user could run instead, without OSCAR's file contract.\n"
            );
            let _ = writeln!(
                out,
                "| concurrency | requests/s | p50 | p99 | server CPU per request |\n|---|---|---|---|---|"
            );
            for (c, s, cpu) in &self.wasmtime {
                let _ = writeln!(
                    out,
                    "| {c} | {:.0} | {} | {} | {} |",
                    s.throughput(),
                    us(s.percentile(50.0)),
                    us(s.percentile(99.0)),
                    us(*cpu)
                );
            }
        }

        let _ = writeln!(
            out,
            "\n## Ratios and targets\n\n| figure | value | target |\n|---|---|---|"
        );
        let http = |c: usize| {
            self.http
                .iter()
                .find(|(k, _, _)| *k == c)
                .map(|(_, s, _)| s)
        };
        let floor_best = self
            .floor
            .iter()
            .map(|(_, s)| s.throughput())
            .fold(0.0, f64::max);
        if let Some(s) = http(16) {
            let _ = writeln!(
                out,
                "| requests/s at concurrency 16 | {:.0} | ≥ 5,000 |",
                s.throughput()
            );
            if floor_best > 0.0 {
                let _ = writeln!(
                    out,
                    "| HTTP / in-process floor (best) | {:.0}% | ≥ 60% |",
                    100.0 * s.throughput() / floor_best
                );
            }
            if let Some(peer) = self
                .peer
                .iter()
                .map(|(_, p)| p.throughput())
                .reduce(f64::max)
            {
                let _ = writeln!(
                    out,
                    "| oscar-wasm / FaaS Supervisor throughput | {:.0}x | ≥ 100x |",
                    s.throughput() / peer
                );
            }
            if let Some((_, w, _)) = self.wasmtime.iter().find(|(k, _, _)| *k == 16) {
                let _ = writeln!(
                    out,
                    "| oscar-wasm / `wasmtime serve` throughput at 16 | {:.0}% | (reference) |",
                    100.0 * s.throughput() / w.throughput()
                );
            }
        }
        if let Some(s) = http(4) {
            let _ = writeln!(
                out,
                "| p50 / p99 at concurrency 4 | {} / {} | ≤ 1 ms / ≤ 5 ms |",
                us(s.percentile(50.0)),
                us(s.percentile(99.0))
            );
        }
        if let Some(t) = self.restart {
            let _ = writeln!(
                out,
                "| first response after restart | {} | ≤ 20 ms |",
                ms(t)
            );
        }
        out
    }
}
