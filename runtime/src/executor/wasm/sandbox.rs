//! Runs one guest to completion as a fiber on the tokio worker that polls it: no handoff to
//! another thread. It yields to the worker at every epoch tick (so a busy guest shares it and
//! its deadline, CPU budget and output caps are checked), and its file operations run inline
//! (they are on the scratch folders, small and local), as `wasmtime serve` runs its guests.
//!
//! The guest sees its input folder read-only at [`GUEST_INPUT_DIR`] and its output folder
//! read-write at [`GUEST_OUTPUT_DIR`], and no other folder but a runtime service's script
//! folder (read-only) and the service's `mount` (read-write, or read-only for a copy of an external store), when it has them; the service's
//! environment plus INPUT_FILE_PATH, TMP_INPUT_DIR and TMP_OUTPUT_DIR; no sockets, and for
//! components wasi:http requests only to the service's `allowed_outbound_hosts`; stdout and
//! stderr merged into one captured stream, as FaaS Supervisor merges them.

use super::capture::CappedPipe;
use crate::executor::invocation::Exit;
use crate::faas::outputs::{self, OutputLimits};
use crate::wasm::meter::{CpuMeter, MeteredLimits};
use crate::wasm::{GuestClock, Interrupt, Interrupted, Linked, P1State, P2State};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Where the guest sees its input folder.
pub const GUEST_INPUT_DIR: &str = "/tmp/input";
/// Where the guest sees its output folder.
pub const GUEST_OUTPUT_DIR: &str = "/tmp/output";

/// Everything one run needs.
pub struct GuestRun<'a> {
    /// The pre-linked module (its stores use the engine that compiled it).
    pub linked: &'a Linked,
    /// argv[0]: the service name.
    pub program: &'a str,
    /// The service's environment variables.
    pub env: &'a [(String, String)],
    /// Host folder holding the input file.
    pub input_dir: &'a Path,
    /// Name of the input file inside it.
    pub input_file: &'a str,
    /// Host output folder.
    pub output_dir: &'a Path,
    /// Linear-memory limit in bytes.
    pub memory_limit: u64,
    /// When the run is stopped.
    pub deadline: Instant,
    /// Bytes of stdout and stderr kept; the rest is dropped.
    pub output_capacity: usize,
    /// Caps on the output folder, checked while the guest runs.
    pub output_limits: OutputLimits,
    /// A runtime service's script folder, seen read-only at [`crate::runtimes::APP_DIR`].
    pub app_dir: Option<&'a Path>,
    /// The service's `mount`: a host folder, where the guest sees it, and whether it may
    /// write there (the embedded store's folder; an external store's copy is read-only).
    pub mount: Option<(&'a Path, &'a str, bool)>,
    /// Where a component's outgoing wasi:http requests may go (its deadline is the run's).
    pub outbound: crate::wasm::outbound::Outbound,
    /// CPU time the run may use (the service's `cpu` share of its timeout), when limited.
    pub cpu_budget: Option<Duration>,
}

/// How the guest ended and what it printed.
pub struct RunOutput {
    /// The end.
    pub exit: Exit,
    /// stdout and stderr, merged (up to the cap).
    pub output: Vec<u8>,
    /// Bytes of stdout and stderr dropped past the cap.
    pub output_dropped: u64,
    /// CPU time the run used (the guest and the host calls it made).
    pub cpu: Duration,
    /// The guest's largest linear memory, in bytes.
    pub peak_memory: u64,
}

/// The guest's WASI context: its arguments and environment, the preopened folders, its
/// output into `pipe`, its own clock, and no network.
fn wasi_builder(r: &GuestRun<'_>, pipe: &CappedPipe) -> wasmtime::Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    // File operations run inline on the worker polling the guest instead of a trip through
    // tokio's blocking pool each (a guest's files are small and local; the pool's handoff
    // cost more than the operations); this must precede the preopens, which capture it.
    builder.allow_blocking_current_thread(true);
    builder
        .args(&[r.program])
        .envs(r.env)
        .env(
            "INPUT_FILE_PATH",
            format!("{GUEST_INPUT_DIR}/{}", r.input_file),
        )
        .env("TMP_INPUT_DIR", GUEST_INPUT_DIR)
        .env("TMP_OUTPUT_DIR", GUEST_OUTPUT_DIR)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder.preopened_dir(r.input_dir, GUEST_INPUT_DIR, FsPerms::ReadOnly)?;
    builder.preopened_dir(r.output_dir, GUEST_OUTPUT_DIR, FsPerms::ReadWrite)?;
    if let Some(app) = r.app_dir {
        builder.preopened_dir(app, crate::runtimes::APP_DIR, FsPerms::ReadOnly)?;
    }
    if let Some((dir, guest, writable)) = r.mount {
        let perms = if writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder.preopened_dir(dir, guest, perms)?;
    }
    builder.stdout(pipe.clone()).stderr(pipe.clone());
    Ok(builder)
}

