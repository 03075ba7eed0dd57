//! The client commands of the `oscar-wasm` binary: drive a server (ours, or an OSCAR cluster
//! for the OSCAR-compatible routes) from a terminal the way oscar-cli does.
//!
//! - [`connection`]: which server and which credentials (flags, environment, the clusters file),
//!   and the HTTP client that turns answers into [`CliError`]s;
//! - [`clusters`]: the clusters file in the user's config folder (named endpoints, a default);
//! - [`definitions`]: service files (OSCAR's FDL or a plain definition, YAML or JSON);
//! - [`commands`]: one function per command;
//! - [`render`]: tables for people, JSON for scripts, and the decoding of `/run` answers.
//!
//! Exit codes are part of the interface (scripts rely on them): see [`CliError::exit_code`].

pub mod clusters;
pub mod commands;
pub mod connection;
pub mod definitions;
pub mod packages;
pub mod render;

use clap::{Args, Subcommand};
use connection::ConnectionArgs;
use std::path::PathBuf;

/// A client command's failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The invocation ran and failed (the module exited non-zero, trapped or timed out), or a
    /// waited-for job failed.
    #[error("{0}")]
    Failed(String),
    /// Bad arguments, or a local file that cannot be read, parsed or written.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// Why (connection refused, timeout, TLS...).
        reason: String,
    },
    /// The server refused the request (4xx): bad credentials, unknown name, bad input.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server failed (5xx other than a failed invocation).
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

impl CliError {
    /// 1: the invocation or job failed; 2: usage or local file error; 3: server unreachable;
    /// 4: request refused (4xx); 5: server error (5xx).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
            Self::Refused { .. } => 4,
            Self::Server { .. } => 5,
        }
    }
}

/// Shorthand for a usage error about a local file.
pub(crate) fn file_error(path: &std::path::Path, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {e}", path.display()))
}

/// `oscar-wasm service ...`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// The service subcommands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create or update the services of a file: OSCAR's FDL (`functions.oscar[].<cluster>`) or
    /// one plain definition, YAML or JSON. A `script` naming a file is replaced by its text, as
    /// oscar-cli does; a `module` naming a .wasm file is uploaded.
    Apply {
        /// The FDL or definition file.
        file: PathBuf,
        /// A module (.wasm) to upload and attach (the file must define one service).
        #[arg(long)]
        module: Option<PathBuf>,
    },
    /// List the services.
    List,
    /// Show one service's definition (YAML; `--json` for JSON).
    Get {
        /// The service.
        name: String,
    },
    /// Delete services (and their jobs).
    Delete {
        /// The services.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Upload a file to a storage provider of the service (as oscar-cli does), e.g. into its
    /// input folder: `put-file NAME minio.default photo.jpg photos/in/photo.jpg`.
    PutFile {
        /// The service.
        name: String,
        /// The provider (`minio.default`, or `minio`).
        provider: String,
        /// The local file.
        local: PathBuf,
        /// `BUCKET/KEY`.
        remote: String,
    },
    /// Download a file from a storage provider of the service.
    GetFile {
        /// The service.
        name: String,
        /// The provider (`minio.default`, or `minio`).
        provider: String,
        /// `BUCKET/KEY`.
        remote: String,
        /// The local file.
        local: PathBuf,
    },
    /// Print, offline, the Kubernetes Job the runtime creates for each image service of a file
    /// (YAML), with placeholders for the invocation's id and token.
    Manifest {
        /// The FDL or definition file.
        file: PathBuf,
        /// The Jobs' namespace.
        #[arg(long, default_value = "oscar-svc")]
        namespace: String,
        /// The image holding the supervisor binary.
        #[arg(
            long,
            default_value = concat!("ghcr.io/oscar-wasm/oscar-wasm-supervisor:", env!("CARGO_PKG_VERSION"))
        )]
        supervisor_image: String,
        /// The runtime's URL as pods reach it.
        #[arg(long, default_value = "http://oscar-wasm:8080")]
        callback_url: String,
        /// Show an asynchronous invocation's Job (kept until its TTL) instead of a synchronous one's.
        #[arg(long = "async")]
        asynchronous: bool,
    },
    /// List the files under a path of a storage provider of the service.
    ListFiles {
        /// The service.
        name: String,
        /// The provider (`minio.default`, or `minio`).
        provider: String,
        /// `BUCKET` or `BUCKET/FOLDER`.
        remote: String,
    },
}

/// `oscar-wasm push FILE.wasm REF`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The module.
    pub file: PathBuf,
    /// Where to publish it: `registry/repository:tag`.
    pub reference: String,
    /// How the registry is reached.
    #[command(flatten)]
    pub registries: crate::config::RegistryArgs,
}

/// `oscar-wasm run ...`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The service.
    pub name: String,
    /// The input file (`-` for standard input).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Where the result goes: one output file is written there (into it, if it is a folder);
    /// several are unzipped into that folder. Without it, the result goes to standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Invoke with this service token (Bearer) instead of the administrator's credentials.
    #[arg(long, env = "OSCAR_WASM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `oscar-wasm job ...`.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The service.
    pub name: String,
    /// The input file (`-` for standard input).
    #[arg(long, short)]
    pub input: PathBuf,
    /// Invoke with this service token (Bearer) instead of the administrator's credentials.
    #[arg(long, env = "OSCAR_WASM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Wait for the job to finish, print its log, and exit 1 if it failed.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: download the job's outputs into this folder.
    #[arg(long, short, requires = "wait")]
    pub output: Option<PathBuf>,
}

/// `oscar-wasm jobs NAME`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The service.
    pub name: String,
    /// First wait until none of its jobs is Pending or Running (and at least one exists).
    #[arg(long)]
    pub wait: bool,
}

/// `oscar-wasm logs NAME [JOB]`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The service.
    pub name: String,
    /// The job [default: the service's newest job].
    pub job: Option<String>,
    /// Prefix each line with its time.
    #[arg(long)]
    pub timestamps: bool,
}

/// `oscar-wasm outputs NAME JOB`.
#[derive(Debug, Args)]
pub struct OutputsArgs {
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The service.
    pub name: String,
    /// The job.
    pub job: String,
    /// Download every output file into this folder (else list them).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `oscar-wasm cluster ...`: the clusters file.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add (or replace) a named cluster.
    Add {
        /// Its name.
        name: String,
        /// Its endpoint, e.g. https://oscar.example.org.
        endpoint: String,
        /// The administrator's user name.
        #[arg(long, default_value = "oscar")]
        user: String,
        /// The administrator's password.
        #[arg(long)]
        password: Option<String>,
        /// Do not verify the server's TLS certificate.
        #[arg(long)]
        disable_ssl: bool,
        /// Make it the default cluster.
        #[arg(long)]
        default: bool,
    },
    /// List the clusters.
    List,
    /// Make a cluster the default.
    Default {
        /// The cluster.
        name: String,
    },
    /// Remove a cluster.
    Remove {
        /// The cluster.
        name: String,
    },
}
