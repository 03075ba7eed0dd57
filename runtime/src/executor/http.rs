//! One request to an HTTP service (a `wasi:http/proxy` component): a fresh store and instance
//! from the service's pre-linked component, the request handed to its
//! `wasi:http/incoming-handler`, and the response it sets streamed back while the guest runs.
//!
//! The guest runs as a task on tokio's workers (wasmtime's async fibers), yielding at every
//! epoch tick; the task holds the invocation's admission slot until the guest returns, and is
//! dropped at the service's timeout, which ends the guest, its outbound connections and an
//! unfinished response body. Its memory is the service's limit; its stdout and stderr go to
//! the server's log, tagged with the service and the request.

use super::admission::Admitted;
use super::http_meter::{HttpMeter, Sinks};
use super::invocation::InvokeError;
use crate::metrics::Metrics;
use crate::registry::Deployed;
use crate::usage::Accounting;
use crate::wasm::http::{HttpPre, HttpState};
use crate::wasm::meter::{CpuTimed, MeteredLimits};
use crate::wasm::outbound::Outbound;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpView};

/// A request as the guest gets it, and the response it answers with.
pub type HttpRequest = http::Request<WasiBody>;
/// The guest's response; its body streams while the guest writes it.
pub type HttpResponse = http::Response<WasiBody>;

use axum::http;

/// Server-wide settings of HTTP services.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Timeout of services whose definition has none.
    pub default_timeout: Duration,
    /// Memory limit of services whose definition has none.
    pub default_memory: u64,
    /// `--allow-local-endpoints`: outbound requests may reach this machine's networks.
    pub allow_local: bool,
    /// Bytes an outbound response body may hold.
    pub max_outbound_response: u64,
    /// Bytes of stdout/stderr kept per request.
    pub max_log_bytes: usize,
}

/// Why a request got no response from the guest.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Refused before the guest ran (not an HTTP service, overloaded, unavailable).
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The guest had not set a response when its timeout came.
    #[error("the service did not answer within its timeout of {0:.3} s")]
    Timeout(f64),
    /// The guest trapped, answered with an error code, or returned without a response.
    #[error("the service failed: {0}")]
    Guest(String),
}

/// Runs HTTP services' requests.
pub struct HttpInvoker {
    settings: HttpSettings,
    metrics: Arc<Metrics>,
    usage: Arc<Accounting>,
}

/// What one request needs besides the request itself.
pub struct HttpCall {
    /// The service.
    pub deployed: Arc<Deployed>,
    /// Its linked component.
    pub pre: HttpPre,
    /// Its slots, held until the guest has returned.
    pub admitted: Admitted,
    /// The id in the server's log.
    pub request_id: String,
    /// The OIDC subject that called, or empty (then the service's owner is accounted).
    pub user: String,
}

impl HttpInvoker {
    /// An invoker with `settings`; what requests use goes to `metrics` and `usage`.
    pub fn new(settings: HttpSettings, metrics: Arc<Metrics>, usage: Arc<Accounting>) -> Self {
        Self {
            settings,
            metrics,
            usage,
        }
    }

