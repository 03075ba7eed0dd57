//! The seam every backend implements: a wasm runner in-process ([`super::wasm`]), a Kubernetes
//! Job ([`super::image`]). Adding a kind of service is adding a file that implements
//! [`Backend`] and one line in `App::open` that hands it to the executor.

use super::admission::Admitted;
use super::invocation::{Completed, Input, InvokeError, Request};
use crate::registry::Deployed;
use crate::service::BackendKind;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Runs invocations of one kind of service. Admission (the service's slot and the backend's)
/// is the executor's; a backend holds `admitted` until the invocation has really stopped.
pub trait Backend: Send + Sync + 'static {
    /// The services it runs.
    fn kind(&self) -> BackendKind;

    /// Refuses at once, before any slot is taken, an invocation this backend cannot start (a
    /// module that could not be loaded).
    fn check(&self, _deployed: &Deployed) -> Result<(), InvokeError> {
        Ok(())
    }

    /// Runs `deployed` on `input`. Dropping the future stops the invocation.
    fn run<'a>(
        &'a self,
        deployed: Arc<Deployed>,
        input: Input,
        request: &'a Request,
        admitted: Admitted,
    ) -> BoxFuture<'a, Result<Completed, InvokeError>>;

    /// Releases what the backend keeps on disk, at shutdown.
    fn stop(&self) {}
}

/// Why a service of `kind` cannot run on a server that has no backend for it.
pub fn missing(kind: BackendKind) -> InvokeError {
    InvokeError::Unavailable(match kind {
        BackendKind::Wasm => "this server runs no wasm modules".into(),
        BackendKind::Image => "image services need a Kubernetes cluster".into(),
    })
}
