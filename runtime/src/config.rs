//! Server configuration: flags, their environment variables, and the embedded defaults that
//! make `oscar-wasm serve` work with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How OCI registries are reached, for `serve` and `push`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registries (`host:port`) reached over plain HTTP; every other registry is reached over
    /// HTTPS only. Repeatable, or comma-separated.
    #[arg(
        long = "insecure-registry",
        env = "OSCAR_WASM_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Registry credentials: a docker `config.json` (its `auths`). Default: `$DOCKER_CONFIG/
    /// config.json`, else `~/.docker/config.json`, when there is one.
    #[arg(long, env = "OSCAR_WASM_REGISTRY_AUTH_FILE")]
    pub registry_auth_file: Option<PathBuf>,
}

impl RegistryArgs {
    /// The client settings, refusing modules over `max_module` bytes.
    pub fn settings(&self, max_module: u64) -> Result<crate::oci::RegistrySettings, String> {
        Ok(crate::oci::RegistrySettings {
            insecure: self
                .insecure_registries
                .iter()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
            auths: crate::oci::auth::Auths::load(self.registry_auth_file.as_deref())?,
            max_module,
            // The user's own client (push) goes where the user says; `serve` sets this from
            // --allow-local-endpoints.
            allow_local: true,
        })
    }
}

