//! The bare wasmtime sequence: what a program using wasmtime and wasmtime-wasi alone does per
//! invocation, in one process, without HTTP or the runtime library. A scratch folder with
//! `in/` and `out/`, the input written, a WASI preview 1 context with the two preopens and
//! OSCAR's variables, instantiate from an `InstancePre`, `_start`, the output folder read
//! back, the scratch folder removed. The engine is set up as the server's is (pooling
//! allocator with the same slot reset, epoch interruption, scratch on tmpfs when there is
//! one), so what the comparison shows is the cost of everything around wasmtime.

use crate::load::Stats;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Runs the sequence on `threads` threads for `duration` after `warmup`, per thread count.
pub fn measure(
    wasm: &[u8],
    input: &[u8],
    expect: &[u8],
    threads: &[usize],
    warmup: Duration,
    duration: Duration,
) -> Vec<(usize, Stats)> {
    let engine = engine();
    let module = Module::new(&engine, wasm).expect("compile");
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s).expect("link");
    let pre = linker.instantiate_pre(&module).expect("instantiate_pre");
    let root = tempfile::Builder::new()
        .prefix("oscar-wasm-bench-bare-")
        .tempdir_in(scratch_parent())
        .expect("scratch root");
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let (engine, ticking) = (engine.clone(), ticking.clone());
        std::thread::spawn(move || {
            while ticking.load(Ordering::Relaxed) {
                engine.increment_epoch();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let results = threads
        .iter()
        .map(|&n| {
            (
                n,
                run(&pre, root.path(), input, expect, n, warmup, duration),
            )
        })
        .collect();
    ticking.store(false, Ordering::Relaxed);
    let _ = ticker.join();
    results
}

fn engine() -> Engine {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(64)
        .total_memories(64)
        .total_tables(64)
        .max_memory_size(256 << 20)
        .linear_memory_keep_resident(oscar_wasm::wasm::keep_resident_memory())
        .table_keep_resident(oscar_wasm::wasm::KEEP_RESIDENT_TABLE)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .memory_init_cow(true);
    Engine::new(&config).expect("engine")
}

/// /dev/shm when it is there (as the server chooses), else the system's temporary folder.
fn scratch_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn run(
    pre: &InstancePre<WasiP1Ctx>,
    root: &Path,
    input: &[u8],
    expect: &[u8],
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let started = Instant::now();
    let measure_from = started + warmup;
    let end = measure_from + duration;
    let per_thread: Vec<Vec<Duration>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    loop {
                        let began = Instant::now();
                        if began >= end {
                            break;
                        }
                        let dir = root.join(format!("{t}-{n}"));
                        n += 1;
                        let output = invoke(pre, &dir, input);
                        assert_eq!(output, expect, "the bare sequence's output");
                        if began >= measure_from {
                            latencies.push(began.elapsed());
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bare thread"))
            .collect()
    });
    Stats::new(per_thread.concat(), 0, duration)
}

/// One invocation; returns the single output file's contents.
fn invoke(pre: &InstancePre<WasiP1Ctx>, dir: &Path, input: &[u8]) -> Vec<u8> {
    let (input_dir, output_dir) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir(dir).expect("scratch");
    std::fs::create_dir(&input_dir).expect("scratch in");
    std::fs::create_dir(&output_dir).expect("scratch out");
    std::fs::write(input_dir.join("event-file"), input).expect("input");

    let pipe = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder.allow_blocking_current_thread(true);
    builder
        .args(&["upper"])
        .env("INPUT_FILE_PATH", "/tmp/input/event-file")
        .env("TMP_INPUT_DIR", "/tmp/input")
        .env("TMP_OUTPUT_DIR", "/tmp/output")
        .stdout(pipe.clone())
        .stderr(pipe);
    builder
        .preopened_dir(&input_dir, "/tmp/input", FsPerms::ReadOnly)
        .expect("preopen in");
    builder
        .preopened_dir(&output_dir, "/tmp/output", FsPerms::ReadWrite)
        .expect("preopen out");
    let mut store = Store::new(pre.module().engine(), builder.build_p1());
    store.set_epoch_deadline(1000);
    let instance = pre.instantiate(&mut store).expect("instantiate");
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    if let Err(e) = start.call(&mut store, ()) {
        assert!(
            matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))),
            "guest failed: {e:#}"
        );
    }
    drop(store);

    let mut output = Vec::new();
    for entry in std::fs::read_dir(&output_dir).expect("outputs") {
        output = std::fs::read(entry.expect("entry").path()).expect("output");
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
    output
}