/// Runs the guest to its end, or to its deadline. Errors are the host's (a preopen that could
/// not be opened), never the guest's.
pub async fn run(r: GuestRun<'_>) -> wasmtime::Result<RunOutput> {
    let pipe = CappedPipe::new(r.output_capacity);
    let mut builder = wasi_builder(&r, &pipe)?;
    let clock = GuestClock {
        origin: Instant::now(),
    };
    builder.monotonic_clock(clock);

    let limits = MeteredLimits::new(
        StoreLimitsBuilder::new()
            .memory_size(usize::try_from(r.memory_limit).unwrap_or(usize::MAX))
            .table_elements(crate::wasm::MAX_TABLE_ELEMENTS)
            .build(),
    );
    let interrupt = Interrupt {
        deadline: r.deadline,
    };
    let cpu = Arc::new(CpuMeter::default());
    let check = tick_check(&r, interrupt.clone(), cpu.clone());
    // A guest waiting on a host call (a p2 sleep, an outgoing request) runs no wasm, so no
    // tick reaches it: this bound stops it at its deadline all the same.
    let deadline = tokio::time::Instant::from_std(r.deadline);

    let (exit, peak_memory) = match r.linked {
        // The executor refuses these before they reach a file-processing run.
        Linked::Http(_) => wasmtime::bail!("an HTTP service has no file-processing entry point"),
        Linked::Core(pre) => {
            let state = P1State {
                wasi: builder.build_p1(),
                limits,
                interrupt,
                clock,
            };
            let mut store = guarded_store(r.linked.engine(), state, check);
            let guest = async {
                let instance = pre
                    .instantiate_async(&mut store)
                    .instrument(tracing::debug_span!("instantiate"))
                    .await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start
                    .call_async(&mut store, ())
                    .instrument(tracing::debug_span!("guest"))
                    .await
            };
            let exit = match tokio::time::timeout_at(deadline, cpu.measure(guest)).await {
                Ok(Ok(())) => Exit::Success,
                Ok(Err(e)) => classify(e),
                Err(_) => Exit::Timeout,
            };
            (exit, store.data().limits.peak_memory())
        }
        Linked::Component(pre) => {
            let state = P2State {
                ctx: builder.build(),
                table: ResourceTable::new(),
                limits,
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                hooks: r.outbound.clone(),
            };
            let mut store = guarded_store(r.linked.engine(), state, check);
            let guest = async {
                let command = pre
                    .instantiate_async(&mut store)
                    .instrument(tracing::debug_span!("instantiate"))
                    .await?;
                command
                    .wasi_cli_run()
                    .call_run(&mut store)
                    .instrument(tracing::debug_span!("guest"))
                    .await
            };
            let exit = match tokio::time::timeout_at(deadline, cpu.measure(guest)).await {
                Ok(Ok(Ok(()))) => Exit::Success,
                Ok(Ok(Err(()))) => Exit::Status(1),
                Ok(Err(e)) => classify(e),
                Err(_) => Exit::Timeout,
            };
            (exit, store.data().limits.peak_memory())
        }
    };
    let (output, output_dropped) = pipe.contents();
    Ok(RunOutput {
        exit,
        output,
        output_dropped,
        cpu: cpu.spent(),
        peak_memory,
    })
}

/// What runs at every epoch tick (10 ms): cheap, and it stops loops that never call the host.
/// It also measures the output folder, so a module filling the disk is stopped within a tick
/// or two instead of at the end; a folder that is slow to measure (thousands of entries) is
/// measured less often, at most a tenth of the guest's time. Then the guest yields.
fn tick_check(
    r: &GuestRun<'_>,
    watch: Interrupt,
    cpu: Arc<CpuMeter>,
) -> impl FnMut() -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static {
    let output_dir = r.output_dir.to_path_buf();
    let output_limits = r.output_limits;
    let cpu_budget = r.cpu_budget;
    let mut next_measure = Instant::now();
    move || {
        watch.check().map_err(wasmtime::Error::new)?;
        if let Some(budget) = cpu_budget
            && cpu.spent() > budget
        {
            return Err(wasmtime::Error::new(Interrupted::CpuBudget));
        }
        let now = Instant::now();
        if now >= next_measure {
            outputs::check_usage(&output_dir, output_limits)
                .map_err(|e| wasmtime::Error::new(Interrupted::Limit(e.to_string())))?;
            next_measure = Instant::now() + now.elapsed() * 10;
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Store data that carries its memory limits.
trait Limited: Send + 'static {
    fn limits(&mut self) -> &mut MeteredLimits;
}

impl Limited for P1State {
    fn limits(&mut self) -> &mut MeteredLimits {
        &mut self.limits
    }
}

impl Limited for P2State {
    fn limits(&mut self) -> &mut MeteredLimits {
        &mut self.limits
    }
}

/// A store for one run: its memory limited, and `check` run at every epoch tick, after which
/// the guest yields to its worker.
fn guarded_store<T: Limited>(
    engine: &Engine,
    state: T,
    mut check: impl FnMut() -> wasmtime::Result<UpdateDeadline> + Send + Sync + 'static,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| s.limits());
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| check());
    store
}

fn classify(error: wasmtime::Error) -> Exit {
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        return if *code == 0 {
            Exit::Success
        } else {
            Exit::Status(*code)
        };
    }
    match error.downcast_ref::<Interrupted>() {
        Some(Interrupted::Timeout | Interrupted::CpuBudget) => Exit::Timeout,
        Some(Interrupted::Limit(reason)) => Exit::Limit(reason.clone()),
        None => Exit::Trap(describe_trap(&error)),
    }
}

/// The trap's reason, then the guest's stack (function names when the module has them).
pub fn describe_trap(error: &wasmtime::Error) -> String {
    let reason = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!(
            "wasm trap: {}",
            trap.to_string().trim_start_matches("wasm trap: ")
        ),
        None => format!("{error:#}"),
    };
    match error.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(backtrace) => format!("{reason}\n{backtrace}"),
        None => reason,
    }
}
