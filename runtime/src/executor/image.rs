//! The image backend: a service's container image and script, run as a Kubernetes Job through
//! [`crate::kube::Kube`], with the input handed over in memory.

use super::admission::Admitted;
use super::backend::Backend;
use super::invocation::{Completed, Input, InvokeError, Kind, Request};
use crate::kube::Kube;
use crate::registry::Deployed;
use crate::service::BackendKind;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Runs image services as Kubernetes Jobs.
pub struct ImageBackend {
    kube: Arc<Kube>,
    default_timeout: Duration,
}

impl ImageBackend {
    /// Jobs through `kube`, stopped after `default_timeout` when the service sets none.
    pub fn new(kube: Arc<Kube>, default_timeout: Duration) -> Self {
        Self {
            kube,
            default_timeout,
        }
    }
}

impl Backend for ImageBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Image
    }

    fn run<'a>(
        &'a self,
        deployed: Arc<Deployed>,
        input: Input,
        request: &'a Request,
        admitted: Admitted,
    ) -> BoxFuture<'a, Result<Completed, InvokeError>> {
        Box::pin(async move {
            let _admitted = admitted;
            run(&self.kube, &deployed, input, request, self.default_timeout).await
        })
    }
}

/// Runs `deployed`'s image on `input`.
async fn run(
    kube: &Kube,
    deployed: &Deployed,
    input: Input,
    request: &Request,
    default_timeout: Duration,
) -> Result<Completed, InvokeError> {
    let crate::service::Backend::Image { image, script, pod } = &deployed.service.spec.backend
    else {
        return Err(InvokeError::Unavailable("the service has no image".into()));
    };
    let (input_name, input, extra_env) = match input {
        Input::Body(bytes) => (
            format!("event-file-{}", uuid::Uuid::new_v4()),
            bytes,
            Vec::new(),
        ),
        Input::Object { staged, name, env } => {
            let bytes = tokio::fs::read(&staged)
                .await
                .map_err(|e| InvokeError::Host(format!("reading the staged input: {e}")))?;
            (name, bytes, env)
        }
    };
    kube.run(
        &deployed.service,
        crate::kube::Invocation {
            image,
            script,
            pod,
            input_name,
            input,
            extra_env,
            timeout: deployed.service.spec.timeout.unwrap_or(default_timeout),
            asynchronous: request.kind == Kind::Job,
        },
    )
    .await
    .map_err(|e| InvokeError::Backend(e.to_string()))
}
