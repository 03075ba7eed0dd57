//! A service definition: OSCAR's JSON kept as given (unknown fields included), plus the typed
//! view of the fields the runtime acts on, parsed once when the service is deployed.

use crate::faas::LogLevel;
use crate::modules::Digest;
use serde_json::{Map, Value};
use std::time::Duration;

/// Why a definition is refused; each names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The body is not a JSON object.
    #[error("the service definition must be a JSON object")]
    NotAnObject,
    /// `name` missing or not a string.
    #[error("the service definition needs a \"name\"")]
    MissingName,
    /// `name` is not a DNS-1123 label of 1 to 39 characters.
    #[error(
        "invalid service name {0:?}: use 1 to 39 lower-case letters, digits or '-', starting and ending with a letter or digit"
    )]
    InvalidName(String),
    /// A field has a value of the wrong type or form.
    #[error("invalid \"{field}\": {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// Neither a module nor an image: nothing to run.
    #[error(
        "the service needs a \"module\" (a sha256 digest of an uploaded module) or an \"image\""
    )]
    NothingToRun,
    /// An image without the script it runs.
    #[error("an \"image\" service needs its \"script\" (the shell script the image runs)")]
    MissingScript,
    /// A storage field (`storage_providers`, `input`, `output`) is wrong.
    #[error(transparent)]
    Storage(#[from] crate::storage::spec::StorageError),
    /// An image service while no Kubernetes cluster is configured.
    #[error(
        "\"image\" services run as Kubernetes Jobs and this server has no Kubernetes cluster (see --kube-callback-url); give the service a \"module\" instead"
    )]
    ImageUnsupported,
}

/// What runs a service's invocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A WebAssembly module, by digest: run in-process by wasmtime.
    Wasm(Digest),
    /// A container image running the service's shell script, as OSCAR runs it: a Kubernetes
    /// Job.
    Image {
        /// The image.
        image: String,
        /// The script, run with /bin/sh.
        script: String,
        /// What OSCAR sets on the pod from the definition.
        pod: PodSettings,
    },
}

pub use crate::kube::manifest::PodSettings;

/// `image_pull_secrets`, `labels`, `annotations`, `enable_gpu` and
/// `ephemeral_storage_request`, checked as Kubernetes will take them.
fn parse_pod_settings(definition: &Map<String, Value>) -> Result<PodSettings, DefinitionError> {
    let strings = |field: &'static str| -> Result<std::collections::BTreeMap<String, String>, DefinitionError> {
        match definition.get(field) {
            None | Some(Value::Null) => Ok(Default::default()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k.clone(), v.clone())),
                    _ => Err(invalid(field, format!("{k}: values must be strings"))),
                })
                .collect(),
            Some(_) => Err(invalid(field, "must map names to strings")),
        }
    };
    let image_pull_secrets = match definition.get("image_pull_secrets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.as_str() {
                Some(name) if is_dns_subdomain(name) => Ok(name.to_string()),
                _ => Err(invalid(
                    "image_pull_secrets",
                    format!("{item} is not the name of a Kubernetes Secret"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "image_pull_secrets",
                "must be a list of Secret names",
            ));
        }
    };
    let gpu = match definition.get("enable_gpu") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("enable_gpu", "must be true or false")),
    };
    let ephemeral_storage = match definition.get("ephemeral_storage_request") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            crate::quantity::parse(s).map_err(|r| invalid("ephemeral_storage_request", r))?;
            Some(s.trim().to_string())
        }
        Some(_) => {
            return Err(invalid(
                "ephemeral_storage_request",
                "must be a quantity such as \"2Gi\"",
            ));
        }
    };
    Ok(PodSettings {
        image_pull_secrets,
        labels: strings("labels")?,
        annotations: strings("annotations")?,
        gpu,
        ephemeral_storage,
    })
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

/// Which kind of backend runs a service; each kind has one runner in [`crate::executor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// In-process wasmtime.
    Wasm,
    /// A Kubernetes Job.
    Image,
}