    /// Hands `request` to a fresh instance; returns its response as soon as the guest sets
    /// it (the body follows as the guest writes it).
    pub async fn serve(
        &self,
        call: HttpCall,
        request: HttpRequest,
    ) -> Result<HttpResponse, ServeError> {
        let spec = &call.deployed.service.spec;
        let service: Arc<str> = spec.name.as_str().into();
        let timeout = spec.timeout.unwrap_or(self.settings.default_timeout);
        let started = Instant::now();
        let deadline = started
            .checked_add(timeout)
            .unwrap_or(started + Duration::from_secs(365 * 24 * 3600));
        let pipe = MemoryOutputPipe::new(self.settings.max_log_bytes);
        let mut store = self.store(&call, &pipe, deadline);
        let meter = self.meter(&call);
        let request = request.map(|body| meter.count(body, true));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (req, out) = {
            let mut view = store.data_mut().http();
            let req = view
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| ServeError::Guest(format!("{e:#}")))?;
            let out = view
                .new_response_outparam(tx)
                .map_err(|e| ServeError::Guest(format!("{e:#}")))?;
            (req, out)
        };
        let pre = call.pre.clone();
        let admitted = call.admitted;
        let polls = meter.clone();
        let finished = meter.clone();
        let guest = async move {
            let _admitted = admitted;
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            let peak = store.data().limits.peak_memory();
            finished.finish(result.is_ok(), started.elapsed(), peak);
            result
        };
        let guest = CpuTimed::new(guest, move |used| polls.add_cpu(used));
        let request_id = call.request_id;
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            let result = tokio::time::timeout_at(deadline, guest).await;
            let seconds = started.elapsed().as_secs_f64();
            let outcome = match &result {
                Ok(Ok(())) => "success",
                Ok(Err(_)) => "trap",
                Err(_) => "timeout",
            };
            metrics.invoked(&service, "http", outcome, seconds);
            log_output(&service, &request_id, &pipe.contents());
            result
        });
        match rx.await {
            Ok(Ok(response)) => Ok(response.map(|body| meter.count(body, false))),
            Ok(Err(code)) => Err(ServeError::Guest(format!(
                "it answered with the error {}",
                describe(&code)
            ))),
            Err(_) => Err(match task.await {
                Ok(Err(_elapsed)) => ServeError::Timeout(timeout.as_secs_f64()),
                Ok(Ok(Err(trap))) => ServeError::Guest(super::wasm::sandbox::describe_trap(&trap)),
                Ok(Ok(Ok(()))) => {
                    ServeError::Guest("it returned without setting a response".into())
                }
                Err(e) => ServeError::Guest(format!("its task failed: {e}")),
            }),
        }
    }
}

impl HttpInvoker {
    /// The store of one request: stdout and stderr into `pipe`, outbound requests by the
    /// service's list until `deadline`, memory within its limit (and metered), yielding to
    /// tokio at every epoch tick so that a busy guest shares its worker and its timeout fires.
    fn store(
        &self,
        call: &HttpCall,
        pipe: &MemoryOutputPipe,
        deadline: Instant,
    ) -> Store<HttpState> {
        let spec = &call.deployed.service.spec;
        let memory = spec.memory_limit.unwrap_or(self.settings.default_memory);
        let mut store = Store::new(
            call.pre.engine(),
            HttpState {
                ctx: WasiCtxBuilder::new()
                    .stdout(pipe.clone())
                    .stderr(pipe.clone())
                    .build(),
                table: ResourceTable::new(),
                http: WasiHttpCtx::new(),
                hooks: Outbound {
                    allow: spec.allowed_outbound_hosts.clone(),
                    allow_local: self.settings.allow_local,
                    deadline,
                    max_response: self.settings.max_outbound_response,
                    service: spec.name.as_str().into(),
                    refusals: Default::default(),
                },
                limits: MeteredLimits::new(
                    StoreLimitsBuilder::new()
                        .memory_size(usize::try_from(memory).unwrap_or(usize::MAX))
                        .table_elements(crate::wasm::MAX_TABLE_ELEMENTS)
                        .trap_on_grow_failure(true)
                        .build(),
                ),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }

    /// The meter of `call`'s request, accounted to its caller or else the service's owner.
    fn meter(&self, call: &HttpCall) -> Arc<HttpMeter> {
        let user = if call.user.is_empty() {
            crate::access::owner_of(&call.deployed.service.definition)
                .unwrap_or_default()
                .to_string()
        } else {
            call.user.clone()
        };
        let sinks = Sinks {
            metrics: self.metrics.clone(),
            usage: self.usage.clone(),
        };
        HttpMeter::new(sinks, call.deployed.service.spec.name.clone(), user)
    }
}

fn describe(code: &ErrorCode) -> String {
    format!("{code:?}")
}

/// The guest's stdout and stderr into the server's log, a line each.
fn log_output(service: &str, request_id: &str, output: &[u8]) {
    for line in String::from_utf8_lossy(output)
        .lines()
        .filter(|l| !l.is_empty())
    {
        tracing::info!(service, request_id, "{line}");
    }
}
