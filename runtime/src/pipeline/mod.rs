//! What drives an invocation from the moment something asks for it to the moment its result
//! is settled, the same for every trigger: [`invoke`] runs it on its backend (through the
//! executor) and delivers its outputs to the service's buckets ([`delivery`]), and
//! [`Settled`] says how it ended and what its log holds. The triggers are files of their own:
//! `/run` (`crate::api::run`, which shapes the answer), the job worker ([`job_worker`]),
//! the storage poller ([`poller`]) and the embedded store's upload events
//! ([`bucket_events`]), the last two through a job.
//!
//! Below it: the executor, the stores (`jobs`, `storage`, `registry`); above it: the API and
//! `background.rs`, which start the triggers. Nothing here knows about HTTP.

pub mod bucket_events;
pub mod delivery;
pub mod job_worker;
pub mod poller;

use crate::clock::{now_ms, to_ms};
use crate::executor::Executor;
use crate::executor::invocation::{Completed, Input, InvokeError, Request};
use crate::faas::LogLevel;
use crate::protocol::Outcome;
use crate::registry::Deployed;
use crate::storage::Storage;
use delivery::Delivered;
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument as _;

/// What runs an invocation: the executor, or a stand-in in tests.
pub trait Execute: Send + Sync + 'static {
    /// Runs `deployed` on `input`.
    fn execute(
        &self,
        deployed: Arc<Deployed>,
        input: Input,
        request: Request,
    ) -> impl Future<Output = Result<Completed, InvokeError>> + Send;

    /// Whether a job of `deployed` for `user` fits the user's quotas now.
    fn quota_fits(&self, _deployed: &Deployed, _user: &str) -> bool {
        true
    }

    /// Returns once [`Execute::quota_fits`] holds.
    fn quota_room(&self, _deployed: &Deployed, _user: &str) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

impl Execute for Executor {
    fn execute(
        &self,
        deployed: Arc<Deployed>,
        input: Input,
        request: Request,
    ) -> impl Future<Output = Result<Completed, InvokeError>> + Send {
        self.run(deployed, input, request)
    }

    fn quota_fits(&self, deployed: &Deployed, user: &str) -> bool {
        Executor::quota_fits(self, deployed, user)
    }

    fn quota_room(&self, deployed: &Deployed, user: &str) -> impl Future<Output = ()> + Send {
        Executor::quota_room(self, deployed, user)
    }
}

/// An invocation that ran, its outputs delivered (or not).
#[derive(Debug)]
pub struct Settled {
    /// What the backend returned.
    pub completed: Completed,
    /// What became of its outputs.
    pub delivered: Delivered,
}

impl Settled {
    /// Whether it succeeded, outputs delivered included.
    pub fn succeeded(&self) -> bool {
        self.delivered.succeeded(&self.completed)
    }

    /// How it ended: the module's outcome, or `upload` when its outputs were not delivered.
    pub fn outcome(&self) -> Outcome {
        self.delivered.outcome(&self.completed)
    }

    /// Its log as a job record keeps it, `(unix ms, text)`: the runtime's lines at `level`
    /// and above (errors always), the module's output, then the deliveries.
    pub fn log_lines(&self, level: LogLevel) -> Vec<(u64, String)> {
        let level = level.min(LogLevel::Error);
        let done = &self.completed;
        let mut lines: Vec<(u64, String)> = done
            .log
            .iter()
            .filter(|l| l.level >= level)
            .map(|l| (to_ms(l.time), l.format()))
            .collect();
        if !done.output.is_empty() {
            let output = String::from_utf8_lossy(&done.output);
            lines.push((now_ms(), output.trim_end_matches('\n').to_string()));
        }
        let delivered = &self.delivered;
        lines.extend(delivered.lines.iter().map(|l| (now_ms(), l.clone())));
        if let Some(failure) = &delivered.failure {
            lines.push((now_ms(), capitalised(failure)));
        }
        lines
    }
}

/// Runs `deployed` on `input` and delivers its outputs to the output buckets of `storage_spec`
/// (the service's, or those of the private bucket that triggered it:
/// [`StorageSpec::for_bucket`](crate::storage::spec::StorageSpec::for_bucket)), as in OSCAR
/// before the caller hears of the result. `Err` when it could not run at all.
///
/// Dropping the future stops the invocation (see [`Executor::run`]).
pub async fn invoke<E: Execute>(
    executor: &E,
    storage: &Storage,
    deployed: Arc<Deployed>,
    input: Input,
    mut request: Request,
    storage_spec: &crate::storage::spec::StorageSpec,
) -> Result<Settled, InvokeError> {
    // An external store's mount is copied before the call (the executor reads no store).
    let service = &deployed.service.spec;
    request.mount_copy = storage
        .mount_copy(&service.name, &service.storage)
        .await
        .map_err(InvokeError::Mount)?;
    let completed = executor.execute(deployed, input, request).await?;
    let delivered = delivery::to_buckets(storage, storage_spec, &completed)
        .instrument(tracing::debug_span!("delivery"))
        .await;
    Ok(Settled {
        completed,
        delivered,
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
