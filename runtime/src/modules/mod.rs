//! The content-addressed module store and its compiled-artifact cache.
//!
//! - The modules as uploaded, named by their SHA-256, are kept by a [`ModuleBlobs`]: a folder
//!   on one machine (`modules/<hex>.wasm`, [`local::LocalModules`]), or a NATS object store
//!   shared by a cluster (`crate::cluster::modules`).
//! - Each server keeps its own compiled artifacts under its data folder,
//!   `compiled/<engine key>/<hex>.cwasm`. The engine key changes with the wasmtime version and
//!   configuration, so another build recompiles from the module instead of loading a stale
//!   artifact.
//!
//! In memory, each module in use is kept as a pre-linked [`Runnable`], shared by every service
//! that names it. Replacing a service's module swaps an `Arc`, so running invocations keep theirs.
//!
//! An upload is answered once the baseline compiler (Winch) has compiled it; Cranelift
//! compiles it again on the optimizer thread, one module at a time, writes the artifact and
//! switches the [`Runnable`] to its code. A server stopped before that compiles the module
//! with Cranelift when it next loads it, as for any missing artifact.

use crate::fsutil;
use crate::metrics::Metrics;
use crate::stores::StoreError;
use crate::wasm::{CompileError, Runnable, Tier, WasmEngine};
use sha2::Digest as _;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, mpsc};

pub mod local;

/// Where modules' bytes are kept (see [`crate::stores`]).
#[async_trait::async_trait]
pub trait ModuleBlobs: Send + Sync {
    /// Whether a module is stored.
    async fn contains(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// A module's bytes; `None` when it is not stored.
    async fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores a module's bytes (durably, before this returns).
    async fn write(&self, digest: &Digest, wasm: &[u8]) -> Result<(), StoreError>;
    /// Removes a module; `false` when it was not stored.
    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// Every stored module and its size.
    async fn list(&self) -> Result<Vec<(Digest, u64)>, StoreError>;
}

/// A module's identity: the SHA-256 of its bytes, written `sha256:<hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 hex digits>` (or the bare hex).
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        let mut bytes = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut bytes).is_err() {
            return Err(format!(
                "{text:?} is not a module digest \"sha256:<64 hex digits>\""
            ));
        }
        if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("{text:?}: write the digest in lower-case hex"));
        }
        Ok(Self(bytes))
    }

    /// The lower-case hex, used in file names.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// Failures of the module store.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The upload is not a module this runtime can run.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// No module with that digest is stored.
    #[error("no module {0} is stored")]
    NotFound(Digest),
    /// The stored module could not be loaded (corrupted data folder).
    #[error("module {digest} could not be loaded: {reason}")]
    Unloadable { digest: Digest, reason: String },
    /// The file system failed.
    #[error("module store I/O error: {0}")]
    Io(#[from] io::Error),
    /// The store of modules' bytes failed, or is away for now.
    #[error("module store: {0}")]
    Store(#[from] StoreError),
}

/// A stored module, as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size of the uploaded bytes.
    pub size: u64,
    /// Whose code runs it, once loaded: `baseline` (Winch's, while Cranelift compiles it in
    /// the background) or `optimized` (Cranelift's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled: Option<&'static str>,
}

/// The result of storing an upload.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The module's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// False when the same bytes were already stored.
    pub created: bool,
}

/// Uploaded modules on disk and the runnable form of those in use.
pub struct ModuleStore {
    engine: Arc<WasmEngine>,
    metrics: Arc<Metrics>,
    layout: Layout,
    loaded: Loaded,
    /// Serialises writers so that two uploads of one module compile it once.
    write_lock: tokio::sync::Mutex<()>,
    /// The thread compiling modules that run baseline code; stopped with the store.
    optimizer: Optimizer,
}

/// The runnable form of the modules in use, shared with the optimizer thread.
type Loaded = Arc<RwLock<HashMap<Digest, Arc<Runnable>>>>;

/// Runs compile or file work on a thread allowed to block.
async fn cpu<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ModuleError> + Send + 'static,
) -> Result<T, ModuleError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ModuleError::Io(io::Error::other(format!("a compile task failed: {e}"))))?
}

/// Where a module's bytes and artifact are.
#[derive(Clone)]
struct Layout {
    blobs: Arc<dyn ModuleBlobs>,
    artifact_dir: PathBuf,
}

