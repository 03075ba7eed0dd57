//! The wasmtime side: one engine for the whole server, the WASI linkers built once at start-up
//! (guests make no symbolic links: [`no_symlinks`]),
//! and compiled modules pre-linked into a [`Runnable`] so that an invocation only instantiates.
//!
//! Three kinds of guest are run natively: WASI preview 1 core modules (what most toolchains
//! emit) through `wasmtime_wasi::p1`, preview 2 command components through
//! `wasmtime_wasi::p2` (both file processing), and `wasi:http/proxy` components ([`http`]:
//! HTTP services). Every kind is linked async: a guest runs as a fiber on the tokio worker
//! that polls its call, yielding at each epoch tick, as `wasmtime serve` runs its guests.
//!
//! Two compilers: Cranelift (optimizing, its artifacts kept on disk) and, for a module or
//! component just uploaded, Winch (a baseline compiler, many times faster to compile, slower
//! code) so that the first call does not wait for Cranelift. (The Python runtime, 31 MB:
//! Winch 3 s, Cranelift 9 s on this machine's two cores, release build.) A [`Runnable`] starts on Winch's code and
//! switches to Cranelift's when [`crate::modules`] has it ready.

pub mod http;
pub mod meter;
mod no_symlinks;
pub mod outbound;
mod poll;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{self, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances: a running guest's deadline, CPU budget and output caps are
/// checked, and it yields its worker, at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a used linear memory slot kept resident and reset in place, see [`pooling`]:
/// with Linux's PAGEMAP_SCAN only the pages a guest wrote are rewritten, so this covers the
/// script runtimes' whole snapshot heaps (CPython's is about 30 MB). Measured on the
/// uppercase script, one keep-alive connection: Python 6.3 ms to 3.6 to 5.5 ms per call
/// (it touches more than the 32 dirty regions wasmtime's scan follows, and the rest is still
/// released and faulted back), JavaScript 6.7 ms to 3.0 ms; Rust modules are unchanged (their
/// memories are smaller than either value).
pub const KEEP_RESIDENT_MEMORY: usize = 64 << 20;
/// Where the kernel lacks PAGEMAP_SCAN (before Linux 6.7) wasmtime rewrites the whole
/// resident part on every reset, 64 MiB of copying per call; keep the first heap pages only.
pub const KEEP_RESIDENT_MEMORY_WITHOUT_SCAN: usize = 2 << 20;
/// The same for tables.
pub const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// When a guest must stop: its deadline. (A guest whose caller went away stops with the
/// future of its call, which holds its fiber.)
#[derive(Debug, Clone)]
pub struct Interrupt {
    /// The invocation's deadline.
    pub deadline: Instant,
}

/// Why a guest was stopped by the host; raised as the error of the guest's call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// Its deadline passed.
    #[error("deadline reached")]
    Timeout,
    /// It broke a limit on what it may write.
    #[error("{0}")]
    Limit(String),
    /// It used the CPU time its service's `cpu` share allows (a timeout, as a throttled
    /// container would have reached).
    #[error("CPU time budget used up")]
    CpuBudget,
}

impl Interrupt {
    /// `Err` once the guest must stop.
    pub fn check(&self) -> Result<(), Interrupted> {
        if Instant::now() >= self.deadline {
            Err(Interrupted::Timeout)
        } else {
            Ok(())
        }
    }
}

/// The monotonic clock the guest sees, with a known origin so that host code (the
/// interruptible `poll_oneoff`) can convert the guest's absolute times.
#[derive(Debug, Clone, Copy)]
pub struct GuestClock {
    /// The instant the guest's clock reads zero.
    pub origin: Instant,
}

impl wasmtime_wasi::HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Store data of a preview 1 guest.
pub struct P1State {
    /// The guest's WASI context (preopens, env, captured stdio).
    pub wasi: WasiP1Ctx,
    /// Memory and instance limits, and the memory's peak.
    pub limits: meter::MeteredLimits,
    /// When to stop it, checked while it sleeps too.
    pub interrupt: Interrupt,
    /// Its monotonic clock.
    pub clock: GuestClock,
}

/// Store data of a preview 2 command component.
pub struct P2State {
    /// The guest's WASI context.
    pub ctx: WasiCtx,
    /// Resources handed to the component.
    pub table: ResourceTable,
    /// Memory and instance limits, and the memory's peak.
    pub limits: meter::MeteredLimits,
    /// wasi:http's state, for its outgoing requests.
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    /// Where its outgoing requests may go: the service's allow-list.
    pub hooks: outbound::Outbound,
}

