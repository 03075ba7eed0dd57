//! `oscar-wasm-bench`: the benchmark behind BENCHMARKS.md. `scripts/bench.sh` builds and
//! installs what it needs and runs it; see the README's "Benchmark" section.
//!
//! It measures, in one run on this machine: POST /run over HTTP with `wrk` at several
//! concurrencies (throughput, latency percentiles, server CPU per request); the in-process path
//! (the same work through the runtime library, no HTTP); the bare wasmtime sequence (no
//! runtime library at all); `wasmtime serve` 48 with a wasi-http component, loaded by the same
//! `wrk`; FaaS Supervisor once per request (OSCAR's per-invocation path); upload to first
//! answer for every example module; restart to first answer; Python and JavaScript script
//! services next to the Rust module; the cost as services grow; and, locally and in cluster
//! mode, jobs and bulk files through a bucket.

mod bare;
mod bulk;
mod cluster;
mod floor;
mod load;
mod ml;
mod peer;
mod report;
mod scale;
mod scripts;
mod server;
mod wrk;

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use report::Report;
use server::Process;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wrk::{Load, Wrk};

#[derive(Parser)]
#[command(about = "Benchmarks oscar-wasm and writes BENCHMARKS.md")]
struct Args {
    /// The release `oscar-wasm` binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// Folder of built example modules (uppercase.wasm and the others).
    #[arg(long)]
    guests: PathBuf,
    /// The `wrk` load tool.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
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
    /// Service counts of the scale table (100 distinct modules shared among them).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    scale: Vec<usize>,
    /// `nats-server` (with JetStream): measures cluster mode next to local mode.
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// The script runtimes' folder (runtimes/dist): measures Python and JavaScript services.
    #[arg(long)]
    runtimes_dir: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
    /// The commit measured, for the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
}

/// Every phase's temporary folder, removed when the benchmark ends rather than when its phase
/// does: removing tens of thousands of files (10,000 services, 20,000 objects) right before
/// the next phase made that phase's file creations slow on this machine's journal-less ext4,
/// which skips inodes deleted in the last 30 s when it allocates one (a profile of the jobs
/// batch after the scale phase had most of its kernel time in `find_inode_bit`), so the next
/// phase measured the previous one's clean-up.
static WORKDIRS: std::sync::Mutex<Vec<std::sync::Arc<tempfile::TempDir>>> =
    std::sync::Mutex::new(Vec::new());

/// A temporary folder kept until the benchmark ends (see [`WORKDIRS`]).
pub fn workdir() -> std::sync::Arc<tempfile::TempDir> {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    WORKDIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.clone());
    dir
}

/// Connections per HTTP load level.
const CONCURRENCIES: [usize; 4] = [1, 4, 16, 64];