/// `oscar-wasm serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "OSCAR_WASM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder for services, modules and compiled artifacts.
    #[arg(long, env = "OSCAR_WASM_DATA_DIR", default_value = "./oscar-data")]
    pub data_dir: PathBuf,
    /// Folder for per-invocation scratch folders [default: a folder in /dev/shm when it is a
    /// writable tmpfs, else DATA_DIR/scratch].
    #[arg(long, env = "OSCAR_WASM_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Guests running at once, all services together.
    #[arg(long, env = "OSCAR_WASM_MAX_CONCURRENCY", default_value_t = 32)]
    pub max_concurrency: usize,
    /// Invocations waiting for a free slot; beyond this the server answers 503 at once.
    #[arg(long, env = "OSCAR_WASM_MAX_QUEUE", default_value_t = 1024)]
    pub max_queue: usize,
    /// Timeout in seconds of services that set none.
    #[arg(long, env = "OSCAR_WASM_DEFAULT_TIMEOUT", default_value_t = 60.0)]
    pub default_timeout: f64,
    /// Memory limit of services that set none (OSCAR's default).
    #[arg(long, env = "OSCAR_WASM_DEFAULT_MEMORY", default_value = "256Mi", value_parser = quantity)]
    pub default_memory: u64,
    /// The largest memory limit a service may ask for.
    #[arg(long, env = "OSCAR_WASM_MAX_MEMORY", default_value = "4Gi", value_parser = quantity)]
    pub max_memory: u64,
    /// Largest request body (modules and invocation inputs).
    #[arg(long, env = "OSCAR_WASM_MAX_BODY", default_value = "256Mi", value_parser = quantity)]
    pub max_body: u64,
    /// Most output bytes an invocation may return.
    #[arg(long, env = "OSCAR_WASM_MAX_OUTPUT", default_value = "256Mi", value_parser = quantity)]
    pub max_output: u64,
    /// Most output files an invocation may return.
    #[arg(long, env = "OSCAR_WASM_MAX_OUTPUT_FILES", default_value_t = 10_000)]
    pub max_output_files: usize,
    /// Bytes of a module's stdout and stderr kept per invocation; the rest is dropped.
    #[arg(long, env = "OSCAR_WASM_MAX_LOG", default_value = "1Mi", value_parser = quantity)]
    pub max_log: u64,
    /// The longest timeout, in seconds, a service may ask for.
    #[arg(long, env = "OSCAR_WASM_MAX_TIMEOUT", default_value_t = 3600.0)]
    pub max_timeout: f64,
    /// Invocations of one service running at once (a definition's `max_concurrency` may lower it).
    #[arg(long, env = "OSCAR_WASM_MAX_SERVICE_CONCURRENCY")]
    pub max_service_concurrency: Option<usize>,
    /// Workers running asynchronous jobs. They spend most of a job waiting on storage (group
    /// commits, S3 round trips), so there are more of them than cores; guests still run
    /// within --max-concurrency.
    #[arg(long, env = "OSCAR_WASM_JOB_WORKERS", default_value_t = 8)]
    pub job_workers: usize,
    /// Jobs kept per service; the oldest finished ones are removed beyond it.
    #[arg(long, env = "OSCAR_WASM_MAX_JOBS", default_value_t = 1000)]
    pub max_jobs: usize,
    /// Bytes of jobs (inputs, outputs, logs) kept per service; the oldest finished go first.
    #[arg(long, env = "OSCAR_WASM_MAX_JOB_BYTES", default_value = "1Gi", value_parser = quantity)]
    pub max_job_bytes: u64,
    /// Failed synchronous invocations whose logs are kept per service.
    #[arg(long, env = "OSCAR_WASM_MAX_FAILED_RUNS", default_value_t = 20)]
    pub max_failed_runs: usize,
    /// Days of usage accounts kept for /system/metrics (minute resolution for the last two
    /// days, hour resolution before).
    #[arg(long, env = "OSCAR_WASM_USAGE_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub usage_retention_days: u32,
    /// Default quota of every user without one of their own: the CPU their running
    /// invocations may hold at once (`2`, `1500m`; each holds its service's `cpu`).
    #[arg(long, env = "OSCAR_WASM_QUOTA_CPU", value_parser = crate::quotas::parse_millicores)]
    pub quota_cpu: Option<u64>,
    /// Default quota of every user without one of their own: the memory their running
    /// invocations may hold at once (`4Gi`; each holds its service's `memory`).
    #[arg(long, env = "OSCAR_WASM_QUOTA_MEMORY", value_parser = crate::quantity::parse)]
    pub quota_memory: Option<u64>,
    /// Default quota of every user without one of their own: how many of their invocations
    /// may run at once.
    #[arg(long, env = "OSCAR_WASM_QUOTA_INVOCATIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_invocations: Option<u64>,
    /// Let service definitions name storage endpoints on this machine or its link-local network
    /// (loopback, localhost, 169.254.0.0/16, fe80::/10); refused by default, so that a
    /// definition cannot make the server reach services only it can reach.
    #[arg(long, env = "OSCAR_WASM_ALLOW_LOCAL_ENDPOINTS")]
    pub allow_local_endpoints: bool,
    /// OIDC issuers whose access tokens are accepted (`Authorization: Bearer`), as their
    /// tokens' `iss` names them: EGI Check-in is `https://aai.egi.eu/auth/realms/egi`.
    /// Repeatable, or comma-separated.
    #[arg(
        long = "oidc-issuer",
        env = "OSCAR_WASM_OIDC_ISSUERS",
        value_delimiter = ','
    )]
    pub oidc_issuers: Vec<String>,
    /// Groups (EGI VOs, Keycloak groups) whose members may log in with a token; at least one
    /// with --oidc-issuer. Repeatable, or comma-separated.
    #[arg(
        long = "oidc-group",
        env = "OSCAR_WASM_OIDC_GROUPS",
        value_delimiter = ','
    )]
    pub oidc_groups: Vec<String>,
    /// How OCI registries are reached.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
    #[command(flatten)]
    pub registries: RegistryArgs,
    /// How often, at most, a synchronous invocation of a service whose `image` is a wasm tag
    /// checks whether the tag moved (seconds); jobs check before each run.
    #[arg(long, env = "OSCAR_WASM_IMAGE_REFRESH", default_value_t = 60)]
    pub image_refresh: u64,
    /// Folder of the script runtimes' components (`python-3.14.wasm` and `javascript-1.wasm`,
    /// built by runtimes/python/build.sh and runtimes/javascript/build.sh): services whose
    /// `image` is `oscar-wasm/python:3.14` or `oscar-wasm/javascript:1` run
    /// their `script` on it.
    #[arg(long, env = "OSCAR_WASM_RUNTIMES_DIR", default_value = "runtimes/dist")]
    pub runtimes_dir: PathBuf,
    /// Access key of the embedded S3 store (default: generated once, kept in the data folder).
    #[arg(long, env = "OSCAR_WASM_STORE_ACCESS_KEY")]
    pub store_access_key: Option<String>,
    /// Secret key of the embedded S3 store (default: generated once, kept in the data folder).
    #[arg(long, env = "OSCAR_WASM_STORE_SECRET_KEY", hide_env_values = true)]
    pub store_secret_key: Option<String>,
    /// Unfinished jobs (pending or running) per service; beyond it POST /job answers 429.
    #[arg(long, env = "OSCAR_WASM_MAX_PENDING_JOBS", default_value_t = 100)]
    pub max_pending_jobs: usize,
    /// Unfinished jobs of all services together; beyond it POST /job answers 503.
    #[arg(long, env = "OSCAR_WASM_MAX_PENDING_TOTAL", default_value_t = 1000)]
    pub max_pending_total: usize,
    /// Connections served at once, per listener (the API's and the embedded store's); more
    /// wait in the kernel's backlog until one closes.
    #[arg(long, env = "OSCAR_WASM_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, on a new or a kept-alive connection;
    /// a connection idle for longer between requests is closed too.
    #[arg(long, env = "OSCAR_WASM_HEADER_TIMEOUT", default_value_t = 30.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's whole body (413 beyond --max-body, 408 beyond
    /// this).
    #[arg(long, env = "OSCAR_WASM_BODY_TIMEOUT", default_value_t = 300.0)]
    pub body_timeout: f64,
    /// Largest invocation body that is a JSON object: it is re-serialised in memory, where it
    /// takes many times its size (send larger inputs base64-encoded).
    #[arg(long, env = "OSCAR_WASM_MAX_JSON_BODY", default_value = "1Mi", value_parser = quantity)]
    pub max_json_body: u64,
    /// The administrator's user name (HTTP basic auth on /system).
    #[arg(long, env = "OSCAR_WASM_USER", default_value = "oscar")]
    pub user: String,
    /// The administrator's password. Without one, /system is open, which is allowed only on a
    /// loopback address unless --insecure is given.
    #[arg(long, env = "OSCAR_WASM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A TOML file of these settings (keys named like the flags); flags and environment
    /// variables take precedence over it.
    #[arg(long, env = "OSCAR_WASM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve without a password on a non-loopback address.
    #[arg(long, env = "OSCAR_WASM_INSECURE")]
    pub insecure: bool,
    /// How log lines are written to stderr: `text` for people, `json` for log collectors
    /// (one object a line, with the request's id and trace id on each line of a request).
    #[arg(
        long,
        env = "OSCAR_WASM_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Compile every upload with Cranelift before answering, instead of answering once Winch
    /// (a baseline compiler) has compiled it and switching to Cranelift's code when ready.
    #[arg(long, env = "OSCAR_WASM_NO_BASELINE_COMPILER")]
    pub no_baseline_compiler: bool,
    /// Address and port of the embedded S3-compatible store (`minio.default`; port 0 picks a
    /// free one). Not started when --storage-endpoint names an external store.
    #[arg(long, env = "OSCAR_WASM_S3_LISTEN", default_value = "127.0.0.1:9000")]
    pub s3_listen: SocketAddr,
    /// An external MinIO or S3 endpoint to use as `minio.default` instead of the embedded store.
    #[arg(long, env = "OSCAR_WASM_STORAGE_ENDPOINT")]
    pub storage_endpoint: Option<String>,
    /// The external store's access key.
    #[arg(long, env = "OSCAR_WASM_STORAGE_ACCESS_KEY")]
    pub storage_access_key: Option<String>,
    /// The external store's secret key.
    #[arg(long, env = "OSCAR_WASM_STORAGE_SECRET_KEY", hide_env_values = true)]
    pub storage_secret_key: Option<String>,
    /// The external store's region.
    #[arg(long, env = "OSCAR_WASM_STORAGE_REGION", default_value = "us-east-1")]
    pub storage_region: String,
    /// The external store is MinIO and its keys may manage users: each OIDC user becomes a
    /// MinIO user with their own keys and a policy granting the buckets open to them, as OSCAR
    /// does through MinIO's admin API.
    #[arg(long, env = "OSCAR_WASM_STORAGE_MINIO_ADMIN")]
    pub storage_minio_admin: bool,
    /// This server's URL as pods reach it: enables image services, run as Kubernetes Jobs
    /// (with KUBECONFIG or the in-cluster service account) when the API server answers.
    #[arg(long, env = "OSCAR_WASM_KUBE_CALLBACK_URL")]
    pub kube_callback_url: Option<String>,
    /// Key sealing services' secrets at rest (32 bytes, raw or base64; owner-only): every
    /// member of a cluster must be given the same one. Default on one machine:
    /// DATA_DIR/secrets.key, made on first start; a cluster member without it stores secrets
    /// unsealed, with a warning.
    #[arg(long, env = "OSCAR_WASM_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<std::path::PathBuf>,
    /// Namespace of the Jobs.
    #[arg(long, env = "OSCAR_WASM_KUBE_NAMESPACE", default_value = "oscar-svc")]
    pub kube_namespace: String,
    /// Image holding the supervisor binary at /oscar-wasm-supervisor (copied into each pod by
    /// an init container).
    #[arg(
        long,
        env = "OSCAR_WASM_KUBE_SUPERVISOR_IMAGE",
        default_value = concat!("ghcr.io/oscar-wasm/oscar-wasm-supervisor:", env!("CARGO_PKG_VERSION"))
    )]
    pub kube_supervisor_image: String,
    /// Seconds a finished asynchronous Job stays in the cluster (ttlSecondsAfterFinished).
    #[arg(long, env = "OSCAR_WASM_KUBE_JOB_TTL", default_value_t = 600)]
    pub kube_job_ttl: i32,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text an event, with the span's fields before the message.
    Text,
    /// One JSON object an event: `timestamp`, `level`, `fields` (`message` and the event's
    /// own), `target`, and `span` (the request's `request_id`, `method`, `path`, `trace_id`).
    Json,
}