impl wasmtime_wasi_http::WasiHttpView for P2State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A compiled module, linked against WASI and ready to instantiate.
pub enum Linked {
    /// A WASI preview 1 core module exporting `_start`.
    Core(wasmtime::InstancePre<P1State>),
    /// A WASI preview 2 command component exporting `wasi:cli/run`.
    Component(CommandPre<P2State>),
    /// A `wasi:http/proxy` component exporting `wasi:http/incoming-handler`: an HTTP service.
    Http(http::HttpPre),
}

impl Linked {
    /// A short name of the guest's ABI, for logs.
    pub fn abi(&self) -> &'static str {
        match self {
            Self::Core(_) => "WASI preview 1 module",
            Self::Component(_) => "WASI preview 2 component",
            Self::Http(_) => "wasi:http/proxy component",
        }
    }

    /// The engine that compiled it, which its stores must use.
    pub fn engine(&self) -> &Engine {
        match self {
            Self::Core(pre) => pre.module().engine(),
            Self::Component(pre) => pre.engine(),
            Self::Http(pre) => pre.engine(),
        }
    }
}

/// Which compiler's code a [`Runnable`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Winch's, while Cranelift's is being compiled.
    Baseline,
    /// Cranelift's.
    Optimized,
}

/// A module ready to run: its linked code, replaced once when optimized code is ready.
pub struct Runnable {
    linked: arc_swap::ArcSwap<Linked>,
    optimized: AtomicBool,
    /// Set when Cranelift refused what Winch took: the module then runs no more.
    refused: std::sync::OnceLock<String>,
}

impl Runnable {
    /// A runnable on `linked`, compiled by `tier`'s compiler.
    pub fn new(linked: Linked, tier: Tier) -> Self {
        Self {
            linked: arc_swap::ArcSwap::from_pointee(linked),
            optimized: AtomicBool::new(tier == Tier::Optimized),
            refused: std::sync::OnceLock::new(),
        }
    }

    /// The code to instantiate now; the reason when the module may not run.
    pub fn linked(&self) -> Result<Arc<Linked>, String> {
        match self.refused.get() {
            Some(reason) => Err(reason.clone()),
            None => Ok(self.linked.load_full()),
        }
    }

    /// Stops the module from running: the optimizing compiler refused it, and baseline code
    /// must never run what the optimized configuration would not.
    pub fn refuse(&self, reason: String) {
        let _ = self.refused.set(reason);
    }

    /// Whose code runs now.
    pub fn tier(&self) -> Tier {
        if self.optimized.load(Ordering::Acquire) {
            Tier::Optimized
        } else {
            Tier::Baseline
        }
    }

    /// Switches to optimized code; calls already running finish on the old code.
    pub fn optimize(&self, linked: Linked) {
        self.linked.store(Arc::new(linked));
        self.optimized.store(true, Ordering::Release);
    }

    /// A short name of the guest's ABI, for logs.
    pub fn abi(&self) -> &'static str {
        self.linked.load().abi()
    }
}

/// Why an upload cannot become a runnable module; each is the user's to fix (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The bytes do not start with the WebAssembly magic number.
    #[error("the body is not a WebAssembly module (it does not start with \"\\0asm\")")]
    NotWasm,
    /// Malformed or invalid WebAssembly.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// Imports that the runtime does not provide.
    #[error("the module imports what this runtime does not provide: {0}")]
    UnsatisfiedImports(String),
    /// Not a WASI command (no `_start` or `wasi:cli/run`).
    #[error("the module is not a WASI command: {0}")]
    NotCommand(String),
    /// A component of neither world this runtime serves.
    #[error(
        "the component is neither a `wasi:cli/command` (file processing) nor a `wasi:http/proxy` (an HTTP service). As a command: {command}. As a proxy: {proxy}"
    )]
    NoWorld {
        /// Why it is not a command.
        command: String,
        /// Why it is not a proxy.
        proxy: String,
    },
}

/// Engine-wide settings chosen by the server's configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Guests that may run at once: sizes the pooling allocator.
    pub max_instances: u32,
    /// The largest linear memory any guest may have, in bytes.
    pub max_memory: u64,
    /// Compile uploads with Winch first, Cranelift in the background.
    pub baseline: bool,
}

/// The wasmtime engine, its WASI linkers, and the key of its compiled artifacts.
pub struct WasmEngine {
    engine: Engine,
    linkers: Linkers,
    artifact_key: String,
    baseline: Option<Baseline>,
}