impl Layout {
    fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.artifact_dir.join(format!("{}.cwasm", digest.hex()))
    }
}

/// The optimizer thread and its queue. Dropping it skips what is still queued (those modules
/// are compiled when next loaded) and waits for the module being compiled.
struct Optimizer {
    queue: Option<mpsc::Sender<Optimize>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Optimizer {
    fn start(engine: Arc<WasmEngine>, layout: Layout, loaded: Loaded) -> io::Result<Self> {
        let (queue, jobs) = mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("module-optimizer".into())
            .spawn(move || {
                // Background work: the lowest priority, so that calls are served first. (On
                // Linux a thread has its own nice value; failing to lower it is harmless.)
                let _ = rustix::process::setpriority_process(None, 19);
                optimize_all(&engine, &layout, &loaded, jobs, &stopped)
            })?;
        Ok(Self {
            queue: Some(queue),
            stop,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Optimize) {
        if let Some(queue) = &self.queue {
            // The thread outlives the sender, so this cannot fail.
            let _ = queue.send(job);
        }
    }
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A module to compile with Cranelift.
struct Optimize {
    digest: Digest,
    wasm: Vec<u8>,
    runnable: Arc<Runnable>,
}

impl ModuleStore {
    #[cfg(test)]
    /// Opens (creating) the store under `data_dir`, its modules in a folder there.
    pub fn open(
        data_dir: &Path,
        engine: Arc<WasmEngine>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let blobs = Arc::new(local::LocalModules::open(data_dir)?);
        Self::with_blobs(data_dir, blobs, engine, metrics)
    }

    /// Opens the store over `blobs`, its compiled artifacts under `data_dir`.
    pub fn with_blobs(
        data_dir: &Path,
        blobs: Arc<dyn ModuleBlobs>,
        engine: Arc<WasmEngine>,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let artifact_dir = data_dir.join("compiled").join(engine.artifact_key());
        fsutil::create_private_dir(&artifact_dir)?;
        fsutil::remove_stale_temporaries(&artifact_dir)?;
        let layout = Layout {
            blobs,
            artifact_dir,
        };
        let loaded = Loaded::default();
        let optimizer = Optimizer::start(engine.clone(), layout.clone(), loaded.clone())?;
        Ok(Self {
            engine,
            metrics,
            layout,
            loaded,
            write_lock: tokio::sync::Mutex::new(()),
            optimizer,
        })
    }

    fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.layout.artifact_path(digest)
    }

    /// Validates, compiles (on a thread allowed to block) and stores an upload.
    pub async fn put(&self, wasm: bytes::Bytes) -> Result<Stored, ModuleError> {
        let digest = Digest::of(&wasm);
        let size = wasm.len() as u64;
        let _guard = self.write_lock.lock().await;
        if self.layout.blobs.contains(&digest).await? {
            // Make sure it is runnable (and its artifact current) before saying it is stored.
            self.runnable(&digest).await?;
            return Ok(Stored {
                digest,
                size,
                created: false,
            });
        }
        let started = std::time::Instant::now();
        if let Some(linked) = self.compile_baseline(&wasm).await? {
            self.metrics
                .compile_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(%digest, size, compile_ms = started.elapsed().as_millis() as u64, "module compiled by the baseline compiler; optimizing it in the background");
            self.layout.blobs.write(&digest, &wasm).await?;
            self.run_baseline(digest, linked, wasm);
            return Ok(Stored {
                digest,
                size,
                created: true,
            });
        }
        let (engine, bytes, artifact_path) = (
            self.engine.clone(),
            wasm.clone(),
            self.artifact_path(&digest),
        );
        let linked = cpu(move || {
            let (linked, artifact) = engine.compile(&bytes)?;
            // The artifact first: a crash between the two writes leaves an orphan artifact,
            // never a module without one.
            fsutil::atomic_write(&artifact_path, &artifact)?;
            Ok(linked)
        })
        .await?;
        self.metrics
            .compile_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(%digest, size, compile_ms = started.elapsed().as_millis() as u64, "module compiled");
        self.layout.blobs.write(&digest, &wasm).await?;
        self.write_loaded()
            .insert(digest, Arc::new(Runnable::new(linked, Tier::Optimized)));
        Ok(Stored {
            digest,
            size,
            created: true,
        })
    }

    /// The runnable form of a stored module: from memory, else from its compiled artifact,
    /// else compiled again from the stored bytes (and the artifact rewritten).
    pub async fn runnable(&self, digest: &Digest) -> Result<Arc<Runnable>, ModuleError> {
        if let Some(r) = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            self.metrics
                .module_cache
                .with_label_values(&["memory"])
                .inc();
            return Ok(r.clone());
        }
        if !self.layout.blobs.contains(digest).await? {
            return Err(ModuleError::NotFound(*digest));
        }
        let artifact_path = self.artifact_path(digest);
        let (engine, path) = (self.engine.clone(), artifact_path.clone());
        let runnable = match cpu(move || Ok(engine.load_artifact(&path))).await? {
            Ok(r) => {
                self.metrics
                    .module_cache
                    .with_label_values(&["artifact"])
                    .inc();
                tracing::debug!(%digest, "module loaded from its compiled artifact");
                r
            }
            Err(e) => {
                if artifact_path.exists() {
                    tracing::warn!(%digest, error = %e, "compiled artifact unusable; recompiling");
                } else {
                    tracing::info!(%digest, "no compiled artifact for this engine; compiling");
                }
                self.metrics
                    .module_cache
                    .with_label_values(&["compiled"])
                    .inc();
                return self.compile_stored(digest, artifact_path).await;
            }
        };
        let runnable = Arc::new(Runnable::new(runnable, Tier::Optimized));
        self.write_loaded().insert(*digest, runnable.clone());
        Ok(runnable)
    }

    /// Winch's code for an upload, compiled on a thread allowed to block; `None` when there
    /// is no baseline compiler or it did not take the upload.
    async fn compile_baseline(
        &self,
        wasm: &bytes::Bytes,
    ) -> Result<Option<crate::wasm::Linked>, ModuleError> {
        let (engine, bytes) = (self.engine.clone(), wasm.clone());
        cpu(move || {
            let linked = engine.compile_baseline(&bytes);
            return_freed_memory();
            Ok(linked)
        })
        .await
    }

    /// Serves a module on Winch's code and queues it for Cranelift. The first runnable kept
    /// wins, so two callers racing on one module queue it once.
    fn run_baseline(
        &self,
        digest: Digest,
        linked: crate::wasm::Linked,
        wasm: bytes::Bytes,
    ) -> Arc<Runnable> {
        let runnable = {
            let mut loaded = self.write_loaded();
            if let Some(kept) = loaded.get(&digest) {
                return kept.clone();
            }
            let runnable = Arc::new(Runnable::new(linked, Tier::Baseline));
            loaded.insert(digest, runnable.clone());
            runnable
        };
        self.optimizer.send(Optimize {
            digest,
            wasm: wasm.to_vec(),
            runnable: runnable.clone(),
        });
        runnable
    }

    /// Compiles a stored module again (its artifact missing or stale): Winch's code at once
    /// and Cranelift's in the background, as for an upload; Cranelift's alone, rewriting the
    /// artifact, where there is no baseline compiler.
    async fn compile_stored(
        &self,
        digest: &Digest,
        artifact_path: PathBuf,
    ) -> Result<Arc<Runnable>, ModuleError> {
        let wasm: bytes::Bytes = self
            .layout
            .blobs
            .read(digest)
            .await?
            .ok_or(ModuleError::NotFound(*digest))?
            .into();
        if Digest::of(&wasm) != *digest {
            return Err(ModuleError::Unloadable {
                digest: *digest,
                reason: "stored bytes do not match their digest".into(),
            });
        }
        if let Some(linked) = self.compile_baseline(&wasm).await? {
            return Ok(self.run_baseline(*digest, linked, wasm));
        }
        let (engine, digest) = (self.engine.clone(), *digest);
        let linked = cpu(move || {
            let (runnable, artifact) =
                engine.compile(&wasm).map_err(|e| ModuleError::Unloadable {
                    digest,
                    reason: e.to_string(),
                })?;
            fsutil::atomic_write(&artifact_path, &artifact)?;
            Ok(runnable)
        })
        .await?;
        let runnable = Arc::new(Runnable::new(linked, Tier::Optimized));
        self.write_loaded().insert(digest, runnable.clone());
        Ok(runnable)
    }

    /// Whether a module is stored (an unreadable store counts as no).
    pub async fn contains(&self, digest: &Digest) -> bool {
        self.layout.blobs.contains(digest).await.unwrap_or(false)
    }

    /// The module's bytes as uploaded.
    pub async fn read(&self, digest: &Digest) -> Result<Vec<u8>, ModuleError> {
        self.layout
            .blobs
            .read(digest)
            .await?
            .ok_or(ModuleError::NotFound(*digest))
    }

    /// Every stored module, ordered by digest.
    pub async fn list(&self) -> Result<Vec<ModuleInfo>, ModuleError> {
        let mut out = Vec::new();
        // Taken before the store is read, so no lock is held while it works.
        let tiers: HashMap<Digest, Tier> = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(digest, runnable)| (*digest, runnable.tier()))
            .collect();
        for (digest, size) in self.layout.blobs.list().await? {
            let compiled = tiers.get(&digest).map(|tier| match tier {
                Tier::Baseline => "baseline",
                Tier::Optimized => "optimized",
            });
            out.push(ModuleInfo {
                digest: digest.to_string(),
                size,
                compiled,
            });
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Removes a module and its artifact. The caller checks that no service uses it.
    pub async fn delete(&self, digest: &Digest) -> Result<(), ModuleError> {
        let _guard = self.write_lock.lock().await;
        if !self.layout.blobs.delete(digest).await? {
            return Err(ModuleError::NotFound(*digest));
        }
        let artifact = self.artifact_path(digest);
        cpu(move || Ok(fsutil::remove_durably(&artifact)?)).await?;
        self.write_loaded().remove(digest);
        Ok(())
    }

    fn write_loaded(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Digest, Arc<Runnable>>> {
        self.loaded.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands the memory a compile freed back to the system. Compiling a component of tens of
/// megabytes allocates hundreds of megabytes on several threads, and glibc keeps what they
/// free in per-thread arenas: a server idle after compiling the two script runtimes held
/// about 600 MiB of them. `malloc_trim` releases the free pages of every arena.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The optimizer thread: compiles each queued module with Cranelift, writes its artifact and
/// switches its runnable to the optimized code. Ends when the store is dropped.
fn optimize_all(
    engine: &WasmEngine,
    layout: &Layout,
    loaded: &Loaded,
    queue: mpsc::Receiver<Optimize>,
    stop: &std::sync::atomic::AtomicBool,
) {
    for job in queue {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let started = std::time::Instant::now();
        let digest = job.digest;
        let (linked, artifact) = match engine.compile(&job.wasm) {
            Ok(compiled) => compiled,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "Cranelift refused a module the baseline compiler took; it no longer runs");
                job.runnable
                    .refuse(format!("the optimizing compiler refused it: {e}"));
                continue;
            }
        };
        let artifact_path = layout.artifact_path(&digest);
        if let Err(e) = fsutil::atomic_write(&artifact_path, &artifact) {
            tracing::warn!(%digest, error = %e, "could not write a compiled artifact; the module is compiled again at the next start");
        }
        // Deleted meanwhile: its artifact goes too (a leftover would only take room).
        if !loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&digest)
        {
            let _ = std::fs::remove_file(&artifact_path);
        }
        job.runnable.optimize(linked);
        drop((job, artifact));
        return_freed_memory();
        tracing::info!(%digest, compile_ms = started.elapsed().as_millis() as u64, "module optimized (Cranelift)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::EngineSettings;

    fn store(dir: &Path) -> ModuleStore {
        let engine = WasmEngine::new(&EngineSettings {
            max_instances: 4,
            max_memory: 64 << 20,
            baseline: true,
        })
        .unwrap();
        ModuleStore::open(dir, engine, Arc::default()).unwrap()
    }

    const MODULE: &str = "(module (func (export \"_start\")))";

    /// Waits until Cranelift's code runs it.
    fn wait_optimized(runnable: &Runnable) {
        let started = std::time::Instant::now();
        while runnable.tier() == Tier::Baseline {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "never optimized"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn digests_parse_and_print() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        assert_eq!(Digest::parse(&d.hex()), Ok(d));
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("sha256:../../../etc/passwd").is_err());
    }

    #[tokio::test]
    async fn an_upload_runs_baseline_code_until_cranelift_has_compiled_it() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(MODULE).unwrap();
        let s = store(dir.path());
        #[cfg(target_arch = "x86_64")]
        assert!(
            s.engine.compile_baseline(&wasm).is_some(),
            "Winch took no module"
        );
        let stored = s.put(bytes::Bytes::copy_from_slice(&wasm)).await.unwrap();
        let runnable = s.runnable(&stored.digest).await.unwrap();
        wait_optimized(&runnable);
        assert!(s.artifact_path(&stored.digest).exists());
        assert!(matches!(
            *runnable.linked().unwrap(),
            crate::wasm::Linked::Core(_)
        ));
        drop(s);
        // The next start loads Cranelift's artifact: optimized at once.
        let s = store(dir.path());
        assert_eq!(
            s.runnable(&stored.digest).await.unwrap().tier(),
            Tier::Optimized
        );
    }

    /// The smallest `wasi:cli/run` command component: `run` returns `ok`.
    const COMPONENT: &str = r#"(component
        (core module $m (func (export "run") (result i32) i32.const 0))
        (core instance $i (instantiate $m))
        (type $result (result))
        (func $run (result $result) (canon lift (core func $i "run")))
        (instance $run_instance (export "run" (func $run)))
        (export "wasi:cli/run@0.2.0" (instance $run_instance)))"#;

    #[tokio::test]
    async fn a_component_also_runs_baseline_code_first_and_when_its_artifact_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(COMPONENT).unwrap();
        let s = store(dir.path());
        #[cfg(target_arch = "x86_64")]
        assert!(
            matches!(
                s.engine.compile_baseline(&wasm),
                Some(crate::wasm::Linked::Component(_))
            ),
            "Winch took no component"
        );
        let digest = s.put(wasm.into()).await.unwrap().digest;
        wait_optimized(&s.runnable(&digest).await.unwrap());
        let artifact = s.artifact_path(&digest);
        drop(s);
        // A server that has the module but not its artifact (another cluster member, a
        // changed engine) serves it on Winch's code while Cranelift compiles it again.
        std::fs::remove_file(&artifact).unwrap();
        let s = store(dir.path());
        wait_optimized(&s.runnable(&digest).await.unwrap());
        assert!(artifact.exists());
    }

    #[tokio::test]
    async fn put_is_idempotent_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(MODULE).unwrap();
        let s = store(dir.path());
        let first = s.put(bytes::Bytes::copy_from_slice(&wasm)).await.unwrap();
        assert!(first.created);
        assert!(
            !s.put(bytes::Bytes::copy_from_slice(&wasm))
                .await
                .unwrap()
                .created
        );
        drop(s);
        let s = store(dir.path());
        assert!(s.runnable(&first.digest).await.is_ok());
        assert_eq!(s.read(&first.digest).await.unwrap(), wasm);
        assert_eq!(s.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_corrupt_artifact_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(MODULE).unwrap();
        let s = store(dir.path());
        let digest = s
            .put(bytes::Bytes::copy_from_slice(&wasm))
            .await
            .unwrap()
            .digest;
        let artifact = s.artifact_path(&digest);
        drop(s);
        std::fs::write(&artifact, b"stale").unwrap();
        let s = store(dir.path());
        wait_optimized(&s.runnable(&digest).await.unwrap());
        assert_ne!(std::fs::read(&artifact).unwrap(), b"stale");
    }

    #[tokio::test]
    async fn an_artifact_of_another_engine_key_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(MODULE).unwrap();
        let s = store(dir.path());
        let digest = s
            .put(bytes::Bytes::copy_from_slice(&wasm))
            .await
            .unwrap()
            .digest;
        drop(s);
        // Only the current engine key's folder is consulted: removing it forces a recompile.
        let compiled = dir.path().join("compiled");
        std::fs::remove_dir_all(&compiled).unwrap();
        let s = store(dir.path());
        wait_optimized(&s.runnable(&digest).await.unwrap());
        assert!(s.artifact_path(&digest).exists());
    }

    #[tokio::test]
    async fn delete_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let digest = s
            .put(wat::parse_str(MODULE).unwrap().into())
            .await
            .unwrap()
            .digest;
        s.delete(&digest).await.unwrap();
        assert!(!s.contains(&digest).await);
        assert!(matches!(
            s.delete(&digest).await,
            Err(ModuleError::NotFound(_))
        ));
    }
}
