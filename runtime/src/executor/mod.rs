//! Runs invocations on their service's backend, the one entry point for /run, jobs and storage
//! events: admission control ([`admission`]: the service's slot, then the backend's, with a
//! bounded queue for synchronous calls), then the backend (a wasm module in-process through
//! [`crate::invoke::Invoker`], or an image as a Kubernetes Job through [`image`]), and the
//! metrics. Every backend gets the same 503, the same timeouts and the same figures.

pub mod admission;
mod image;

use crate::invoke::{Completed, Input, InvokeError, Invoker, Request};
use crate::kube::Kube;
use crate::metrics::Metrics;
use crate::registry::Deployed;
use crate::service::Backend;
use admission::Admission;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Server-wide settings of the executor.
#[derive(Debug, Clone, Copy)]
pub struct ExecutorSettings {
    /// Invocations running at once, per backend.
    pub max_concurrency: usize,
    /// Synchronous calls waiting for a slot; beyond, refused at once.
    pub max_queue: usize,
    /// Timeout of services whose definition has none.
    pub default_timeout: Duration,
}

/// A backend and its server-wide slots.
struct Slots<T> {
    backend: T,
    slots: Arc<Semaphore>,
}

impl<T> Slots<T> {
    fn new(backend: T, n: usize) -> Self {
        Self {
            backend,
            slots: Arc::new(Semaphore::new(n.max(1))),
        }
    }
}

/// Runs invocations on every backend within the server's limits.
pub struct Executor {
    wasm: Slots<Invoker>,
    images: Option<Slots<Arc<Kube>>>,
    admission: Admission,
    metrics: Arc<Metrics>,
    default_timeout: Duration,
}

impl Executor {
    /// An executor over the wasm invoker and, when a cluster answered, Kubernetes.
    pub fn new(
        wasm: Invoker,
        kube: Option<Arc<Kube>>,
        settings: ExecutorSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            wasm: Slots::new(wasm, settings.max_concurrency),
            images: kube.map(|k| Slots::new(k, settings.max_concurrency)),
            admission: Admission::new(settings.max_queue, metrics.clone()),
            metrics,
            default_timeout: settings.default_timeout,
        }
    }

    /// The wasm backend (its scratch root, for start-up and shutdown).
    pub fn wasm(&self) -> &Invoker {
        &self.wasm.backend
    }

    /// The Kubernetes backend, when there is one.
    pub fn kube(&self) -> Option<&Arc<Kube>> {
        self.images.as_ref().map(|i| &i.backend)
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
        let result = self.dispatch(deployed, input.into(), &request).await;
        let (outcome, seconds) = match &result {
            Ok(done) => (done.exit.label(), done.elapsed.as_secs_f64()),
            Err(InvokeError::Overloaded) => ("overloaded", 0.0),
            Err(_) => ("error", 0.0),
        };
        self.metrics
            .invoked(&service, request.kind.label(), outcome, seconds);
        result
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
        match &deployed.service.spec.backend {
            Backend::Wasm(_) => {
                let runnable = deployed.runnable.clone().ok_or_else(|| {
                    InvokeError::Unavailable(format!(
                        "{} could not be loaded at start-up; upload it again",
                        deployed.service.spec.backend
                    ))
                })?;
                let admitted = self
                    .admission
                    .admit(&deployed.slots, &self.wasm.slots, request.kind)
                    .await?;
                self.wasm
                    .backend
                    .run(deployed, runnable, input, request, admitted)
                    .await
            }
            Backend::Image { .. } => {
                let images = self.images.as_ref().ok_or_else(|| {
                    InvokeError::Unavailable("image services need a Kubernetes cluster".into())
                })?;
                let _admitted = self
                    .admission
                    .admit(&deployed.slots, &images.slots, request.kind)
                    .await?;
                image::run(
                    &images.backend,
                    &deployed,
                    input,
                    request,
                    self.default_timeout,
                )
                .await
            }
        }
    }
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