/// Bounds on what a client may send: applied to every request body.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// `--max-body`.
    pub max_body: u64,
    /// `--body-timeout`.
    pub body_timeout: Duration,
    /// `--max-json-body`.
    pub max_json_body: u64,
}

fn quantity(text: &str) -> Result<u64, String> {
    crate::quantity::parse(text)
}

impl ServeArgs {
    /// Refuses settings that would expose the server or make no sense.
    pub fn check(&self) -> Result<(), String> {
        let open = self.password.as_deref().is_none_or(str::is_empty);
        if open && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(format!(
                "refusing to listen on {} without a password: set --password (OSCAR_WASM_PASSWORD), \
                 or --insecure to serve /system to anyone who can reach it",
                self.listen
            ));
        }
        for (flag, seconds) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
        ] {
            if Duration::try_from_secs_f64(seconds).map_or(true, |d| d.is_zero()) {
                return Err(format!("{flag} must be a positive number of seconds"));
            }
        }
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if !(self.max_timeout.is_finite() && self.max_timeout > 0.0) {
            return Err("--max-timeout must be a positive number of seconds".into());
        }
        if self.default_timeout > self.max_timeout {
            return Err("--default-timeout is above --max-timeout".into());
        }
        if open
            && self.storage_endpoint.is_none()
            && !self.s3_listen.ip().is_loopback()
            && !self.insecure
        {
            return Err(format!(
                "refusing to serve the embedded S3 store on {} without a password: set --password \
                 (OSCAR_WASM_PASSWORD), or --insecure",
                self.s3_listen
            ));
        }
        if self.store_access_key.is_some() != self.store_secret_key.is_some() {
            return Err("--store-access-key and --store-secret-key go together".into());
        }
        if self.storage_endpoint.is_some()
            && (self.storage_access_key.is_none() || self.storage_secret_key.is_none())
        {
            return Err(
                "--storage-endpoint needs --storage-access-key and --storage-secret-key".into(),
            );
        }
        if self.storage_minio_admin && self.storage_endpoint.is_none() {
            return Err("--storage-minio-admin needs --storage-endpoint (a MinIO server)".into());
        }
        Ok(())
    }

    /// The OIDC issuers and groups.
    pub fn oidc_settings(&self) -> crate::oidc::OidcSettings {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        crate::oidc::OidcSettings {
            issuers: clean(&self.oidc_issuers),
            groups: clean(&self.oidc_groups),
        }
    }

    /// How registries are reached: insecure ones, credentials, the module size limit.
    pub fn registry_settings(&self) -> Result<crate::oci::RegistrySettings, String> {
        let mut settings = self.registries.settings(self.max_body)?;
        settings.allow_local = self.allow_local_endpoints;
        Ok(settings)
    }

    /// The limits on request bodies (checked by [`ServeArgs::check`]).
    pub fn request_limits(&self) -> RequestLimits {
        RequestLimits {
            max_body: self.max_body,
            body_timeout: Duration::try_from_secs_f64(self.body_timeout)
                .unwrap_or(Duration::from_secs(300)),
            max_json_body: self.max_json_body.min(self.max_body),
        }
    }

    /// The Kubernetes executor's settings, when a callback URL enables it.
    pub fn kube_settings(&self) -> Option<crate::kube::KubeSettings> {
        let callback_url = self.kube_callback_url.clone()?;
        Some(crate::kube::KubeSettings {
            callback_url,
            jobs: crate::kube::manifest::JobSettings {
                namespace: self.kube_namespace.clone(),
                supervisor_image: self.kube_supervisor_image.clone(),
                ttl_after_finished: self.kube_job_ttl.max(0),
            },
        })
    }

    /// The embedded store's credentials: the flags', else a pair generated at the first start
    /// and kept owner-only in `<data>/store-keys.json`. Never the administrator's password:
    /// /system/config hands these keys out, and they open only the store.
    pub fn embedded_store_keys(
        &self,
        data_dir: &std::path::Path,
    ) -> std::io::Result<(String, String)> {
        if let (Some(access), Some(secret)) = (&self.store_access_key, &self.store_secret_key) {
            return Ok((access.clone(), secret.clone()));
        }
        crate::storage::embedded::stored_keys(data_dir)
    }

    /// `minio.default`: the external store the flags name, else the embedded one at `embedded`
    /// (the bound address; `--s3-listen` when not yet bound) with `keys`.
    pub fn default_provider(
        &self,
        embedded: Option<SocketAddr>,
        keys: (String, String),
    ) -> crate::storage::spec::Provider {
        if let Some(endpoint) = &self.storage_endpoint {
            return crate::storage::spec::Provider {
                reference: crate::storage::spec::DEFAULT_PROVIDER.into(),
                endpoint: Some(endpoint.clone()),
                region: self.storage_region.clone(),
                access_key: self.storage_access_key.clone().unwrap_or_default(),
                secret_key: self.storage_secret_key.clone().unwrap_or_default(),
                verify: true,
            };
        }
        let mut addr = embedded.unwrap_or(self.s3_listen);
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let (access_key, secret_key) = keys;
        crate::storage::spec::Provider {
            reference: crate::storage::spec::DEFAULT_PROVIDER.into(),
            endpoint: Some(format!("http://{addr}")),
            region: "us-east-1".into(),
            access_key,
            secret_key,
            verify: true,
        }
    }

    /// The default timeout as a duration.
    pub fn default_timeout(&self) -> Result<Duration, String> {
        Duration::try_from_secs_f64(self.default_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "--default-timeout {} must be a positive number of seconds",
                    self.default_timeout
                )
            })
    }

    /// The scratch root: the flag, else a tmpfs folder, else under the data folder.
    ///
    /// Scratch folders on tmpfs are several times cheaper than on a disk-backed file system.
    /// The folder is named after the data folder so that two servers never share one.
    pub fn scratch_root(&self, data_dir: &std::path::Path) -> PathBuf {
        if let Some(dir) = &self.scratch_dir {
            return dir.clone();
        }
        let shm = std::path::Path::new("/dev/shm");
        if is_writable_dir(shm) {
            use sha2::Digest as _;
            let tag =
                hex::encode(&sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes())[..8]);
            return shm.join(format!("oscar-wasm-{tag}"));
        }
        data_dir.join("scratch")
    }
}

fn is_writable_dir(path: &std::path::Path) -> bool {
    let probe = path.join(format!(
        ".oscar-wasm-probe-{}",
        uuid::Uuid::new_v4().simple()
    ));
    match std::fs::create_dir(&probe) {
        Ok(()) => std::fs::remove_dir(&probe).is_ok(),
        Err(_) => false,
    }
}

/// Applies a TOML config file of `serve` settings (`password = "..."`, `listen = "..."`,
/// `max_concurrency = 8`, ...), keys named like the flags with `_` or `-`.
///
/// Each key becomes the flag's environment variable when that is not already set, so the
/// precedence is: flag, then environment, then config file, then the built-in default.
/// Call before any thread starts.
pub fn apply_config_file(path: &std::path::Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let command = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    for (key, value) in table {
        let id = key.replace('-', "_");
        let env = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id)
            .and_then(|a| a.get_env())
            .ok_or_else(|| format!("{}: unknown setting {key:?}", path.display()))?;
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{}: {key:?} must be a string, number or boolean, not {other}",
                    path.display()
                ));
            }
        };
        if std::env::var_os(env).is_none() {
            // SAFETY: called from main before the runtime or any other thread exists.
            unsafe { std::env::set_var(env, value) };
        }
    }
    Ok(())
}