impl Backend {
    /// Its kind.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Wasm(_) => BackendKind::Wasm,
            Self::Image { .. } => BackendKind::Image,
        }
    }

    /// The module of a wasm service.
    pub fn module(&self) -> Option<&Digest> {
        match self {
            Self::Wasm(digest) => Some(digest),
            Self::Image { .. } => None,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wasm(digest) => write!(f, "module {digest}"),
            Self::Image { image, .. } => write!(f, "image {image}"),
        }
    }
}

/// The fields of a definition that the runtime acts on.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name (a DNS-1123 label).
    pub name: String,
    /// What runs it: a module (a definition with `module`) or an image and its script.
    pub backend: Backend,
    /// The runtime log level for the no-output-file response.
    pub log_level: LogLevel,
    /// Environment variables and secrets, in definition order, ready for the WASI context.
    pub env: Vec<(String, String)>,
    /// The linear-memory limit in bytes, from `memory`.
    pub memory_limit: Option<u64>,
    /// `cpu`: the CPU share in cores (`"0.5"`, `"500m"`, `2`); a wasm guest's calls get
    /// `cpu × timeout` seconds of CPU time when it is under one core.
    pub cpu: Option<f64>,
    /// The wall-clock limit of one invocation, from `timeout` (seconds).
    pub timeout: Option<Duration>,
    /// The token that grants /run and /job on this service.
    pub token: String,
    /// Invocations of this service running at once (an oscar-wasm extension field).
    pub max_concurrency: Option<usize>,
    /// Where input objects come from and output files go.
    pub storage: crate::storage::spec::StorageSpec,
    /// How often the input folders are listed for new objects (`poll_interval`, seconds; an
    /// oscar-wasm field for stores that send no notifications).
    pub poll_interval: Option<Duration>,
    /// OSCAR's `expose`, when set: how an HTTP service is reached.
    pub expose: Option<Expose>,
    /// Where the service's guests may connect (`allowed_outbound_hosts`, Spin's spelling; an
    /// oscar-wasm field): nowhere when empty.
    /// Shared, so that each invocation's sender takes it without a copy.
    pub allowed_outbound_hosts: std::sync::Arc<crate::wasm::outbound::AllowList>,
}

/// OSCAR's `expose` section, as an HTTP service uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expose {
    /// Requests need basic auth with the service's name and token.
    pub set_auth: bool,
    /// The guest sees the whole path, not only the part after
    /// `/system/services/{name}/exposed` (OSCAR's ingress rewrite).
    pub rewrite_target: bool,
    /// Instances kept ready (informational here: every request gets a fresh instance in
    /// microseconds from the pre-linked component).
    pub min_scale: u32,
    /// Requests served at once (0: the server's bound).
    pub max_scale: u32,
    /// The port an image service's container listens on.
    pub api_port: u16,
    /// An image service runs its image's own command, not the script.
    pub default_command: bool,
}

/// A validated service: its definition as the user gave it (plus a generated token) and the
/// typed view of it.
#[derive(Debug, Clone)]
pub struct Service {
    /// The definition as stored and returned, unknown fields included.
    pub definition: Map<String, Value>,
    /// What the runtime needs from it, parsed once.
    pub spec: ServiceSpec,
}

