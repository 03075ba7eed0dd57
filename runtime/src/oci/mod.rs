//! WebAssembly modules in OCI registries, with oci-client: what a service's `image` names (a
//! wasm artifact or a container image), pulling a module out of an artifact, the cheap digest
//! check used to notice a moved tag, and publishing a module (`oscar-wasm push`).
//!
//! - [`auth`]: registry credentials, as docker and podman keep them;
//! - [`layers`]: the .wasm file inside a `wasi/wasm` image's tar layer.
//!
//! Accepted wasm layouts: the CNCF wasm artifact (config `application/vnd.wasm.config.v0+json`,
//! one `application/wasm` layer), wasm-to-oci's `application/vnd.wasm.content.layer.v1+wasm`
//! layer, and images for the `wasi/wasm` platform (the layer file the entrypoint names).

pub mod auth;
pub mod layers;
pub mod pull;

use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::time::Duration;

/// The CNCF wasm artifact's config media type.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF wasm artifact's layer media type.
pub const WASM_LAYER: &str = "application/wasm";
/// wasm-to-oci's layer media type.
pub const WASM_TO_OCI_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// An image config larger than this is not read.
const MAX_CONFIG: u64 = 1 << 20;

/// Why an image reference could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Not a valid OCI reference.
    #[error("{reference} is not a valid image reference: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("{reference} was not found in its registry: {reason}")]
    NotFound {
        /// The reference.
        reference: String,
        /// The registry's answer.
        reason: String,
    },
    /// The registry refused the credentials, or asked for some.
    #[error("{reference}: the registry refused access: {reason}")]
    Denied {
        /// The reference.
        reference: String,
        /// The registry's answer.
        reason: String,
    },
    /// The registry could not be reached or failed.
    #[error("{reference}: the registry could not be reached or failed: {reason}")]
    Unreachable {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The reference (or its registry's redirect or token realm) points where this server
    /// does not connect: this machine or its link-local network.
    #[error("{reference}: {reason}")]
    Refused {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The artifact is not usable (bad layout, digest mismatch, too large).
    #[error("{reference}: {reason}")]
    Invalid {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

impl OciError {
    /// Whether the registry's own failure (502) rather than the reference's (400).
    pub fn is_upstream(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    fn from_client(reference: &str, error: oci_client::errors::OciDistributionError) -> Self {
        use oci_client::errors::OciDistributionError as E;
        let reference = reference.to_string();
        let reason = error.to_string();
        match &error {
            E::ImageManifestNotFoundError(_) => Self::NotFound { reference, reason },
            E::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                            | oci_client::errors::OciErrorCode::BlobUnknown
                    )
                }) =>
            {
                Self::NotFound { reference, reason }
            }
            E::ServerError { code: 404, .. } => Self::NotFound { reference, reason },
            E::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::Unauthorized
                            | oci_client::errors::OciErrorCode::Denied
                    )
                }) =>
            {
                Self::Denied { reference, reason }
            }
            E::ServerError {
                code: 401 | 403, ..
            }
            | E::UnauthorizedError { .. }
            | E::AuthenticationFailure(_) => Self::Denied { reference, reason },
            E::DigestError(_) => Self::Invalid { reference, reason },
            _ => Self::Unreachable { reference, reason },
        }
    }
}

/// What an image reference names.
#[derive(Debug)]
pub enum Resolved {
    /// A WebAssembly module.
    Wasm {
        /// The manifest's digest (what a digest reference would pin).
        manifest: String,
        /// The module's bytes, digest-checked against the manifest.
        module: Vec<u8>,
    },
    /// A container image, for the Kubernetes backend.
    Container,
}

/// How the server reaches registries.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry.
    pub auths: auth::Auths,
    /// A module larger than this is refused.
    pub max_module: u64,
    /// `--allow-local-endpoints`: registries on this machine are reached without being listed.
    pub allow_local: bool,
}

/// The OCI client with the server's settings.
pub struct Registries {
    /// For pushing (`oscar-wasm push`, the user's side).
    client: Client,
    /// For every read the server makes: bounded, addresses checked.
    puller: pull::Puller,
    settings: RegistrySettings,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("insecure", &self.settings.insecure)
            .finish_non_exhaustive()
    }
}

