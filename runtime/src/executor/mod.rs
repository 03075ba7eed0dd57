//! Runs invocations on their service's backend, the one entry point for /run, jobs and storage
//! events: admission control ([`admission`]: the service's slot, then the backend's, with a
//! bounded queue for synchronous calls), then the backend that runs the service's kind
//! ([`backend::Backend`]: a wasm module in-process, [`wasm`], or an image as a Kubernetes Job,
//! [`image`]), and the metrics. The invocation's own types are in
//! [`invocation`]. Every backend gets the same 503, the same timeouts and the same figures.

pub mod admission;
pub mod backend;
pub mod http;
pub mod http_meter;
pub mod image;
pub mod invocation;
pub mod wasm;

use crate::metrics::Metrics;
use crate::quotas::Quotas;
use crate::registry::Deployed;
use crate::usage::Accounting;
use crate::usage::meters::{Channel, Usage};
use admission::Admission;
use backend::Backend;
use invocation::{Completed, Input, InvokeError, Request};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument as _;

/// Server-wide settings of the executor.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorSettings {
    /// Invocations running at once, per backend.
    pub max_concurrency: usize,
    /// Synchronous calls waiting for a slot; beyond, refused at once.
    pub max_queue: usize,
    /// The memory limit of a service without `memory`.
    pub default_memory: u64,
}

/// A backend and its server-wide slots.
struct Slots {
    backend: Arc<dyn Backend>,
    slots: Arc<Semaphore>,
}

/// Runs invocations on every backend within the server's limits.
pub struct Executor {
    backends: Vec<Slots>,
    admission: Admission,
    metrics: Arc<Metrics>,
    usage: Arc<Accounting>,
    quotas: Arc<Quotas>,
    http: http::HttpInvoker,
    /// The memory limit of a service without `memory`, as its invocations hold it.
    default_memory: u64,
}

impl Executor {
    /// An executor over `backends`, one per kind of service; each gets
    /// `settings.max_concurrency` slots of its own. What each invocation used goes to
    /// `metrics` and `usage`; what it holds while it runs, to its user's `quotas`.
    pub fn new(
        backends: Vec<Arc<dyn Backend>>,
        http: http::HttpInvoker,
        settings: ExecutorSettings,
        metrics: Arc<Metrics>,
        (usage, quotas): (Arc<Accounting>, Arc<Quotas>),
    ) -> Self {
        let backends = backends
            .into_iter()
            .map(|backend| Slots {
                backend,
                slots: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            })
            .collect();
        Self {
            backends,
            admission: Admission::new(settings.max_queue, metrics.clone()),
            metrics,
            usage,
            quotas,
            http,
            default_memory: settings.default_memory,
        }
    }

    /// Serves one request of an HTTP service: admitted like a synchronous call (the
    /// service's slots, then the wasm backend's, whose instance pool it shares), then handed
    /// to a fresh instance ([`http`]).
    pub async fn serve_http(
        &self,
        deployed: Arc<Deployed>,
        request: http::HttpRequest,
        request_id: String,
        user: String,
    ) -> Result<http::HttpResponse, http::ServeError> {
        let name = &deployed.service.spec.name;
        let linked = deployed
            .runnable
            .as_ref()
            .ok_or_else(|| {
                InvokeError::Unavailable(format!(
                    "{name}'s module could not be loaded; upload it again"
                ))
            })?
            .linked()
            .map_err(InvokeError::Unavailable)?;
        let crate::wasm::Linked::Http(pre) = &*linked else {
            return Err(InvokeError::WrongKind(format!(
                "{name} is not an HTTP service: its module is a {}, which processes files (POST /run/{name}); an exposed service needs a wasi:http/proxy component",
                linked.abi()
            ))
            .into());
        };
        let runner = self
            .backends
            .iter()
            .find(|b| b.backend.kind() == crate::service::BackendKind::Wasm)
            .ok_or_else(|| backend::missing(crate::service::BackendKind::Wasm))?;
        let held = self
            .quotas
            .take_now(&account_to_user(&user, &deployed), self.need(&deployed));
        let held = held.map_err(InvokeError::from)?;
        let admitted = self
            .admission
            .admit(&deployed.slots, &runner.slots, invocation::Kind::Sync)
            .await?
            .holding(held);
        let call = http::HttpCall {
            pre: pre.clone(),
            deployed,
            admitted,
            request_id,
            user,
        };
        self.http.serve(call, request).await
    }

    /// What an invocation of `deployed` holds of its user's quotas while it runs: the
    /// service's `cpu` (OSCAR's default when unset) and memory limit, and one invocation.
    fn need(&self, deployed: &Deployed) -> crate::quotas::Held {
        let spec = &deployed.service.spec;
        let cpu = spec
            .cpu
            .map_or(crate::quotas::DEFAULT_CPU_MILLICORES, |cores| {
                // Rounded up, at least one millicore; huge values saturate.
                (cores * 1000.0).ceil().max(1.0) as u64
            });
        crate::quotas::Held {
            cpu,
            memory: spec.memory_limit.unwrap_or(self.default_memory),
            invocations: 1,
        }
    }

