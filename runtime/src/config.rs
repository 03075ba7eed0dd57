//! Server configuration: flags, their environment variables, and the embedded defaults that
//! make `oscar-wasm serve` work with nothing else installed.

use crate::service::parse_quantity;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Bytes of a module's stdout and stderr kept per invocation.
    #[arg(long, env = "OSCAR_WASM_MAX_LOG", default_value = "1Mi", value_parser = quantity)]
    pub max_log: u64,
}

fn quantity(text: &str) -> Result<u64, String> {
    parse_quantity(text)
}

impl ServeArgs {
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
