//! One wasm invocation, from decoded input bytes to output files: a fresh scratch folder, the
//! guest run as a fiber on the caller's task ([`sandbox`]), the outputs read back, and the
//! scratch emptied whatever happened. Admission control is the executor's ([`super`]).
//!
//! The per-invocation path is short on purpose (see performance notes in the README):
//! scratch folders, input write, WASI context, instantiate from an `InstancePre`, run, collect,
//! all on the tokio worker that took the request: handing each call to a blocking thread and
//! back was a tenth of the server's time under load. Only what may be large leaves the worker
//! for tokio's blocking pool: an input over [`INLINE_BYTES`], a script folder to unpack, and
//! outputs (or what a stopped guest left) past [`INLINE_BYTES`] or [`INLINE_FILES`].

pub mod app_folder;
pub mod capture;
pub mod sandbox;
pub mod scratch;

use super::admission::Admitted;
use super::backend::Backend;
use super::invocation::{Completed, Exit, Input, InvokeError, Meters, Request, files_bytes};
use crate::faas::outputs::{self, OutputLimits};
use crate::faas::{LogLevel, LogLine, OutputFile};
use crate::metrics::Metrics;
use crate::registry::Deployed;
use crate::service::BackendKind;
use futures::future::BoxFuture;
use scratch::ScratchRoot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server-wide settings of wasm invocations.
#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// Timeout of services whose definition has none.
    pub default_timeout: Duration,
    /// Memory limit of services whose definition has none.
    pub default_memory: u64,
    /// Caps on output files.
    pub output_limits: OutputLimits,
    /// Bytes of stdout/stderr kept per invocation.
    pub max_log_bytes: usize,
    /// Where runtime services' script folders are made (content-addressed, read-only).
    pub apps_root: std::path::PathBuf,
    /// `--allow-local-endpoints`: outgoing requests may reach this machine's networks.
    pub allow_local: bool,
    /// Bytes an outgoing request's response body may hold.
    pub max_outbound_response: u64,
    /// The embedded store's folder of buckets, where a service's `mount` is.
    pub mount_root: std::path::PathBuf,
}

/// Bytes of input written, or of outputs read, on the worker itself; more go to a blocking
/// thread, so that a large file never stalls the other requests of its worker.
pub const INLINE_BYTES: u64 = 256 << 10;
/// Output files read on the worker itself; more go to a blocking thread.
pub const INLINE_FILES: usize = 64;

/// What every invocation needs.
struct Shared {
    scratch: ScratchRoot,
    settings: InvokerSettings,
}

/// Runs wasm invocations, each as a fiber on its caller's task; admission is the executor's.
pub struct Invoker {
    shared: Arc<Shared>,
    running: prometheus::IntGauge,
    /// Where script services' packages come from.
    packages: crate::packages::Packages,
}

impl Invoker {
    /// An invoker whose scratch folders live under `scratch`.
    pub fn new(
        scratch: ScratchRoot,
        settings: InvokerSettings,
        packages: crate::packages::Packages,
        metrics: &Metrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared { scratch, settings }),
            running: metrics.running.clone(),
            packages,
        }
    }

    /// The scratch root in use.
    pub fn scratch_root(&self) -> &std::path::Path {
        self.shared.scratch.path()
    }

    /// Removes the scratch root with whatever is left in it (at shutdown).
    pub fn remove_scratch_root(&self) {
        self.shared.scratch.remove();
    }

    /// Runs `runnable` (the module of `deployed`) on `input`, holding `slots` until the guest
    /// has stopped.
    ///
    /// Dropping the returned future (a client that disconnected) stops the guest where it
    /// is (its fiber is dropped); its scratch folder is emptied either way.
    pub async fn run<S: Send + 'static>(
        &self,
        deployed: Arc<Deployed>,
        runnable: Arc<crate::wasm::Runnable>,
        input: Input,
        request: &Request,
        slots: S,
    ) -> Result<Completed, InvokeError> {
        let _slots = slots;
        let packages = app_folder::packages_to_unpack(&self.packages, &deployed).await?;
        let _running = Running::enter(&self.running);
        // Taken once: the module may switch to optimized code while this call runs.
        let linked = runnable.linked().map_err(InvokeError::Unavailable)?;
        let prepare = Prepare {
            shared: self.shared.clone(),
            deployed: deployed.clone(),
            packages,
            input,
            mount_copy: request.mount_copy.clone(),
        };
        let prepared = if prepare.is_small() {
            prepare.run()?
        } else {
            tokio::task::spawn_blocking(move || prepare.run())
                .await
                .map_err(|e| InvokeError::Host(format!("worker failed: {e}")))??
        };
        // Armed while the guest runs: a setup error above is not a caller gone.
        let mut gone = ClientGone {
            service: deployed.service.spec.name.clone(),
            armed: true,
        };
        let result = run_guest(
            &self.shared.settings,
            &deployed,
            &linked,
            prepared,
            &request.id,
        )
        .await;
        gone.armed = false;
        result
    }
}

