//! Services whose `image` names a WebAssembly artifact: resolved at deploy (the module pulled,
//! validated and stored like an upload), and, for a tag, checked again before each job and at
//! most every `--image-refresh` for synchronous calls; a moved tag is pulled, compiled and
//! switched to atomically, while running invocations finish on the version they started with.
//!
//! The stored definition keeps `image` as given and adds `module` (the module's digest) and
//! [`IMAGE_DIGEST`](crate::service::IMAGE_DIGEST) (the manifest's), so a restart runs the same version without a registry.

use super::{DeployError, Deployer};
use crate::oci::Resolved;
use crate::registry::Deployed;
use crate::service::{DefinitionError, IMAGE_DIGEST, wasm_image};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// When each service's tag was last checked; one check at a time per service.
#[derive(Default)]
pub(super) struct Checks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>);

impl Checks {
    fn of(&self, service: &str) -> Arc<tokio::sync::Mutex<Option<Instant>>> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_string()).or_default().clone()
    }

    fn forget(&self, service: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(service);
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|service, _| keep(service));
    }
}

impl Deployer {
    /// Forgets the tag checks of removed services, whichever server removed them, until the
    /// registry's events end or `stop` turns true.
    pub async fn follow_removals(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        use crate::registry::ServiceEvent;
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.registry.subscribe();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match event {
                Ok(ServiceEvent::Removed(name)) => self.image_checks.forget(&name),
                Ok(ServiceEvent::Deployed(_)) => {}
                // Missed some: keep only the services that still exist.
                Err(RecvError::Lagged(_)) => self
                    .image_checks
                    .retain(|name| self.registry.get(name).is_some()),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// Checks a wasm image service's tag before a job; `Ok(Some(line))` when it moved and the
/// service switched, a line for the job's log.
pub trait Refresh: Send + Sync + 'static {
    /// Checks `service` now.
    fn refresh<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// A service this server has not heard of yet but the shared registry holds (created on
    /// another server a moment ago), deployed here; `None` when there is no such service.
    fn catch_up<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Option<Arc<Deployed>>>;
}

impl Refresh for Deployer {
    fn refresh<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            self.refresh_image(service, true)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn catch_up<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Option<Arc<Deployed>>> {
        Box::pin(async move {
            match self.registry.fetch(service).await {
                Ok(Some(stored)) => {
                    self.apply_remote(crate::registry::ServiceChange::Put(stored))
                        .await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(service, error = %e, "could not read the service from the shared registry");
                }
            }
            self.registry.get(service)
        })
    }
}

impl Deployer {
    /// A service on one of the server's runtimes: its `module` is the runtime's component
    /// (stored and compiled once, whichever service comes first), its `script` the program.
    async fn resolve_runtime(
        &self,
        map: &mut Map<String, Value>,
        runtime: crate::runtimes::Runtime,
    ) -> Result<(), DeployError> {
        let has_script = map
            .get("script")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty());
        if !has_script {
            return Err(DefinitionError::InvalidField {
                field: "script",
                reason: format!(
                    "a service on {} runs its {} program from `script`, which is empty",
                    runtime.image, runtime.language
                ),
            }
            .into());
        }
        self.check_packages(map, runtime).await?;
        let path = self.runtimes_dir.join(runtime.file);
        // The runtime is tens of megabytes: read and hashed only when its file changed.
        let stamp = tokio::fs::metadata(&path)
            .await
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        let known = self
            .runtime_modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(runtime.image)
            .filter(|(seen, _)| stamp.is_some() && Some(*seen) == stamp)
            .map(|(_, digest)| *digest);
        if let Some(digest) = known
            && self.modules.contains(&digest).await
        {
            map.remove(IMAGE_DIGEST);
            map.insert("module".into(), Value::String(digest.to_string()));
            return Ok(());
        }
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            DefinitionError::InvalidField {
                field: "image",
                reason: format!(
                    "the {} runtime is not installed on this server ({}: {e}); build it with {} and start the server with --runtimes-dir naming its output folder",
                    runtime.language,
                    path.display(),
                    runtime.build_script
                ),
            }
        })?;
        let stored = self.put_module(bytes.into()).await?;
        if let Some(stamp) = stamp {
            self.runtime_modules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(runtime.image, (stamp, stored.digest));
        }
        if stored.created {
            tracing::info!(image = runtime.image, module = %stored.digest, "runtime stored and compiled");
        }
        map.remove(IMAGE_DIGEST);
        map.insert("module".into(), Value::String(stored.digest.to_string()));
        Ok(())
    }

    /// A script service's `packages`: a stored package, on a runtime that imports them.
    async fn check_packages(
        &self,
        map: &Map<String, Value>,
        runtime: crate::runtimes::Runtime,
    ) -> Result<(), DeployError> {
        let Some(text) = map.get("packages") else {
            return Ok(());
        };
        let invalid = |reason: String| DefinitionError::InvalidField {
            field: "packages",
            reason,
        };
        let text = text.as_str().ok_or_else(|| {
            invalid(
                "must be the digest (sha256:<hex>) of a zip uploaded to /system/packages".into(),
            )
        })?;
        if !runtime.takes_packages {
            return Err(invalid(format!(
                "{} services take no packages: bundle the script's dependencies into it (esbuild, rollup)",
                runtime.language
            ))
            .into());
        }
        let digest = crate::modules::Digest::parse(text.trim()).map_err(invalid)?;
        match self.packages.contains(&digest).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(invalid(format!(
                "no package {digest}: upload its zip to /system/packages first"
            ))
            .into()),
            Err(crate::packages::PackageError::Store(e)) => {
                Err(crate::modules::ModuleError::Store(e).into())
            }
            Err(e) => Err(invalid(e.to_string()).into()),
        }
    }

    /// Resolves `image` when the definition has no module of its own: a wasm artifact becomes
    /// its `module`; a container image is left for the Kubernetes backend.
    pub(super) async fn resolve_image(
        &self,
        map: &mut Map<String, Value>,
    ) -> Result<(), DeployError> {
        let Some(image) = map
            .get("image")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string)
        else {
            return Ok(());
        };
        if let Some(runtime) = crate::runtimes::named(&image) {
            let runtime = runtime.map_err(|reason| DefinitionError::InvalidField {
                field: "image",
                reason,
            })?;
            return self.resolve_runtime(map, runtime).await;
        }
        // A module given by the user wins over the image, as before images could be wasm.
        if map.contains_key("module") && !map.contains_key(IMAGE_DIGEST) {
            return Ok(());
        }
        // A definition that names no valid service never reaches a registry.
        match map.get("name") {
            Some(Value::String(name)) => crate::service::validate_name(name)?,
            _ => return Err(DefinitionError::MissingName.into()),
        }
        map.remove("module");
        map.remove(IMAGE_DIGEST);
        match self.registries.resolve(&image).await {
            Ok(Resolved::Wasm { manifest, module }) => {
                let stored = self
                    .put_module(module.into())
                    .await
                    .map_err(|e| DefinitionError::InvalidField {
                        field: "image",
                        reason: format!("{image}: the artifact's module is not usable: {e}"),
                    })?;
                tracing::info!(%image, manifest = %manifest, module = %stored.digest, "wasm image resolved");
                map.insert("module".into(), Value::String(stored.digest.to_string()));
                map.insert(IMAGE_DIGEST.into(), Value::String(manifest));
                Ok(())
            }
            Ok(Resolved::Container) if self.images_available => Ok(()),
            Ok(Resolved::Container) => Err(DefinitionError::InvalidField {
                field: "image",
                reason: format!(
                    "{image} is a container image, not a WebAssembly artifact, and no Kubernetes cluster is configured to run it"
                ),
            }
            .into()),
            // The cluster may reach a registry this server cannot: leave it the image.
            Err(e) if e.is_upstream() && self.images_available => {
                tracing::warn!(%image, error = %e, "the image could not be inspected; it runs as a container image");
                Ok(())
            }
            Err(crate::oci::OciError::Unreachable { reference, reason }) => {
                Err(crate::oci::OciError::Unreachable {
                    reference,
                    reason: format!(
                        "{reason} (with no Kubernetes cluster configured, an image must be a WebAssembly artifact this server can pull)"
                    ),
                }
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a wasm image service's tag (always with `force`, else at most every
    /// `--image-refresh`); when it moved, pulls and deploys the new version. `Ok(Some(line))`
    /// says what changed.
    pub async fn refresh_image(
        &self,
        service: &str,
        force: bool,
    ) -> Result<Option<String>, DeployError> {
        let Some(deployed) = self.registry.get(service) else {
            return Ok(None);
        };
        let Some((image, current)) = wasm_image(&deployed.service.definition)
            .filter(|(image, _)| !crate::oci::is_pinned(image))
            .map(|(i, d)| (i.to_string(), d.to_string()))
        else {
            return Ok(None);
        };
        let check = self.image_checks.of(service);
        let mut last = check.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.limits.image_refresh) {
            return Ok(None);
        }
        // Counted from the attempt, so an unreachable registry is not asked on every call.
        *last = Some(Instant::now());
        let now = self.registries.current_digest(&image).await?;
        if now == current {
            return Ok(None);
        }
        let _guard = self.deploy_lock.lock().await;
        // The definition as it is now: an update may have raced with the check.
        let Some(deployed) = self.registry.get(service) else {
            return Ok(None);
        };
        let revision = deployed.revision;
        let mut map = deployed.service.definition.clone();
        self.resolve_image(&mut map).await?;
        let Some((_, pulled)) = wasm_image(&map).map(|(i, d)| (i.to_string(), d.to_string()))
        else {
            return Err(DeployError::Internal(format!(
                "{image} no longer names a WebAssembly artifact; the service keeps running the version it has"
            )));
        };
        if pulled == current {
            return Ok(None);
        }
        let module = map.get("module").cloned().unwrap_or(Value::Null);
        let service_value = self.validate(Value::Object(map))?;
        let deployed = self.deploy(service_value).await?;
        self.registry.replace(deployed, revision).await?;
        let line = format!(
            "{image} moved from {current} to {pulled}; the service now runs module {}",
            module.as_str().unwrap_or("?")
        );
        tracing::info!(service, "{line}");
        Ok(Some(line))
    }
}