fn main() {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.duration);
    let warmup = Duration::from_secs_f64(args.warmup);
    let uppercase = std::fs::read(args.guests.join("uppercase.wasm"))
        .expect("uppercase.wasm: build the guests first");
    let wrk = Wrk::new(&args.wrk);

    // A 1 KiB text input, sent base64-encoded as OSCAR clients do.
    let input: Vec<u8> = (0..1024)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz .,\n"[i % 30])
        .collect();
    let upper = input.to_ascii_uppercase();
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = Bytes::from(b64.encode(&input));
    let expect = Bytes::from(b64.encode(&upper));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::default();

    // 1. POST /run over HTTP.
    {
        let dir = crate::workdir();
        let server = Process::oscar(
            &args.server_bin,
            &dir.path().join("data"),
            &["--max-concurrency", "64"],
        );
        rt.block_on(deploy(server.addr, &uppercase, "upper"));
        let (status, answer) = rt.block_on(post(server.addr, "/run/upper", body.clone()));
        assert_eq!((status, answer), (200, expect.to_vec()), "POST /run/upper");
        let load = Load {
            url: format!("http://{}/run/upper", server.addr),
            body: &body,
            headers: vec![],
        };
        report.http = levels(
            &CONCURRENCIES,
            &wrk,
            &load,
            &server,
            "http",
            warmup,
            duration,
        );
        server.stop();
    }

    // 2. The in-process path and 3. the bare wasmtime sequence.
    for (c, stats) in floor::measure(&uppercase, &body, &expect, &[1, 2, 16], warmup, duration) {
        eprintln!("in-process c={c}: {:.0}/s", stats.throughput());
        report.in_process.push((c, stats));
    }
    for (n, stats) in bare::measure(&uppercase, &input, &upper, &[1, 2], warmup, duration) {
        eprintln!("bare wasmtime, {n} threads: {:.0}/s", stats.throughput());
        report.bare.push((n, stats));
    }

    // 4. wasmtime serve with a wasi-http component doing the same upper-casing, and the same
    // component as an HTTP service on our exposed route.
    if let (Some(wasmtime), Some(module)) = (&args.wasmtime, &args.http_module) {
        let dir = crate::workdir();
        let path = dir.path().join("http-upper.wasm");
        let http_component = component(module);
        std::fs::write(&path, &http_component).expect("write component");
        let addr = free_addr();
        let server = Process::wasmtime(wasmtime, &path, addr);
        let load = Load {
            url: format!("http://{addr}/"),
            body: &input,
            headers: vec![],
        };
        report.wasmtime = levels(
            &CONCURRENCIES,
            &wrk,
            &load,
            &server,
            "wasmtime serve",
            warmup,
            duration,
        );
        server.stop();
        report.exposed = exposed(&args, &rt, &wrk, &http_component, &input, warmup, duration);
    }

    // 5. The peer: FaaS Supervisor once per request. It is no server, so no HTTP load tool
    // can drive it: a process per invocation is started here.
    if let Some(python) = &args.python {
        for c in [1, 2] {
            let stats = peer::measure(python, &body, &expect, c, 10);
            eprintln!("faas-supervisor c={c}: {:.2}/s", stats.throughput());
            report.peer.push((c, stats));
        }
    }

    // 6. Upload to first answer, every example module, then restart to first answer.
    {
        let dir = crate::workdir();
        let data = dir.path().join("data");
        let server = Process::oscar(&args.server_bin, &data, &[]);
        for (name, wasm) in modules(&args.guests) {
            // A custom section makes the module new to the server, so it is really compiled.
            let fresh = with_custom_section(&wasm, &format!("bench-{}", std::process::id()));
            let service = format!("cold-{}", name.replace('_', "-"));
            let started = Instant::now();
            rt.block_on(deploy(server.addr, &fresh, &service));
            let (status, _) =
                rt.block_on(post(server.addr, &format!("/run/{service}"), body.clone()));
            let took = started.elapsed();
            eprintln!("upload to first answer ({name}): {took:?} (status {status})");
            report.cold_upload.push((name, wasm.len(), took));
            // Each module is measured on an idle server, not beside the previous one's
            // optimizing compilation.
            rt.block_on(wait_optimized(server.addr));
        }
        server.stop();
        let started = Instant::now();
        let server = Process::oscar(&args.server_bin, &data, &[]);
        let (status, response) =
            rt.block_on(post(server.addr, "/run/cold-uppercase", body.clone()));
        let took = started.elapsed();
        assert_eq!((status, response), (200, expect.to_vec()), "after restart");
        eprintln!("restart to first answer: {took:?}");
        report.restart = Some(took);
        server.stop();
    }

    // 6b. The ML inference example's cost per call.
    report.ml = ml::measure(&rt, &args.server_bin, &args.guests);

    // 7. Python and JavaScript services next to the Rust module.
    if let Some(runtimes_dir) = &args.runtimes_dir {
        let setup = scripts::Setup {
            server_bin: &args.server_bin,
            runtimes_dir,
            uppercase: &uppercase,
            body: &body,
            expect: &expect,
            wrk: &wrk,
            warmup,
            duration,
        };
        report.scripts = Some(scripts::measure(&rt, &setup));
    }

    // 8. Cost as services grow.
    let setup = scale::Setup {
        server_bin: &args.server_bin,
        wasm: &uppercase,
        body: &body,
        expect: &expect,
        wrk: &wrk,
        warmup,
        duration,
    };
    report.scale = scale::measure(&rt, &setup, &args.scale);

    // 9. Cluster mode next to local mode.
    if let Some(nats) = &args.nats_server {
        let probe = std::fs::read(args.guests.join("sandbox-probe.wasm"))
            .expect("sandbox-probe.wasm: build the guests first");
        report.cluster = cluster::measure(&rt, &setup, nats, &probe);
    }

    // The phases' folders go only now (see `workdir`).
    WORKDIRS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let text = report.render(&args.commit, duration);
    std::fs::write(&args.output, &text).expect("write report");
    println!("{text}");
}