impl Service {
    /// Validates a definition; generates a `token` when it has none.
    pub fn from_definition(value: Value) -> Result<Self, DefinitionError> {
        let Value::Object(mut definition) = value else {
            return Err(DefinitionError::NotAnObject);
        };
        crate::oscar_definition::normalize(&mut definition);
        // Only the registry writes it, into what it stores (sealed secrets).
        if definition.contains_key(crate::secrets::SEALED_FIELD) {
            return Err(invalid(
                crate::secrets::SEALED_FIELD,
                "is reserved for the server",
            ));
        }
        let name = match definition.get("name") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err(DefinitionError::MissingName),
        };
        validate_name(&name)?;
        let token = parse_token(&definition)?;
        definition.insert("token".into(), Value::String(token.clone()));
        let backend = parse_backend(&definition)?;
        let log_level = parse_log_level(definition.get("log_level"))?;
        let memory_limit = parse_memory(definition.get("memory"))?;
        let cpu = parse_cpu(definition.get("cpu"))?;
        let timeout = match definition.get("timeout") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_timeout(v).map_err(|r| invalid("timeout", r))?),
        };
        let env = parse_environment(definition.get("environment"))?;
        let max_concurrency = parse_max_concurrency(definition.get("max_concurrency"))?;
        let storage = crate::storage::spec::parse(&name, &definition)?;
        let poll_interval = parse_poll_interval(definition.get("poll_interval"))?;
        let expose = parse_expose(definition.get("expose"))?;
        let allowed_outbound_hosts = parse_outbound(definition.get("allowed_outbound_hosts"))?;
        if poll_interval.is_some() && storage.inputs.is_empty() {
            return Err(invalid(
                "poll_interval",
                "needs an \"input\" entry whose folder to poll",
            ));
        }
        Ok(Self {
            spec: ServiceSpec {
                storage,
                poll_interval,
                name,
                backend,
                log_level,
                env,
                memory_limit,
                cpu,
                timeout,
                token,
                // `expose.max_scale` caps an HTTP service's requests as `max_concurrency` does.
                max_concurrency: max_concurrency.or_else(|| {
                    expose
                        .filter(|e| e.max_scale > 0)
                        .map(|e| e.max_scale as usize)
                }),
                expose,
                allowed_outbound_hosts: std::sync::Arc::new(allowed_outbound_hosts),
            },
            definition,
        })
    }

    /// The definition as a JSON value, for persistence.
    pub fn to_json(&self) -> Value {
        Value::Object(self.definition.clone())
    }

    /// The definition as responses show it: storage credentials replaced by `"hidden"`,
    /// secrets blanked, and every field OSCAR answers present (Go's zero values).
    pub fn to_public_json(&self) -> Value {
        let mut shown = crate::storage::spec::redact(&self.definition);
        crate::oscar_definition::blank_secrets(&mut shown);
        crate::oscar_definition::with_go_zero_values(&mut shown);
        Value::Object(shown)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DefinitionError {
    DefinitionError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// The definition field naming the manifest digest a wasm image resolved to. Its presence
/// also says that `module` came from `image`, so an update resolves `image` again.
pub const IMAGE_DIGEST: &str = "image_digest";

/// Whether a service runs a wasm image by tag, whose tag may move: decided once per
/// deployment ([`crate::registry::Deployed::follows_tag`]), not per call.
pub fn follows_tag(definition: &Map<String, Value>) -> bool {
    wasm_image(definition).is_some_and(|(image, _)| !crate::oci::is_pinned(image))
}

/// The image of a service deployed from a wasm image (`image` plus [`IMAGE_DIGEST`]).
pub fn wasm_image(definition: &Map<String, Value>) -> Option<(&str, &str)> {
    let image = definition.get("image")?.as_str()?;
    let digest = definition.get(IMAGE_DIGEST)?.as_str()?;
    Some((image, digest))
}

/// OSCAR's rule for names ([`crate::protocol::is_service_name`]).
pub fn validate_name(name: &str) -> Result<(), DefinitionError> {
    if crate::protocol::is_service_name(name) {
        Ok(())
    } else {
        Err(DefinitionError::InvalidName(name.to_string()))
    }
}

/// A random token, 32 bytes as hex, as OSCAR generates one.
fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// `token`: kept when given, generated when absent or empty.
fn parse_token(definition: &Map<String, Value>) -> Result<String, DefinitionError> {
    match definition.get("token") {
        Some(Value::String(t)) if !t.is_empty() => Ok(t.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(generate_token()),
        Some(_) => Err(invalid("token", "must be a string")),
    }
}

/// What runs: `module` (a digest), else `image` with its `script`. A module wins: `image` and
/// `script` are then kept but not used, as the README says.
fn parse_backend(definition: &Map<String, Value>) -> Result<Backend, DefinitionError> {
    let module = match definition.get("module") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Digest::parse(s).map_err(|reason| invalid("module", reason))?)
        }
        Some(_) => {
            return Err(invalid(
                "module",
                "must be a string \"sha256:<64 hex digits>\"",
            ));
        }
    };
    let image = match definition.get("image") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(_) => return Err(invalid("image", "must be a string")),
    };
    match (module, image) {
        (Some(m), _) => Ok(Backend::Wasm(m)),
        (None, Some(image)) => match definition.get("script") {
            Some(Value::String(script)) if !script.trim().is_empty() => Ok(Backend::Image {
                image,
                script: script.clone(),
                pod: parse_pod_settings(definition)?,
            }),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                Err(DefinitionError::MissingScript)
            }
            Some(_) => Err(invalid("script", "must be a string")),
        },
        (None, None) => Err(DefinitionError::NothingToRun),
    }
}