/// Counts a running guest in the `running` gauge while it lives.
struct Running(prometheus::IntGauge);

impl Running {
    fn enter(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Says in the server's log that an invocation's caller went away, when its future is
/// dropped before the guest finished (the guest stops with it).
struct ClientGone {
    service: String,
    armed: bool,
}

impl Drop for ClientGone {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(
                service = %self.service,
                "invocation stopped: the client went away (or its job was deleted)"
            );
        }
    }
}

impl Backend for Invoker {
    fn kind(&self) -> BackendKind {
        BackendKind::Wasm
    }

    fn check(&self, deployed: &Deployed) -> Result<(), InvokeError> {
        let runnable = runnable(deployed)?;
        if let Ok(linked) = runnable.linked()
            && matches!(*linked, crate::wasm::Linked::Http(_))
        {
            let name = &deployed.service.spec.name;
            return Err(InvokeError::WrongKind(format!(
                "{name} is an HTTP service (a wasi:http/proxy component): call it at /system/services/{name}/exposed/, not with files on /run or /job"
            )));
        }
        Ok(())
    }

    fn run<'a>(
        &'a self,
        deployed: Arc<Deployed>,
        input: Input,
        request: &'a Request,
        admitted: Admitted,
    ) -> BoxFuture<'a, Result<Completed, InvokeError>> {
        Box::pin(async move {
            let runnable = runnable(&deployed)?;
            Invoker::run(self, deployed, runnable, input, request, admitted).await
        })
    }

    fn stop(&self) {
        self.remove_scratch_root();
    }
}

/// The service's module, or why it cannot run.
fn runnable(deployed: &Deployed) -> Result<Arc<crate::wasm::Runnable>, InvokeError> {
    deployed.runnable.clone().ok_or_else(|| {
        InvokeError::Unavailable(format!(
            "{} could not be loaded at start-up; upload it again",
            deployed.service.spec.backend
        ))
    })
}

/// What an invocation needs before its guest starts: its scratch folder with the input in
/// place, a script service's folder, the service's mount.
struct Prepare {
    shared: Arc<Shared>,
    deployed: Arc<Deployed>,
    /// A script service's packages, read when its folder is still to be made.
    packages: Option<Vec<u8>>,
    input: Input,
    mount_copy: Option<std::path::PathBuf>,
}

/// The scratch folder and the other folders of one run, ready.
struct Prepared {
    scratch: scratch::Scratch,
    staged: Staged,
    app_dir: Option<std::path::PathBuf>,
    mount: Option<(std::path::PathBuf, String, bool)>,
}

impl Prepare {
    /// Whether it is quick enough for the worker itself: no packages to unpack and an input
    /// body of at most [`INLINE_BYTES`] (an object's input is moved by a rename).
    fn is_small(&self) -> bool {
        self.packages.is_none()
            && match &self.input {
                Input::Body(bytes) => bytes.len() as u64 <= INLINE_BYTES,
                Input::Object { .. } => true,
            }
    }

    fn run(self) -> Result<Prepared, InvokeError> {
        let settings = &self.shared.settings;
        let scratch = self.shared.scratch.create().map_err(host)?;
        let staged = stage_input(&scratch, self.input)?;
        let app_dir = app_folder::folder(&settings.apps_root, &self.deployed, self.packages)?;
        let mount = mount_folder(&self.deployed.service.spec, settings, self.mount_copy)?;
        Ok(Prepared {
            scratch,
            staged,
            app_dir,
            mount,
        })
    }
}

