//! Cluster mode (`--cluster nats://...`): several servers act as one, their shared state in
//! NATS JetStream, replicated across a NATS cluster. Each piece here implements one interface
//! of the single-server code over NATS, chosen at start-up:
//! - [`services`]: the registry's definitions in a key-value bucket, watched by every server;
//! - [`modules`]: modules' bytes in an object store (each server compiles its own artifacts);
//! - [`jobs`]: job records in a key-value bucket, inputs, logs and outputs in an object store;
//! - [`queue`]: the job queue as a work-queue stream with acknowledgements and redelivery;
//! - [`lease`]: which server runs the storage poller, and [`pollers`]: what it has seen;
//! - [`members`]: which servers are in the cluster;
//! - [`documents`]: the run-time settings, bucket records and users' store keys;
//! - [`usage`]: the usage accounts, a key per hour and server.
//!
//! This file owns the connection: its flags, and the buckets and streams it opens.

pub mod documents;
pub mod jobs;
pub mod lease;
pub mod members;
pub mod modules;
pub mod pollers;
pub mod queue;
pub mod services;
pub mod usage;

use crate::stores::StoreError;
use async_nats::jetstream;
use std::path::PathBuf;
use std::time::Duration;

/// `--cluster` and the NATS connection options, as NATS users expect them.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Makes this server a member of a cluster whose state is in NATS JetStream at these URLs
    /// (`nats://host:4222`, comma-separated for several). Without it the server keeps
    /// everything in its data folder.
    #[arg(long = "cluster", env = "OSCAR_WASM_CLUSTER", value_delimiter = ',')]
    pub nats_urls: Vec<String>,
    /// A NATS credentials file (JWT and NKey seed), as `nats --creds` takes.
    #[arg(long = "cluster-creds", env = "OSCAR_WASM_CLUSTER_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with `--cluster-password`).
    #[arg(long = "cluster-user", env = "OSCAR_WASM_CLUSTER_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long = "cluster-password", env = "OSCAR_WASM_CLUSTER_PASSWORD")]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long = "cluster-token", env = "OSCAR_WASM_CLUSTER_TOKEN")]
    pub nats_token: Option<String>,
    /// CA certificate (PEM) that NATS servers' TLS certificates must chain to; implies TLS.
    #[arg(long = "cluster-tls-ca", env = "OSCAR_WASM_CLUSTER_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with `--cluster-tls-key`).
    #[arg(long = "cluster-tls-cert", env = "OSCAR_WASM_CLUSTER_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long = "cluster-tls-key", env = "OSCAR_WASM_CLUSTER_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Copies JetStream keeps of every bucket and stream (at most the NATS cluster's size;
    /// 3 survives the loss of one NATS server) [default: 3 on a NATS cluster of three or more
    /// servers, else 1].
    #[arg(long = "cluster-replicas", env = "OSCAR_WASM_CLUSTER_REPLICAS")]
    pub nats_replicas: Option<usize>,
    /// Seconds a job taken by a server may go without a sign of life (sent every third of
    /// this while it runs) before it is delivered to another server.
    #[arg(
        long = "cluster-ack-wait",
        env = "OSCAR_WASM_CLUSTER_ACK_WAIT",
        default_value_t = 30.0
    )]
    pub nats_ack_wait: f64,
}