/// Winch's engine and its WASI linkers, for uploads' first calls.
struct Baseline {
    engine: Engine,
    linkers: Linkers,
}

/// An engine's linkers, one per kind of guest.
struct Linkers {
    p1: wasmtime::Linker<P1State>,
    p2: component::Linker<P2State>,
    http: component::Linker<http::HttpState>,
}

impl Linkers {
    fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut p2 = component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2)?;
        no_symlinks::shadow_p2(&mut p2)?;
        // Commands may make outgoing requests too, through the service's allow-list.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2)?;
        Ok(Self {
            p1: p1_linker(engine)?,
            p2,
            http: http::proxy_linker(engine)?,
        })
    }
}

impl WasmEngine {
    /// Builds the engine (pooling allocator, epoch interruption) and links WASI once; starts
    /// the thread that ticks the epoch.
    pub fn new(settings: &EngineSettings) -> wasmtime::Result<Arc<Self>> {
        let baseline = if settings.baseline {
            Baseline::new(settings)
                .inspect_err(|e| tracing::warn!(error = %e, "no baseline compiler (Winch) on this machine; uploads wait for Cranelift"))
                .ok()
        } else {
            None
        };
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(settings)))
            .epoch_interruption(true)
            .memory_init_cow(true)
            // With Winch answering first calls, Cranelift compiles in the background on one
            // thread, so that it never takes every core from the calls being served.
            .parallel_compilation(baseline.is_none());
        let engine = Engine::new(&config)?;
        let linkers = Linkers::new(&engine)?;

        let artifact_key = artifact_key(&engine);
        let tickers: Vec<_> = std::iter::once(&engine)
            .chain(baseline.as_ref().map(|b| &b.engine))
            .map(Engine::weak)
            .collect();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = tickers[0].upgrade() {
                    engine.increment_epoch();
                    for other in &tickers[1..] {
                        if let Some(other) = other.upgrade() {
                            other.increment_epoch();
                        }
                    }
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(wasmtime::Error::new)?;
        Ok(Arc::new(Self {
            engine,
            linkers,
            artifact_key,
            baseline,
        }))
    }

    /// The engine, for stores.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Names compiled artifacts: differs whenever the wasmtime version or any setting that
    /// affects compiled code differs, so a stale artifact is never even looked at.
    pub fn artifact_key(&self) -> &str {
        &self.artifact_key
    }

    /// Compiles a core module or a component with the baseline compiler, when there is one
    /// and it takes the upload; `None` otherwise (a feature Winch lacks, any error:
    /// [`compile`] then gives the upload its verdict).
    ///
    /// [`compile`]: WasmEngine::compile
    pub fn compile_baseline(&self, wasm: &[u8]) -> Option<Linked> {
        let baseline = self.baseline.as_ref()?;
        match wasm_kind(wasm)? {
            WasmKind::Module => {
                let module = Module::from_binary(&baseline.engine, wasm).ok()?;
                link_module(&baseline.linkers.p1, &module).ok()
            }
            WasmKind::Component => {
                let component = component::Component::from_binary(&baseline.engine, wasm).ok()?;
                link_component(&baseline.linkers, &component).ok()
            }
        }
    }

    /// Compiles (Cranelift) and links an uploaded module; returns it with its serialised
    /// artifact.
    pub fn compile(&self, wasm: &[u8]) -> Result<(Linked, Vec<u8>), CompileError> {
        let kind = wasm_kind(wasm).ok_or(CompileError::NotWasm)?;
        let invalid = |e: wasmtime::Error| CompileError::Invalid(format!("{e:#}"));
        match kind {
            WasmKind::Component => {
                let component =
                    component::Component::from_binary(&self.engine, wasm).map_err(invalid)?;
                let artifact = component.serialize().map_err(invalid)?;
                Ok((self.link_component(&component)?, artifact))
            }
            WasmKind::Module => {
                let module = Module::from_binary(&self.engine, wasm).map_err(invalid)?;
                let artifact = module.serialize().map_err(invalid)?;
                Ok((self.link_module(&module)?, artifact))
            }
        }
    }

    /// Loads an artifact written by [`WasmEngine::compile`] with this engine.
    ///
    /// Fails, rather than misbehaving, on an artifact from another engine configuration.
    pub fn load_artifact(&self, path: &Path) -> wasmtime::Result<Linked> {
        let kind = Engine::detect_precompiled_file(path)?.ok_or_else(|| {
            wasmtime::format_err!("{} is not a compiled artifact", path.display())
        })?;
        let not_linkable = |e: CompileError| wasmtime::format_err!("{e}");
        // SAFETY: artifacts are written only by this process's `compile`, atomically, into the
        // data folder, and wasmtime checks their engine compatibility header before use.
        match kind {
            wasmtime::Precompiled::Module => {
                let module = unsafe { Module::deserialize_file(&self.engine, path)? };
                self.link_module(&module).map_err(not_linkable)
            }
            wasmtime::Precompiled::Component => {
                let component =
                    unsafe { component::Component::deserialize_file(&self.engine, path)? };
                self.link_component(&component).map_err(not_linkable)
            }
        }
    }

    fn link_module(&self, module: &Module) -> Result<Linked, CompileError> {
        link_module(&self.linkers.p1, module)
    }

    fn link_component(&self, component: &component::Component) -> Result<Linked, CompileError> {
        link_component(&self.linkers, component)
    }
}