/// `log_level`: Python's level names, INFO by default.
fn parse_log_level(value: Option<&Value>) -> Result<LogLevel, DefinitionError> {
    match value {
        None | Some(Value::Null) => Ok(LogLevel::Info),
        Some(Value::String(s)) => LogLevel::parse(s).ok_or_else(|| {
            invalid(
                "log_level",
                format!("{s:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
            )
        }),
        Some(_) => Err(invalid("log_level", "must be a string")),
    }
}

/// `memory`: a Kubernetes quantity, as a string or a number.
fn parse_memory(value: Option<&Value>) -> Result<Option<u64>, DefinitionError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => crate::quantity::parse(s)
            .map(Some)
            .map_err(|r| invalid("memory", r)),
        Some(Value::Number(n)) => crate::quantity::parse(&n.to_string())
            .map(Some)
            .map_err(|r| invalid("memory", r)),
        Some(_) => Err(invalid("memory", "must be a quantity such as \"256Mi\"")),
    }
}

/// `cpu`: cores as Kubernetes writes them (`"0.5"`, `"500m"`, `"2"`, or a number); blank is
/// unset.
fn parse_cpu(value: Option<&Value>) -> Result<Option<f64>, DefinitionError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(invalid(
                "cpu",
                "must be a CPU quantity such as \"0.5\" or \"500m\"",
            ));
        }
    };
    let cores = match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
        None => text.parse::<f64>(),
    };
    match cores {
        Ok(c) if c.is_finite() && c > 0.0 => Ok(Some(c)),
        _ => Err(invalid(
            "cpu",
            format!("{text:?} is not a positive CPU quantity such as \"0.5\" or \"500m\""),
        )),
    }
}

/// `max_concurrency`: a positive integer.
fn parse_max_concurrency(value: Option<&Value>) -> Result<Option<usize>, DefinitionError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            _ => Err(invalid("max_concurrency", "must be a positive integer")),
        },
    }
}

/// `expose`: `None` when absent or all zero values (Go clients send it unset that way).
fn parse_expose(value: Option<&Value>) -> Result<Option<Expose>, DefinitionError> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(invalid("expose", "must be an object")),
    };
    if !crate::oscar_definition::is_set(&Value::Object(fields.clone())) {
        return Ok(None);
    }
    let flag = |key: &'static str| match fields.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid("expose", format!("{key} must be true or false"))),
    };
    let count = |key: &'static str| match fields.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid("expose", format!("{key} must be a non-negative integer"))),
    };
    let expose = Expose {
        set_auth: flag("set_auth")?,
        rewrite_target: flag("rewrite_target")?,
        min_scale: count("min_scale")?,
        max_scale: count("max_scale")?,
        api_port: parse_api_port(fields.get("api_port"))?,
        default_command: flag("default_command")?,
    };
    if expose.max_scale > 0 && expose.min_scale > expose.max_scale {
        return Err(invalid("expose", "min_scale must not exceed max_scale"));
    }
    Ok(Some(expose))
}

/// `expose.api_port`: a port, or OSCAR 4.1's list of ports (multi-port services) holding one;
/// an HTTP service here listens on one port.
fn parse_api_port(value: Option<&Value>) -> Result<u16, DefinitionError> {
    let port = |v: &Value| {
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| invalid("expose", "api_port must be a port number"))
    };
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Array(ports)) => match ports.as_slice() {
            [] => Ok(0),
            [one] => port(one),
            _ => Err(invalid(
                "expose",
                "api_port lists more than one port; a service is exposed on one port here",
            )),
        },
        Some(v) => port(v),
    }
}