    /// Whether a job of `deployed` for `user` (empty: its owner) fits the user's quotas now
    /// ([`crate::quotas::Quotas::fits`]).
    pub fn quota_fits(&self, deployed: &Deployed, user: &str) -> bool {
        self.quotas
            .fits(&account_to_user(user, deployed), self.need(deployed))
    }

    /// Returns once [`Executor::quota_fits`] holds.
    pub async fn quota_room(&self, deployed: &Deployed, user: &str) {
        self.quotas
            .until_fits(&account_to_user(user, deployed), self.need(deployed))
            .await
    }

    /// Stops every backend (at shutdown, once no invocation runs).
    pub fn stop(&self) {
        for b in &self.backends {
            b.backend.stop();
        }
    }

    /// Runs `deployed` on `input` (already decoded by FaaS Supervisor's rules, [`crate::faas`]).
    ///
    /// Dropping the returned future (a client that disconnected) stops the invocation: a
    /// guest at its next epoch tick, its scratch folder removed either way.
    pub async fn run(
        &self,
        deployed: Arc<Deployed>,
        input: impl Into<Input>,
        request: Request,
    ) -> Result<Completed, InvokeError> {
        let service = deployed.service.spec.name.clone();
        let user = account_to(&request, &deployed);
        let result = self.dispatch(deployed, input.into(), &request).await;
        let (outcome, seconds) = match &result {
            Ok(done) => (done.exit.label(), done.meters.wall.as_secs_f64()),
            Err(InvokeError::Overloaded) => ("overloaded", 0.0),
            Err(_) => ("error", 0.0),
        };
        self.metrics
            .invoked(&service, request.kind.label(), outcome, seconds);
        if let Ok(done) = &result {
            let channel = match request.kind {
                invocation::Kind::Sync => Channel::Sync,
                invocation::Kind::Job => Channel::Async,
            };
            let ok = done.exit == invocation::Exit::Success;
            record_usage(
                &self.metrics,
                &self.usage,
                service,
                user,
                channel,
                ok,
                done.meters,
            );
        }
        result
    }

    /// Whether `deployed` can run on its backend now (its module loaded, of a kind its
    /// backend runs): what [`Executor::run`] checks first, for callers that queue work.
    pub fn check(&self, deployed: &Deployed) -> Result<(), InvokeError> {
        let kind = deployed.service.spec.backend.kind();
        self.backends
            .iter()
            .find(|b| b.backend.kind() == kind)
            .ok_or_else(|| backend::missing(kind))?
            .backend
            .check(deployed)
    }

    async fn dispatch(
        &self,
        deployed: Arc<Deployed>,
        input: Input,
        request: &Request,
    ) -> Result<Completed, InvokeError> {
        // A staged download is removed however the invocation ends (refused, failed, dropped).
        let _staged = match &input {
            Input::Object { staged, .. } => Some(RemoveOnDrop(staged.clone())),
            Input::Body(_) => None,
        };
        let kind = deployed.service.spec.backend.kind();
        let runner = self
            .backends
            .iter()
            .find(|b| b.backend.kind() == kind)
            .ok_or_else(|| backend::missing(kind))?;
        runner.backend.check(&deployed)?;
        // A user's quota is taken before a slot, so that one waiting for it holds no slot.
        let user = account_to(request, &deployed);
        let need = self.need(&deployed);
        let held = match request.kind {
            invocation::Kind::Sync => self.quotas.take_now(&user, need)?,
            invocation::Kind::Job => self.quotas.take(&user, need).await?,
        };
        let admitted = self
            .admission
            .admit(&deployed.slots, &runner.slots, request.kind)
            .instrument(tracing::debug_span!("admission"))
            .await?
            .holding(held);
        runner.backend.run(deployed, input, request, admitted).await
    }
}

/// The user an invocation is accounted to: who called (an OIDC subject), else the service's
/// owner, else nobody (empty).
fn account_to(request: &Request, deployed: &Deployed) -> String {
    account_to_user(&request.user, deployed)
}

/// [`account_to`] for a caller `user` (empty for none).
fn account_to_user(user: &str, deployed: &Deployed) -> String {
    if user.is_empty() {
        crate::access::owner_of(&deployed.service.definition)
            .unwrap_or_default()
            .to_string()
    } else {
        user.to_string()
    }
}

/// Adds a finished invocation to the usage accounts and the Prometheus counters.
fn record_usage(
    metrics: &Metrics,
    usage: &Accounting,
    service: String,
    user: String,
    channel: Channel,
    ok: bool,
    meters: invocation::Meters,
) {
    metrics.metered(&service, channel.label(), &meters);
    usage.record(&Usage {
        at_ms: crate::clock::now_ms(),
        service,
        user,
        channel,
        ok,
        meters,
    });
}

/// Removes a file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.0.display(), error = %e, "could not remove a staged input");
        }
    }
}