/// Runs the guest in its prepared folders, then reads its outputs back.
async fn run_guest(
    settings: &InvokerSettings,
    deployed: &Deployed,
    linked: &crate::wasm::Linked,
    prepared: Prepared,
    request_id: &str,
) -> Result<Completed, InvokeError> {
    let Prepared {
        scratch,
        staged,
        app_dir,
        mount,
    } = prepared;
    let (input_dir, output_dir) = (scratch.input.clone(), scratch.output.clone());
    let held = Held(Some(scratch));
    let spec = &deployed.service.spec;
    let mut log = opening_lines(spec, linked, &staged, request_id);
    let env: std::borrow::Cow<[(String, String)]> = if staged.env.is_empty() {
        std::borrow::Cow::Borrowed(&spec.env)
    } else {
        std::borrow::Cow::Owned(spec.env.iter().cloned().chain(staged.env).collect())
    };
    let timeout = spec.timeout.unwrap_or(settings.default_timeout);
    let started = Instant::now();
    let outbound = outbound(spec, settings, deadline(started, timeout));
    let refusals = outbound.clone();
    let budget = cpu_budget(spec.cpu, timeout);
    let run = sandbox::run(sandbox::GuestRun {
        linked,
        program: &spec.name,
        env: &env,
        input_dir: &input_dir,
        input_file: &staged.name,
        output_dir: &output_dir,
        memory_limit: spec.memory_limit.unwrap_or(settings.default_memory),
        deadline: deadline(started, timeout),
        output_capacity: settings.max_log_bytes,
        output_limits: settings.output_limits,
        app_dir: app_dir.as_deref(),
        mount: mount
            .as_ref()
            .map(|(dir, guest, writable)| (dir.as_path(), guest.as_str(), *writable)),
        outbound,
        cpu_budget: budget,
    })
    .await
    .map_err(|e| InvokeError::Host(format!("{e:#}")))?;
    let elapsed = started.elapsed();
    for why in refusals.take_refusals() {
        log.push(LogLine::now(
            LogLevel::Warning,
            format!("Outbound request refused: {why}"),
        ));
    }
    log.push(exit_line(&run.exit, elapsed, timeout, budget));
    trace_exit(&spec.name, &run.exit, elapsed);
    log.extend(truncation_line(run.output_dropped, settings.max_log_bytes));
    let Some(scratch) = held.release() else {
        return Err(InvokeError::Host(
            "the run's scratch folder was released twice".into(),
        ));
    };
    let (exit, files) = match run.exit {
        limit @ Exit::Limit(_) => {
            // What it wrote past the limit is not returned, and may be large to remove.
            off_worker(move || drop(scratch)).await?;
            (limit, Vec::new())
        }
        exit => outputs_of(scratch, settings.output_limits, exit, &mut log).await?,
    };
    let meters = Meters {
        cpu: run.cpu,
        wall: elapsed,
        peak_memory: run.peak_memory,
        bytes_in: staged.len,
        bytes_out: files_bytes(&files),
    };
    Ok(Completed {
        exit,
        files,
        output: run.output,
        log,
        meters,
    })
}

/// A run's scratch folder while its guest runs. Dropped with its call (the client went away,
/// or its job was deleted), it is emptied on the blocking pool, as what the guest wrote may be
/// large (up to the output caps); taken back ([`Held::release`]) when the run ends.
struct Held(Option<scratch::Scratch>);

impl Held {
    fn release(mut self) -> Option<scratch::Scratch> {
        self.0.take()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(scratch) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(scratch));
            }
            Err(_) => drop(scratch),
        }
    }
}

/// The outputs in `scratch`, read (and the scratch emptied) on the worker when they are
/// within [`INLINE_BYTES`] and [`INLINE_FILES`], else on a blocking thread.
async fn outputs_of(
    scratch: scratch::Scratch,
    limits: OutputLimits,
    exit: Exit,
    log: &mut Vec<LogLine>,
) -> Result<(Exit, Vec<OutputFile>), InvokeError> {
    let small = OutputLimits {
        max_files: limits.max_files.min(INLINE_FILES),
        max_bytes: limits.max_bytes.min(INLINE_BYTES),
    };
    match outputs::collect(&scratch.output, small) {
        Ok(collected) => {
            drop(scratch);
            take_outputs(Ok(collected), exit, log)
        }
        Err(e) if !e.is_limit() => take_outputs(Err(e), exit, log),
        // Past the small caps: read again under the real ones, off the worker (the bounded
        // work done above is the price of not measuring every folder first).
        Err(_) => {
            let collected = off_worker(move || {
                let collected = outputs::collect(&scratch.output, limits);
                drop(scratch);
                collected
            })
            .await?;
            take_outputs(collected, exit, log)
        }
    }
}