/// `allowed_outbound_hosts`: a list of `scheme://host[:port]`.
fn parse_outbound(
    value: Option<&Value>,
) -> Result<crate::wasm::outbound::AllowList, DefinitionError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(Default::default()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("allowed_outbound_hosts", "must be a list of strings"))?,
        Some(_) => {
            return Err(invalid(
                "allowed_outbound_hosts",
                "must be a list of strings",
            ));
        }
    };
    crate::wasm::outbound::AllowList::parse(&entries)
        .map_err(|e| invalid("allowed_outbound_hosts", e.to_string()))
}

/// `poll_interval`: seconds from 1 to 86400.
fn parse_poll_interval(value: Option<&Value>) -> Result<Option<Duration>, DefinitionError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(s) if (1.0..=86_400.0).contains(&s) => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(invalid(
                "poll_interval",
                "must be a number of seconds from 1 to 86400",
            )),
        },
    }
}

fn parse_timeout(value: &Value) -> Result<Duration, String> {
    let secs = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or("must be a number of seconds")?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err("must be a positive number of seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// `environment.variables` then `environment.secrets`, as `(name, value)` pairs.
fn parse_environment(value: Option<&Value>) -> Result<Vec<(String, String)>, DefinitionError> {
    let mut env = Vec::new();
    let Some(value) = value else { return Ok(env) };
    let environment = match value {
        Value::Null => return Ok(env),
        Value::Object(map) => map,
        _ => {
            return Err(invalid(
                "environment",
                "must be an object with \"variables\" and \"secrets\"",
            ));
        }
    };
    for (field, key) in [
        ("environment.variables", "variables"),
        ("environment.secrets", "secrets"),
    ] {
        match environment.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(vars)) => {
                for (name, value) in vars {
                    if name.is_empty() || name.contains('=') || name.contains('\0') {
                        return Err(invalid(
                            field,
                            format!("{name:?} is not a valid variable name"),
                        ));
                    }
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            return Err(invalid(
                                field,
                                format!("the value of {name:?} must be a string"),
                            ));
                        }
                    };
                    if value.contains('\0') {
                        return Err(invalid(
                            field,
                            format!("the value of {name:?} contains a NUL byte"),
                        ));
                    }
                    env.push((name.clone(), value));
                }
            }
            Some(_) => return Err(invalid(field, "must be an object of name: value")),
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_port_is_a_port_or_oscars_list_of_one() {
        assert_eq!(parse_api_port(Some(&json!(8080))).unwrap(), 8080);
        assert_eq!(parse_api_port(Some(&json!([8080]))).unwrap(), 8080);
        assert_eq!(parse_api_port(Some(&json!([]))).unwrap(), 0);
        assert!(parse_api_port(Some(&json!([80, 81]))).is_err());
        assert!(parse_api_port(Some(&json!(70000))).is_err());
    }

    #[test]
    fn cpu_reads_kubernetes_quantities() {
        assert_eq!(parse_cpu(Some(&json!("0.5"))).unwrap(), Some(0.5));
        assert_eq!(parse_cpu(Some(&json!("250m"))).unwrap(), Some(0.25));
        assert_eq!(parse_cpu(Some(&json!(2))).unwrap(), Some(2.0));
        assert_eq!(parse_cpu(Some(&json!(""))).unwrap(), None);
        for bad in [
            json!("0"),
            json!("-1"),
            json!("many"),
            json!("NaN"),
            json!([1]),
        ] {
            assert!(parse_cpu(Some(&bad)).is_err(), "{bad}");
        }
    }
    use serde_json::json;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn names_follow_dns_1123_and_39_chars() {
        for good in ["a", "upper-case", "x1", &"a".repeat(39)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Upper",
            "a_b",
            "a.b",
            &"a".repeat(40),
            "../x",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_kept_and_token_generated() {
        let s = Service::from_definition(
            json!({"name": "x", "module": DIGEST, "vo": "v", "cpu": "0.5"}),
        )
        .unwrap();
        assert_eq!(s.definition["vo"], "v");
        assert_eq!(s.definition["cpu"], "0.5");
        assert_eq!(s.spec.token.len(), 64);
        assert_eq!(s.definition["token"], s.spec.token.as_str());
        let kept = Service::from_definition(json!({"name": "x", "module": DIGEST, "token": "abc"}))
            .unwrap();
        assert_eq!(kept.spec.token, "abc");
    }

    #[test]
    fn fields_are_parsed() {
        let s = Service::from_definition(json!({
            "name": "x", "module": DIGEST, "memory": "256Mi", "timeout": 5, "log_level": "critical",
            "environment": {"variables": {"A": "1", "B": 2}, "secrets": {"S": "s"}}
        }))
        .unwrap();
        assert_eq!(s.spec.memory_limit, Some(256 * 1024 * 1024));
        assert_eq!(s.spec.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.spec.log_level, LogLevel::Critical);
        assert_eq!(
            s.spec.env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "2".into()),
                ("S".into(), "s".into())
            ]
        );
    }

    #[test]
    fn bad_fields_name_the_field() {
        let cases = [
            (
                json!({"name": "x", "module": DIGEST, "memory": "lots"}),
                "memory",
            ),
            (
                json!({"name": "x", "module": DIGEST, "memory": "-1Gi"}),
                "memory",
            ),
            (
                json!({"name": "x", "module": DIGEST, "timeout": -1}),
                "timeout",
            ),
            (
                // An unknown level is INFO, as in OSCAR; one that is not a string is refused.
                json!({"name": "x", "module": DIGEST, "log_level": ["LOUD"]}),
                "log_level",
            ),
            (json!({"name": "x", "module": "md5:00"}), "module"),
            (
                json!({"name": "x", "module": DIGEST, "environment": {"variables": {"A": [1]}}}),
                "environment.variables",
            ),
        ];
        for (def, field) in cases {
            let err = Service::from_definition(def).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
        assert!(matches!(
            Service::from_definition(json!({"name": "x"})),
            Err(DefinitionError::NothingToRun)
        ));
        assert!(matches!(
            Service::from_definition(json!({"name": "x", "image": "alpine"})),
            Err(DefinitionError::MissingScript)
        ));
        let image =
            Service::from_definition(json!({"name": "x", "image": "alpine", "script": "echo hi"}))
                .unwrap();
        assert_eq!(
            image.spec.backend,
            Backend::Image {
                image: "alpine".into(),
                script: "echo hi".into(),
                pod: PodSettings::default(),
            }
        );
        let Backend::Image { pod, .. } = Service::from_definition(json!({
            "name": "x", "image": "alpine", "script": "echo hi",
            "image_pull_secrets": ["regcred"], "labels": {"team": "a"},
            "annotations": {"note": "b"}, "enable_gpu": true, "ephemeral_storage_request": "2Gi"}))
        .unwrap()
        .spec
        .backend
        else {
            panic!("not an image service");
        };
        assert_eq!(pod.image_pull_secrets, ["regcred"]);
        assert!(pod.gpu && pod.labels["team"] == "a" && pod.annotations["note"] == "b");
        assert_eq!(pod.ephemeral_storage.as_deref(), Some("2Gi"));
        for bad in [
            json!({"image_pull_secrets": "regcred"}),
            json!({"image_pull_secrets": ["Not_A_Name"]}),
            json!({"labels": {"n": 1}}),
            json!({"enable_gpu": "yes"}),
            json!({"ephemeral_storage_request": "lots"}),
        ] {
            let mut definition = json!({"name": "x", "image": "alpine", "script": "echo hi"});
            for (k, v) in bad.as_object().unwrap() {
                definition[k] = v.clone();
            }
            assert!(
                matches!(
                    Service::from_definition(definition),
                    Err(DefinitionError::InvalidField { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Service::from_definition(json!([1])),
            Err(DefinitionError::NotAnObject)
        ));
    }
}