/// Failures to join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// NATS could not be reached.
    #[error("could not connect to NATS at {urls}: {reason}")]
    Connect {
        /// Where.
        urls: String,
        /// Why.
        reason: String,
    },
    /// A bucket or stream could not be opened.
    #[error("could not open JetStream {what}: {reason}")]
    JetStream {
        /// Which.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The names of what the cluster keeps in JetStream.
pub mod names {
    /// Key-value bucket of service definitions, by name.
    pub const SERVICES: &str = "oscar_services";
    /// Object store of modules, by digest.
    pub const MODULES: &str = "oscar_modules";
    /// Script services' packages (zips of pure-Python packages), by digest.
    pub const PACKAGES: &str = "oscar_packages";
    /// Key-value bucket of job records, `<service>.<job>`.
    pub const JOBS: &str = "oscar_jobs";
    /// Object store of jobs' inputs, logs and outputs.
    pub const JOB_FILES: &str = "oscar_job_files";
    /// Work-queue stream of jobs waiting for a worker.
    pub const QUEUE: &str = "OSCAR_JOB_QUEUE";
    /// Its subject.
    pub const QUEUE_SUBJECT: &str = "oscar.jobs.queue";
    /// Key-value bucket of leases (which server runs the poller).
    pub const LEASES: &str = "oscar_leases";
    /// Key-value bucket of the small state documents.
    pub const DOCUMENTS: &str = "oscar_documents";
    /// Object store of the pollers' states, by service.
    pub const POLLERS: &str = "oscar_pollers";
    /// Key-value bucket of the servers' announcements, one expiring key each.
    pub const MEMBERS: &str = "oscar_members";
    /// Key-value bucket of usage accounts, `<hour>.<server>`.
    pub const USAGE: &str = "oscar_usage";
}

/// A connection to the cluster's NATS, with JetStream.
#[derive(Clone)]
pub struct Cluster {
    /// The NATS client (reconnects on its own, to any server of the NATS cluster).
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub jetstream: jetstream::Context,
    /// `--cluster-replicas`.
    pub replicas: usize,
    /// `--cluster-ack-wait`.
    pub ack_wait: Duration,
    /// Servers in the cluster, this one included, as [`members`] last counted them.
    pub members: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ClusterArgs {
    /// Whether the server is to join a cluster.
    pub fn enabled(&self) -> bool {
        self.nats_urls.iter().any(|u| !u.trim().is_empty())
    }
}

impl Cluster {
    /// Connects to NATS. Call inside the server's (multi-threaded) runtime.
    pub async fn connect(args: &ClusterArgs) -> Result<Self, ClusterError> {
        let ack_wait = Duration::try_from_secs_f64(args.nats_ack_wait)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1))
            .ok_or_else(|| {
                ClusterError::Config("--cluster-ack-wait must be at least 1 second".into())
            })?;
        if args.nats_replicas.is_some_and(|n| n == 0 || n > 5) {
            return Err(ClusterError::Config(
                "--cluster-replicas must be between 1 and 5 (JetStream's limit)".into(),
            ));
        }
        let urls: Vec<String> = args
            .nats_urls
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let addrs = urls
            .iter()
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ClusterError::Config(format!("--cluster {u}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("oscar-wasm {}", env!("CARGO_PKG_VERSION")))
            .connection_timeout(Duration::from_secs(5))
            // Reconnects forever once connected: a NATS server that goes away is replaced by
            // another of the cluster, or waited for.
            .max_reconnects(None);
        if let Some(creds) = &args.nats_creds {
            options = options.credentials_file(creds).await.map_err(|e| {
                ClusterError::Config(format!("--cluster-creds {}: {e}", creds.display()))
            })?;
        }
        match (&args.nats_user, &args.nats_password) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.clone(), password.clone());
            }
            (None, None) => {}
            _ => {
                return Err(ClusterError::Config(
                    "--cluster-user and --cluster-password go together".into(),
                ));
            }
        }
        if let Some(token) = &args.nats_token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &args.nats_tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&args.nats_tls_cert, &args.nats_tls_key) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => {
                return Err(ClusterError::Config(
                    "--cluster-tls-cert and --cluster-tls-key go together".into(),
                ));
            }
        }
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| ClusterError::Connect {
                urls: urls.join(","),
                reason: e.to_string(),
            })?;
        let info = client.server_info();
        let nodes = info.connect_urls.len().max(urls.len()).max(1);
        let replicas = replicas_for(args.nats_replicas, nodes, &info.version)?;
        if replicas == 1 && nodes > 1 {
            tracing::warn!(
                nats_servers = nodes,
                "running with one copy of each stream on a NATS cluster of {nodes} servers: losing the server that holds a stream stops the cluster until it is back, and an unflushed write is lost with it; run with --cluster-replicas 3"
            );
        }
        tracing::info!(nats_version = %info.version, nats_servers = nodes, replicas, "joined the cluster's NATS");
        Ok(Self {
            jetstream: jetstream::new(client.clone()),
            client,
            replicas,
            ack_wait,
            members: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1)),
        })
    }

    /// Creates the stream `config` describes, or brings an existing one to its replica count
    /// and its read path: streams are read through their leader (`allow_direct` off), since a
    /// direct get is answered by any replica, including one that lost unflushed writes in a
    /// crash and has not caught up yet, and then says "not found" for what exists.
    pub(crate) async fn stream(
        &self,
        config: jetstream::stream::Config,
    ) -> Result<jetstream::stream::Stream, String> {
        let mut stream = self
            .jetstream
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        let current = stream
            .info()
            .await
            .map_err(|e| e.to_string())?
            .config
            .clone();
        if current.allow_direct != config.allow_direct
            || current.num_replicas != config.num_replicas
        {
            let mut wanted = current;
            wanted.allow_direct = config.allow_direct;
            wanted.num_replicas = config.num_replicas;
            self.jetstream
                .update_stream(wanted)
                .await
                .map_err(|e| format!("updating stream {}: {e}", config.name))?;
            tracing::info!(stream = %config.name, replicas = config.num_replicas, "stream brought to this server's settings");
            stream = self
                .jetstream
                .get_stream(&config.name)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(stream)
    }

    /// A key-value bucket, created when missing (several servers may start at once).
    ///
    /// Its stream is created here with the configuration async-nats gives key-value buckets
    /// (ADR-8): the client's own `create_key_value` first reads the account's information,
    /// whose answer from NATS 2.9 lacks fields that this client requires.
    pub async fn key_value(
        &self,
        bucket: &str,
        max_age: Duration,
    ) -> Result<jetstream::kv::Store, ClusterError> {
        use jetstream::stream;
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: false,
            discard: stream::DiscardPolicy::New,
            max_bytes: -1,
            max_messages: -1,
            max_message_size: -1,
            max_consumers: -1,
            ..Default::default()
        };
        let failed = |e: String| ClusterError::JetStream {
            what: format!("key-value bucket {bucket}"),
            reason: e,
        };
        self.stream(config).await.map_err(failed)?;
        self.jetstream
            .get_key_value(bucket)
            .await
            .map_err(|e| failed(e.to_string()))
    }

    /// An object store, created when missing. Its stream is created here with the
    /// configuration async-nats gives object stores (ADR-20), but read through its leader.
    pub async fn object_store(
        &self,
        bucket: &str,
    ) -> Result<jetstream::object_store::ObjectStore, ClusterError> {
        let failed = |reason: String| ClusterError::JetStream {
            what: format!("object store {bucket}"),
            reason,
        };
        self.stream(jetstream::stream::Config {
            name: format!("OBJ_{bucket}"),
            subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            storage: jetstream::stream::StorageType::File,
            num_replicas: self.replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: false,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
        self.jetstream
            .get_object_store(bucket)
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

/// The first nats-server release whose compare-and-set holds on replicated key-value buckets:
/// before it, two concurrent updates naming the same expected revision can both succeed on a
/// stream with more than one replica (fixed in nats-server 2.9.21; issue 25 saw it on
/// Debian's 2.9.10 in 14 of 40 rounds with three replicas, never with one).
pub const MIN_REPLICATED_NATS: (u64, u64, u64) = (2, 9, 21);

/// The replica count: `requested`, else 3 on a NATS cluster of 3 or more servers and 1
/// otherwise; refused above 1 on a NATS `version` whose compare-and-set does not hold there.
pub fn replicas_for(
    requested: Option<usize>,
    nodes: usize,
    version: &str,
) -> Result<usize, ClusterError> {
    let replicas = requested.unwrap_or(if nodes >= 3 { 3 } else { 1 });
    let parsed = parse_version(version);
    if replicas > 1 && parsed.is_some_and(|v| v < MIN_REPLICATED_NATS) {
        let (a, b, c) = MIN_REPLICATED_NATS;
        return Err(ClusterError::Config(format!(
            "NATS {version} cannot keep {replicas} replicas safely: before nats-server {a}.{b}.{c}, two concurrent updates of a replicated key-value entry can both succeed, and one server's change to a service would silently undo another's. Upgrade NATS (any current release), or run with --cluster-replicas 1 (one copy: no survival of a NATS server's loss)"
        )));
    }
    Ok(replicas)
}

/// `major.minor.patch` of a nats-server version (`2.9.10`, `v2.15.1`, `2.10.0-beta.1`).
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some((a, b, c)),
        _ => None,
    }
}

/// Whether a failed key-value write lost a compare-and-set (`conflict`: the error's kind says
/// so). async-nats 0.51 knows NATS's error code 10071 for it, but current NATS servers answer
/// 10164 ("wrong last sequence") on replicated streams, which it reports as another kind.
pub fn lost_race(conflict: bool, e: &impl std::fmt::Display) -> bool {
    conflict || e.to_string().contains("wrong last sequence")
}

/// Any NATS error as a store's error. NATS being away for now (a timeout, no server
/// answering, a stream without a leader while the NATS cluster elects one) is
/// [`StoreError::Unavailable`]: worth retrying, and answered 503 rather than 500. async-nats
/// has one error-kind type per operation, and its kinds do not all tell a timeout from a
/// lost leader, so the message is what they share; this is the one place that reads it.
pub fn store_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    let transient = [
        "timed out",
        "timeout",
        "no responders",
        "no stream found",
        "not connected",
        "disconnected",
        "leadership",
    ];
    let message = format!("NATS: {what}: {text}");
    if transient.iter().any(|t| text.contains(t)) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Io(std::io::Error::other(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_follow_the_nats_cluster_and_its_version() {
        assert_eq!(replicas_for(None, 1, "2.9.10").unwrap(), 1);
        assert_eq!(replicas_for(None, 3, "2.15.1").unwrap(), 3);
        assert_eq!(replicas_for(None, 5, "v2.10.0").unwrap(), 3);
        assert_eq!(replicas_for(Some(1), 3, "2.9.10").unwrap(), 1);
        assert_eq!(replicas_for(Some(3), 3, "2.9.21").unwrap(), 3);
        let refused = replicas_for(None, 3, "2.9.10").unwrap_err().to_string();
        assert!(refused.contains("2.9.21") && refused.contains("--cluster-replicas 1"));
        assert!(replicas_for(Some(3), 3, "2.9.20").is_err());
        assert_eq!(parse_version("2.10.0-beta.1"), Some((2, 10, 0)));
        assert_eq!(parse_version("dev"), None);
    }
}
