//! The in-process path: the same invocations through the runtime library, without HTTP.

use crate::load::Stats;
use clap::Parser;
use oscar_wasm::app::App;
use oscar_wasm::config::ServeArgs;
use oscar_wasm::faas;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Runs `body` through decode, invoke and response building on `concurrency` tasks of a
/// runtime with as many worker threads as cores, for `duration` after `warmup`.
pub fn measure(
    wasm: &[u8],
    body: &[u8],
    expect: &[u8],
    concurrencies: &[usize],
    warmup: Duration,
    duration: Duration,
) -> Vec<(usize, Stats)> {
    let dir = crate::workdir();
    let data = dir.path().join("data");
    let args = Args::parse_from([
        "floor",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--max-concurrency",
        "64",
    ]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let app = App::open(&args.serve).await.expect("open app");
        let stored = app
            .services
            .deployer
            .put_module(bytes::Bytes::copy_from_slice(wasm))
            .await
            .expect("module");
        let definition = serde_json::json!({"name": "upper", "module": stored.digest.to_string()});
        app.services
            .deployer
            .create_service(definition)
            .await
            .expect("service");
        let mut results = Vec::new();
        for &concurrency in concurrencies {
            results.push((
                concurrency,
                run(&app, body, expect, concurrency, warmup, duration).await,
            ));
        }
        results
    })
}

async fn run(
    app: &Arc<App>,
    body: &[u8],
    expect: &[u8],
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let app = app.clone();
        let body = body.to_vec();
        let expect = expect.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < end {
                let sent = Instant::now();
                let ok = one(&app, &body).await.is_some_and(|b| b == expect);
                if sent >= start {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                // A driver that never waits would run several invocations before another
                // task is polled (the guests run on the workers): its tail would be its own,
                // not the server's. An HTTP client waits on its socket between requests.
                tokio::task::yield_now().await;
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Stats::new(latencies, errors, duration)
}

/// What POST /run does, minus HTTP.
async fn one(app: &Arc<App>, body: &[u8]) -> Option<Vec<u8>> {
    let deployed = app.services.registry.get("upper")?;
    let level = deployed.service.spec.log_level;
    let input = faas::decode_body(body).ok()?;
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request =
        oscar_wasm::executor::invocation::Request::sync(format!("bench-{call}"), String::new());
    let done = app
        .invocations
        .executor
        .run(deployed, input, request)
        .await
        .ok()?;
    let response = faas::sync_response(done.files, &done.log, level, &done.output).ok()?;
    Some(response.into_body())
}