/// Parses `image` as an OCI reference.
pub fn parse_reference(image: &str) -> Result<Reference, OciError> {
    image
        .trim()
        .parse::<Reference>()
        .map_err(|e| OciError::BadReference {
            reference: image.to_string(),
            reason: e.to_string(),
        })
}

/// Whether `image` pins a digest (`...@sha256:...`), so it never changes.
pub fn is_pinned(image: &str) -> bool {
    parse_reference(image).is_ok_and(|r| r.digest().is_some())
}

impl Registries {
    /// A client for `settings`.
    pub fn new(settings: RegistrySettings) -> Self {
        let config = oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(settings.insecure.clone()),
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let puller = pull::Puller::new(pull::AddressRule {
            listed: settings.insecure.clone(),
            allow_local: settings.allow_local,
        });
        Self {
            client: Client::new(config),
            puller,
            settings,
        }
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        self.settings
            .auths
            .for_registry(reference.resolve_registry())
    }

    /// The digest `image` names now: one manifest HEAD (or GET when the registry needs it).
    pub async fn current_digest(&self, image: &str) -> Result<String, OciError> {
        let reference = parse_reference(image)?;
        self.puller
            .current_digest(image, &reference, &self.auth(&reference))
            .await
    }

    /// What `image` names: a wasm module (pulled and digest-checked) or a container image.
    pub async fn resolve(&self, image: &str) -> Result<Resolved, OciError> {
        let reference = parse_reference(image)?;
        let auth = self.auth(&reference);
        let raw = self.puller.manifest(image, &reference, &auth).await?;
        let digest = raw.digest.clone();
        let manifest = match parse_manifest(image, &raw)? {
            Manifest::Image(manifest) => manifest,
            Manifest::Index(index) => {
                // A multi-platform image: its wasi/wasm entry, else it is a container image.
                let Some(entry) = index.manifests.iter().find(|m| {
                    m.platform.as_ref().is_some_and(|p| {
                        is_wasi_platform(&p.os.to_string(), &p.architecture.to_string())
                    })
                }) else {
                    return Ok(Resolved::Container);
                };
                let pinned = reference.clone_with_digest(entry.digest.clone());
                let raw = self.puller.manifest(image, &pinned, &auth).await?;
                match parse_manifest(image, &raw)? {
                    Manifest::Image(manifest) => manifest,
                    Manifest::Index(_) => {
                        return Err(OciError::Invalid {
                            reference: image.to_string(),
                            reason: "its index names another index for wasi/wasm".into(),
                        });
                    }
                }
            }
        };
        match self.module_of(image, &reference, &manifest).await? {
            Some(module) => Ok(Resolved::Wasm {
                manifest: digest,
                module,
            }),
            None => Ok(Resolved::Container),
        }
    }