/// Runs `work` on tokio's blocking pool.
async fn off_worker<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, InvokeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InvokeError::Host(format!("worker failed: {e}")))
}

/// The log's first lines: what runs, and on what input.
fn opening_lines(
    spec: &crate::service::ServiceSpec,
    linked: &crate::wasm::Linked,
    staged: &Staged,
    request_id: &str,
) -> Vec<LogLine> {
    vec![
        LogLine::now(
            LogLevel::Info,
            format!(
                "Running service {} ({}, {}), request {request_id}",
                spec.name,
                spec.backend,
                linked.abi()
            ),
        ),
        LogLine::now(
            LogLevel::Debug,
            format!(
                "Input file {}/{} ({} bytes)",
                sandbox::GUEST_INPUT_DIR,
                staged.name,
                staged.len
            ),
        ),
    ]
}

/// The warning that the module's output was cut, when it was.
fn truncation_line(dropped: u64, cap: usize) -> Option<LogLine> {
    (dropped > 0).then(|| {
        LogLine::now(
            LogLevel::Warning,
            format!(
                "Module output truncated: {dropped} bytes past the {cap}-byte limit were dropped"
            ),
        )
    })
}

/// The CPU time a call may use: `cpu × timeout` for a service under one core (what a
/// container throttled to that share could use before its timeout); none from one core up,
/// since a guest runs on one thread.
fn cpu_budget(cpu: Option<f64>, timeout: Duration) -> Option<Duration> {
    cpu.filter(|c| *c < 1.0).map(|c| timeout.mul_f64(c))
}

/// The sender of the run's outgoing requests: the service's list, until the run's deadline.
fn outbound(
    spec: &crate::service::ServiceSpec,
    settings: &InvokerSettings,
    deadline: Instant,
) -> crate::wasm::outbound::Outbound {
    crate::wasm::outbound::Outbound {
        allow: spec.allowed_outbound_hosts.clone(),
        allow_local: settings.allow_local,
        deadline: tokio::time::Instant::from_std(deadline),
        max_response: settings.max_outbound_response,
        service: spec.name.as_str().into(),
        refusals: Default::default(),
    }
}

/// The service's `mount`: its host folder, where the guest sees it (`/mnt/<bucket>/<folder>`
/// as OSCAR's rclone mounts it), and whether it is writable. An external store's folder comes
/// as the pipeline's read-only copy; the embedded store's is its folder of buckets, made
/// again if it was removed.
fn mount_folder(
    spec: &crate::service::ServiceSpec,
    settings: &InvokerSettings,
    copy: Option<std::path::PathBuf>,
) -> Result<Option<(std::path::PathBuf, String, bool)>, InvokeError> {
    let Some(mount) = &spec.storage.mount else {
        return Ok(None);
    };
    let guest = format!("/mnt/{}/{}", mount.bucket, mount.folder);
    let guest = guest.trim_end_matches('/').to_string();
    if let Some(copy) = copy {
        return Ok(Some((copy, guest, false)));
    }
    // Guests make no links (crate::wasm::no_symlinks), but one put there on the host would be
    // followed by the preopen: out of the bucket.
    let mut dir = settings.mount_root.clone();
    for part in std::iter::once(mount.bucket.as_str())
        .chain(mount.folder.split('/').filter(|p| !p.is_empty()))
    {
        dir.push(part);
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(InvokeError::Host(format!(
                "the mount {}/{} passes through a symbolic link, which is not followed",
                mount.bucket, mount.folder
            )));
        }
    }
    std::fs::create_dir_all(&dir).map_err(host)?;
    Ok(Some((dir, guest, true)))
}

fn host(e: std::io::Error) -> InvokeError {
    InvokeError::Host(e.to_string())
}

/// The input file, in place in the scratch folder.
struct Staged {
    name: String,
    len: u64,
    env: Vec<(String, String)>,
}