/// The wasi-http component as an HTTP service, loaded on its exposed route like `wasmtime
/// serve` is.
fn exposed(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    wrk: &Wrk,
    component: &[u8],
    input: &[u8],
    warmup: Duration,
    duration: Duration,
) -> Vec<(usize, wrk::Figures, Duration)> {
    let dir = crate::workdir();
    let server = Process::oscar(
        &args.server_bin,
        &dir.path().join("data"),
        &["--max-concurrency", "64"],
    );
    let digest = rt.block_on(upload(server.addr, component));
    let definition = serde_json::json!({"name": "upper", "module": digest,
        "log_level": "CRITICAL", "expose": {"api_port": 8080}});
    let (status, body) = rt.block_on(post(
        server.addr,
        "/system/services",
        Bytes::from(definition.to_string()),
    ));
    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&body));
    rt.block_on(wait_optimized(server.addr));
    let path = "/system/services/upper/exposed/";
    let (status, answer) = rt.block_on(post(server.addr, path, Bytes::copy_from_slice(input)));
    assert_eq!(
        (status, answer),
        (200, input.to_ascii_uppercase()),
        "{path}"
    );
    let load = Load {
        url: format!("http://{}{path}", server.addr),
        body: input,
        headers: vec![],
    };
    let rows = levels(
        &CONCURRENCIES,
        wrk,
        &load,
        &server,
        "exposed route",
        warmup,
        duration,
    );
    server.stop();
    rows
}

/// `load` on `server` at each of `concurrencies`, each after a warm-up: the figures and the
/// server's CPU time per request.
fn levels(
    concurrencies: &[usize],
    wrk: &Wrk,
    load: &Load<'_>,
    server: &Process,
    what: &str,
    warmup: Duration,
    duration: Duration,
) -> Vec<(usize, wrk::Figures, Duration)> {
    concurrencies
        .iter()
        .map(|&c| {
            wrk.run(load, c, warmup);
            let cpu = server.cpu_time();
            let figures = wrk.run(load, c, duration);
            let cpu = per_request(server.cpu_time() - cpu, figures.requests);
            eprintln!("{what} c={c}: {}", report::line(&figures));
            (c, figures, cpu)
        })
        .collect()
}

/// Every `.wasm` in `dir`, by name.
fn modules(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut modules: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("guests folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read(&p).expect("read module"))
        })
        .collect();
    modules.sort_by_key(|(_, wasm)| wasm.len());
    modules
}

/// The wasi-http core module turned into a component with the preview 1 proxy adapter.
fn component(module: &Path) -> Vec<u8> {
    let core = std::fs::read(module).expect("http module");
    wit_component::ComponentEncoder::default()
        .module(&core)
        .and_then(|e| {
            e.adapter(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
            )
        })
        .and_then(|e| e.validate(true).encode())
        .expect("component")
}

/// Appends a custom section, which changes the module's digest but not its behaviour.
pub fn with_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
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

pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

pub fn per_request(cpu: Duration, requests: u64) -> Duration {
    cpu / u32::try_from(requests.max(1)).unwrap_or(u32::MAX)
}

/// One request on a fresh connection.
async fn request(addr: SocketAddr, method: &str, path: &str, body: Bytes) -> (u16, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
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

/// POST on a fresh connection.
pub async fn post(addr: SocketAddr, path: &str, body: Bytes) -> (u16, Vec<u8>) {
    request(addr, "POST", path, body).await
}

/// GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    request(addr, "GET", path, Bytes::new()).await
}

/// Waits until no module runs baseline code (Cranelift compiled every upload).
pub async fn wait_optimized(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        let (status, body) = get(addr, "/system/modules").await;
        assert_eq!(status, 200, "GET /system/modules");
        let modules: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let baseline = modules
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["compiled"] == "baseline"));
        if !baseline {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never optimized"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Uploads a module; returns its digest.
pub async fn upload(addr: SocketAddr, wasm: &[u8]) -> String {
    let (status, body) = post(addr, "/system/modules", Bytes::copy_from_slice(wasm)).await;
    assert!(
        status == 200 || status == 201,
        "upload: {status} {}",
        String::from_utf8_lossy(&body)
    );
    let info: serde_json::Value = serde_json::from_slice(&body).expect("json");
    info["digest"].as_str().expect("digest").to_string()
}

/// Creates service `name` running the module `digest`.
pub async fn deploy_service(addr: SocketAddr, digest: &str, name: &str) {
    let definition = serde_json::json!({"name": name, "module": digest, "log_level": "CRITICAL"});
    let (status, body) = post(
        addr,
        "/system/services",
        Bytes::from(definition.to_string()),
    )
    .await;
    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&body));
}

/// Uploads a module and creates service `name` running it.
pub async fn deploy(addr: SocketAddr, wasm: &[u8], name: &str) {
    let digest = upload(addr, wasm).await;
    deploy_service(addr, &digest, name).await;
}