    /// The module of a wasm manifest; `None` for a container image's.
    async fn module_of(
        &self,
        image: &str,
        reference: &Reference,
        manifest: &OciImageManifest,
    ) -> Result<Option<Vec<u8>>, OciError> {
        let invalid = |reason: String| OciError::Invalid {
            reference: image.to_string(),
            reason,
        };
        let wasm_layers: Vec<&OciDescriptor> = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == WASM_LAYER || l.media_type == WASM_TO_OCI_LAYER)
            .collect();
        if manifest.config.media_type == WASM_CONFIG || !wasm_layers.is_empty() {
            let [layer] = wasm_layers[..] else {
                return Err(invalid(format!(
                    "a wasm artifact has exactly one {WASM_LAYER} layer; this one has {}",
                    wasm_layers.len()
                )));
            };
            return self.blob(image, reference, layer).await.map(Some);
        }
        // An image's config says its platform and entrypoint.
        if manifest.config.size < 0 || manifest.config.size as u64 > MAX_CONFIG {
            return Err(invalid(format!(
                "its config has {} bytes; at most {MAX_CONFIG} are read",
                manifest.config.size
            )));
        }
        let config = self
            .blob_limited(image, reference, &manifest.config, MAX_CONFIG)
            .await?;
        let config: layers::ImageConfig = serde_json::from_slice(&config)
            .map_err(|e| invalid(format!("its config is not an OCI image config: {e}")))?;
        if !is_wasi_platform(&config.os, &config.architecture) {
            return Ok(None);
        }
        let entrypoint = config.entrypoint().ok_or_else(|| {
            invalid("a wasi/wasm image must name its .wasm file in Entrypoint or Cmd".into())
        })?;
        self.wasi_image_module(image, reference, manifest, &entrypoint)
            .await
            .map(Some)
    }

    async fn wasi_image_module(
        &self,
        image: &str,
        reference: &Reference,
        manifest: &OciImageManifest,
        entrypoint: &str,
    ) -> Result<Vec<u8>, OciError> {
        let invalid = |reason: String| OciError::Invalid {
            reference: image.to_string(),
            reason,
        };
        // The last layer holding the file wins, as in a container's file system.
        for layer in manifest.layers.iter().rev() {
            let blob = self.blob(image, reference, layer).await?;
            let (path, limit, media) = (
                entrypoint.to_string(),
                self.settings.max_module,
                layer.media_type.clone(),
            );
            let found =
                tokio::task::spawn_blocking(move || layers::find_file(&blob, &media, &path, limit))
                    .await
                    .map_err(|e| invalid(e.to_string()))?
                    .map_err(invalid)?;
            if let Some(module) = found {
                return Ok(module);
            }
        }
        Err(invalid(format!(
            "no layer holds {entrypoint}, the file its entrypoint names"
        )))
    }

    /// A blob, bounded by the module size limit and digest-checked.
    async fn blob(
        &self,
        image: &str,
        reference: &Reference,
        layer: &OciDescriptor,
    ) -> Result<Vec<u8>, OciError> {
        // Layers of wasi images are compressed tars: allow them some room over the module.
        let limit = self.settings.max_module.saturating_mul(2);
        self.blob_limited(image, reference, layer, limit).await
    }

    async fn blob_limited(
        &self,
        image: &str,
        reference: &Reference,
        layer: &OciDescriptor,
        limit: u64,
    ) -> Result<Vec<u8>, OciError> {
        let too_large = |size: u64| OciError::Invalid {
            reference: image.to_string(),
            reason: format!("a layer of {size} bytes is over the limit of {limit} bytes"),
        };
        if layer.size < 0 || layer.size as u64 > limit {
            return Err(too_large(layer.size.max(0) as u64));
        }
        // Bounded and digest-checked as it is read.
        self.puller
            .blob(
                image,
                reference,
                &self.auth(reference),
                &layer.digest,
                limit,
            )
            .await
    }

    /// Publishes `module` at `image` as a CNCF wasm artifact; returns the manifest's URL.
    pub async fn push(&self, image: &str, module: Vec<u8>) -> Result<String, OciError> {
        let reference = parse_reference(image)?;
        let layer = oci_client::client::ImageLayer::new(module, WASM_LAYER.to_string(), None);
        let config = serde_json::json!({
            "created": crate::clock::rfc3339(crate::clock::now_ms()),
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [layer.sha256_digest()],
        });
        let config = oci_client::client::Config::new(
            serde_json::to_vec(&config).unwrap_or_default(),
            WASM_CONFIG.to_string(),
            None,
        );
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.artifact_type = Some(WASM_CONFIG.to_string());
        let pushed = self
            .client
            .push(
                &reference,
                &[layer],
                config,
                &self.auth(&reference),
                Some(manifest),
            )
            .await
            .map_err(|e| OciError::from_client(image, e))?;
        Ok(pushed.manifest_url)
    }
}

/// A manifest by its kind.
enum Manifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
}

/// Reads a manifest or an index, by its media type.
fn parse_manifest(image: &str, raw: &pull::RawManifest) -> Result<Manifest, OciError> {
    let invalid = |e: serde_json::Error| OciError::Invalid {
        reference: image.to_string(),
        reason: format!("its manifest ({}) is not valid: {e}", raw.media_type),
    };
    let is_index = matches!(
        raw.media_type.as_str(),
        oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE
            | oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE
    );
    if is_index {
        serde_json::from_slice(&raw.bytes)
            .map(Manifest::Index)
            .map_err(invalid)
    } else {
        serde_json::from_slice(&raw.bytes)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(invalid)
    }
}

/// Whether an image's platform is WebAssembly on WASI (`wasi`, `wasip1`, `wasip2`).
fn is_wasi_platform(os: &str, architecture: &str) -> bool {
    architecture == "wasm" && matches!(os, "wasi" | "wasip1" | "wasip2")
}