/// What an upload's header says it is.
enum WasmKind {
    Module,
    Component,
}

/// `None` when the bytes are not WebAssembly at all. Bytes 4..8 are the version: 1 for core
/// modules, 0x0d layer 1 for components; any other is left for the parser to reject.
fn wasm_kind(wasm: &[u8]) -> Option<WasmKind> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return None;
    }
    Some(if wasm[4..8] == [0x0d, 0x00, 0x01, 0x00] {
        WasmKind::Component
    } else {
        WasmKind::Module
    })
}

/// Links a component as a command, else as an HTTP proxy; the refusal names what each
/// world missed (an import neither provides, an export neither has).
fn link_component(
    linkers: &Linkers,
    component: &component::Component,
) -> Result<Linked, CompileError> {
    let command = match linkers.p2.instantiate_pre(component) {
        Ok(pre) => match CommandPre::new(pre) {
            Ok(pre) => return Ok(Linked::Component(pre)),
            Err(e) => format!("it does not export `wasi:cli/run`: {e:#}"),
        },
        Err(e) => format!("{e:#}"),
    };
    match http::link_proxy(&linkers.http, component) {
        Ok(pre) => Ok(Linked::Http(pre)),
        Err(proxy) => Err(CompileError::NoWorld { command, proxy }),
    }
}

/// Guest bounds that hold whichever compiler made the code: the pooling allocator's, which
/// both engines use, and the stores' limiter ([`MAX_TABLE_ELEMENTS`]).
///
/// Every engine is built on this, so that a module cannot get more tables, memories,
/// instances or table entries by running on Winch's code (the on-demand allocator once let a
/// baseline module grow a table to 33 million entries under a 64 MiB memory limit).
fn pooling(settings: &EngineSettings) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    let n = settings.max_instances.max(1);
    // A component built with the preview 1 adapter holds a few core instances and two
    // memories, the Python runtime 14 core instances (componentize-py's libraries); size the
    // pool for that so components never exhaust it before modules do. Unused instance slots
    // cost address space, not memory.
    // Every guest runs on a fiber: one stack each.
    pool.total_component_instances(n)
        .total_stacks(n)
        .total_core_instances(n * 16)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .max_memories_per_module(1)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(usize::try_from(settings.max_memory).unwrap_or(usize::MAX));
    // Reset a used slot by rewriting the pages the guest touched (found with Linux's
    // PAGEMAP_SCAN where the kernel has it) instead of `madvise`: each `madvise` flushed
    // the TLB of every core, and the guest then faulted its pages back in. A profile under
    // load had those flushes as the largest single cost; with this, requests/s at
    // concurrency 16 went up by half. Up to this many bytes stay resident per used slot.
    pool.linear_memory_keep_resident(keep_resident_memory())
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// [`KEEP_RESIDENT_MEMORY`] where the kernel can scan for written pages (Linux 6.7 and
/// later: PAGEMAP_SCAN), else [`KEEP_RESIDENT_MEMORY_WITHOUT_SCAN`].
pub fn keep_resident_memory() -> usize {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if kernel_has_pagemap_scan(&release) {
        KEEP_RESIDENT_MEMORY
    } else {
        KEEP_RESIDENT_MEMORY_WITHOUT_SCAN
    }
}

/// Whether a kernel release string (`6.18.44-fc`, `5.15.0-91-generic`) is Linux 6.7 or later.
fn kernel_has_pagemap_scan(release: &str) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 7),
        _ => false,
    }
}