/// Writes (or moves) the input into the scratch folder's input folder.
fn stage_input(scratch: &scratch::Scratch, input: Input) -> Result<Staged, InvokeError> {
    match input {
        Input::Body(bytes) => {
            let name = format!("event-file-{}", uuid::Uuid::new_v4());
            std::fs::write(scratch.input.join(&name), &bytes).map_err(host)?;
            Ok(Staged {
                name,
                len: bytes.len() as u64,
                env: Vec::new(),
            })
        }
        Input::Object { staged, name, env } => {
            let target = scratch.input.join(&name);
            // Staging sits beside the scratch folders, so this is a rename; a copy otherwise.
            if std::fs::rename(&staged, &target).is_err() {
                std::fs::copy(&staged, &target).map_err(host)?;
            }
            let len = std::fs::metadata(&target).map_err(host)?.len();
            Ok(Staged { name, len, env })
        }
    }
}

/// When a run that starts at `started` must stop. A timeout past what the clock can hold
/// cannot overflow it: it means no deadline in practice.
fn deadline(started: Instant, timeout: Duration) -> Instant {
    started
        .checked_add(timeout)
        .or_else(|| started.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(started)
}

/// The log line that says how the module ended.
fn exit_line(
    exit: &Exit,
    elapsed: Duration,
    timeout: Duration,
    budget: Option<Duration>,
) -> LogLine {
    let ms = elapsed.as_secs_f64() * 1000.0;
    match exit {
        Exit::Success => LogLine::now(
            LogLevel::Info,
            format!("Module finished successfully in {ms:.3} ms"),
        ),
        Exit::Status(code) => LogLine::now(
            LogLevel::Error,
            format!("Module exited with status {code} after {ms:.3} ms"),
        ),
        Exit::Trap(reason) => LogLine::now(
            LogLevel::Error,
            format!("Module trapped after {ms:.3} ms: {reason}"),
        ),
        // Stopped before its timeout: its CPU time budget ran out.
        Exit::Timeout if budget.is_some() && elapsed < timeout => LogLine::now(
            LogLevel::Error,
            format!(
                "Module stopped: it used its CPU time budget of {:.3} s (the service's cpu share of its {:.3} s timeout)",
                budget.unwrap_or_default().as_secs_f64(),
                timeout.as_secs_f64()
            ),
        ),
        Exit::Timeout => LogLine::now(
            LogLevel::Error,
            format!(
                "Module stopped: timeout of {:.3} s reached",
                timeout.as_secs_f64()
            ),
        ),
        Exit::Cancelled => LogLine::now(LogLevel::Warning, "Module stopped: the client went away"),
        Exit::Limit(reason) => LogLine::now(LogLevel::Error, format!("Module stopped: {reason}")),
    }
}

/// The server's own log of how an invocation ended.
fn trace_exit(service: &str, exit: &Exit, elapsed: Duration) {
    let ms = elapsed.as_secs_f64() * 1000.0;
    match exit {
        Exit::Success => tracing::debug!(service, ms, "invocation succeeded"),
        Exit::Cancelled => {
            tracing::warn!(service, ms, "invocation stopped: the client went away")
        }
        other => tracing::warn!(service, ms, outcome = ?other, "invocation failed"),
    }
}

/// The output folder as read back; a folder over the limits makes the run a `limit` failure
/// with no files.
fn take_outputs(
    collected: Result<outputs::Collected, outputs::OutputError>,
    exit: Exit,
    log: &mut Vec<LogLine>,
) -> Result<(Exit, Vec<OutputFile>), InvokeError> {
    match collected {
        Ok(collected) => {
            for skipped in &collected.skipped {
                log.push(LogLine::now(
                    LogLevel::Warning,
                    format!("Ignoring output entry {skipped:?}: not a regular file or folder"),
                ));
            }
            log.push(LogLine::now(
                LogLevel::Info,
                format!("Found {} output file(s)", collected.files.len()),
            ));
            Ok((exit, collected.files))
        }
        Err(e) if e.is_limit() => {
            log.push(LogLine::now(
                LogLevel::Error,
                format!("Outputs refused: {e}"),
            ));
            Ok((Exit::Limit(e.to_string()), Vec::new()))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_share_under_one_core_is_a_cpu_time_budget() {
        let minute = Duration::from_secs(60);
        assert_eq!(cpu_budget(Some(0.2), minute), Some(Duration::from_secs(12)));
        assert_eq!(
            cpu_budget(Some(0.5), Duration::from_secs(10)),
            Some(Duration::from_secs(5))
        );
        // A core or more: a guest runs on one thread, so nothing to bound.
        assert_eq!(cpu_budget(Some(1.0), minute), None);
        assert_eq!(cpu_budget(Some(4.0), minute), None);
        assert_eq!(cpu_budget(None, minute), None);
    }
}