/// Entries a guest's table may hold (wasmtime's pooling default, which a C# module in debug
/// mode was seen to need); also each store's limit, so `table.grow` beyond it fails.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

impl Baseline {
    /// Winch's engine, set up as the main one (the same pool, so the same bounds): it runs a
    /// module only until Cranelift's code is ready.
    fn new(settings: &EngineSettings) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config
            .strategy(wasmtime::Strategy::Winch)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(settings)))
            .epoch_interruption(true)
            .memory_init_cow(true);
        let engine = Engine::new(&config)?;
        let linkers = Linkers::new(&engine)?;
        Ok(Self { engine, linkers })
    }
}

/// The preview 1 linker: WASI (async: guests run as fibers) plus the interruptible
/// `poll_oneoff`.
fn p1_linker(engine: &Engine) -> wasmtime::Result<wasmtime::Linker<P1State>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)?;
    poll::shadow_poll_oneoff(&mut linker)?;
    no_symlinks::shadow_p1(&mut linker)?;
    Ok(linker)
}

/// Links a core module: it must be a WASI command importing nothing but preview 1.
fn link_module(
    linker: &wasmtime::Linker<P1State>,
    module: &Module,
) -> Result<Linked, CompileError> {
    match module.get_export("_start") {
        Some(wasmtime::ExternType::Func(_)) => {}
        _ => {
            return Err(CompileError::NotCommand(
                    "it exports no `_start` function; build a program with a main function (a WASI command), not a library".into(),
                ));
        }
    }
    let foreign: Vec<String> = module
        .imports()
        .filter(|i| i.module() != "wasi_snapshot_preview1")
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    if !foreign.is_empty() {
        return Err(CompileError::UnsatisfiedImports(format!(
            "{} (only `wasi_snapshot_preview1` functions are available)",
            foreign.join(", ")
        )));
    }
    linker
        .instantiate_pre(module)
        .map(Linked::Core)
        .map_err(|e| CompileError::UnsatisfiedImports(format!("{e:#}")))
}

/// A stable digest of everything wasmtime says makes compiled code compatible (target, compiler
/// flags, tunables, features and its own version). SHA-256 rather than `DefaultHasher`, whose
/// output may change between Rust releases and would needlessly recompile everything.
fn artifact_key(engine: &Engine) -> String {
    use sha2::Digest as _;
    use std::hash::{Hash, Hasher};
    struct Sha(sha2::Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    format!("wasmtime-{}", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Arc<WasmEngine> {
        WasmEngine::new(&EngineSettings {
            max_instances: 4,
            max_memory: 64 << 20,
            baseline: true,
        })
        .unwrap()
    }

    #[test]
    fn pagemap_scan_is_linux_6_7_and_later() {
        assert!(kernel_has_pagemap_scan("6.18.44-fc-v1098\n"));
        assert!(kernel_has_pagemap_scan("6.7.0"));
        assert!(kernel_has_pagemap_scan("7.0-rc1"));
        assert!(!kernel_has_pagemap_scan("6.6.30-generic"));
        assert!(!kernel_has_pagemap_scan("5.15.0-91-generic"));
        assert!(!kernel_has_pagemap_scan(""));
        assert!(!kernel_has_pagemap_scan("unknown"));
    }

    #[test]
    fn refuses_non_wasm_invalid_and_non_commands() {
        let e = engine();
        assert!(matches!(
            e.compile(b"hello world"),
            Err(CompileError::NotWasm)
        ));
        assert!(matches!(
            e.compile(b"\0asm\x01\0\0\0\x05garbage"),
            Err(CompileError::Invalid(_))
        ));
        let library = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert!(matches!(
            e.compile(&library),
            Err(CompileError::NotCommand(_))
        ));
        let foreign =
            wat::parse_str(r#"(module (import "env" "f" (func)) (func (export "_start")))"#)
                .unwrap();
        let err = e.compile(&foreign).err().unwrap().to_string();
        assert!(err.contains("env::f"), "{err}");
    }

    #[test]
    fn artifacts_round_trip_and_key_names_the_version() {
        let e = engine();
        let wasm = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        let (_, artifact) = e.compile(&wasm).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cwasm");
        std::fs::write(&path, &artifact).unwrap();
        assert!(matches!(e.load_artifact(&path).unwrap(), Linked::Core(_)));
        std::fs::write(&path, b"not an artifact").unwrap();
        assert!(e.load_artifact(&path).is_err());
        assert!(e.artifact_key().starts_with("wasmtime-"));
    }
}
