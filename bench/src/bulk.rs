//! Bulk bucket processing: [`FILES`] small files uploaded by [`UPLOADERS`] S3 clients into a
//! service's input folder, each becoming a job whose output file lands in the service's output
//! folder. Measured from the first upload to the last job Succeeded (its output uploaded
//! before), then checked: every output there, each file processed once. Two ways in: the
//! embedded store, whose uploads make the jobs ([`measure`]), and an external store the
//! service polls ([`measure_polled`]; another oscar-wasm's embedded store plays it).

use crate::server::Process;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Files in one batch.
pub const FILES: usize = 20_000;
/// S3 clients uploading at once.
pub const UPLOADERS: usize = 32;
/// The embedded store's keys in the benchmark's servers.
pub const ACCESS_KEY: &str = "bench";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "bench-secret-key-0123456789";
/// The bucket the service reads from and writes to.
const BUCKET: &str = "bulk";

/// One batch's figures.
pub struct Bulk {
    /// Files uploaded (and processed).
    pub files: usize,
    /// First upload to the last one acknowledged.
    pub uploaded: Duration,
    /// First upload to the last job Succeeded.
    pub processed: Duration,
    /// The server's CPU time per file.
    pub server_cpu: Duration,
}

impl Bulk {
    /// Files processed per second, first upload to last output.
    pub fn rate(&self) -> f64 {
        self.files as f64 / self.processed.as_secs_f64()
    }
}

/// Runs the batch on `server` (started with [`ACCESS_KEY`] and [`SECRET_KEY`] and room for
/// [`FILES`] finished jobs) with `probe`, the sandbox-probe module, which writes the output
/// file its input names.
pub async fn measure(server: &Process, probe: &[u8]) -> Bulk {
    let digest = crate::upload(server.addr, probe).await;
    let definition = serde_json::json!({
        "name": "bulk", "module": digest, "log_level": "CRITICAL",
        "input": [{"storage_provider": "minio", "path": format!("{BUCKET}/in")}],
        "output": [{"storage_provider": "minio.default", "path": format!("{BUCKET}/out")}],
    });
    create(server.addr, definition).await;
    batch(server, &store(server.s3), "bulk").await
}

/// Creates a service from `definition` on the server at `addr`.
async fn create(addr: SocketAddr, definition: serde_json::Value) {
    let (status, body) = crate::post(
        addr,
        "/system/services",
        Bytes::from(definition.to_string()),
    )
    .await;
    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&body));
}

/// Flags that make a server use `external`'s embedded store as its `minio.default`.
pub fn external_flags(external: &Process) -> Vec<String> {
    vec![
        "--storage-endpoint".into(),
        format!("http://{}", external.s3),
        "--storage-access-key".into(),
        ACCESS_KEY.into(),
        "--storage-secret-key".into(),
        SECRET_KEY.into(),
    ]
}

/// Starts another oscar-wasm (data in `dir`) whose embedded store holds the bucket, for a
/// server started with [`external_flags`].
pub async fn external_store(bin: &std::path::Path, dir: &std::path::Path, probe: &[u8]) -> Process {
    let external = Process::oscar(
        bin,
        dir,
        &[
            "--store-access-key",
            ACCESS_KEY,
            "--store-secret-key",
            SECRET_KEY,
        ],
    );
    // A service whose output names the bucket creates it (and is triggered by nothing).
    let digest = crate::upload(external.addr, probe).await;
    let definition = serde_json::json!({
        "name": "holder", "module": digest,
        "output": [{"storage_provider": "minio.default", "path": format!("{BUCKET}/out")}],
    });
    create(external.addr, definition).await;
    external
}

/// Runs the batch through `server`'s poller: the bucket is on `external`
/// ([`external_store`]), which `server` was started to use ([`external_flags`]).
pub async fn measure_polled(server: &Process, external: &Process, probe: &[u8]) -> Bulk {
    let digest = crate::upload(server.addr, probe).await;
    let definition = serde_json::json!({
        "name": "polled", "module": digest, "log_level": "CRITICAL", "poll_interval": 1,
        "input": [{"storage_provider": "minio", "path": format!("{BUCKET}/in")}],
        "output": [{"storage_provider": "minio", "path": format!("{BUCKET}/out")}],
    });
    create(server.addr, definition).await;
    let store = store(external.s3);
    first_round(server.addr, &store).await;
    batch(server, &store, "polled").await
}

/// Waits until the poller has had its first round (which only takes note of what is there):
/// warm-up files are put, one every 2 s, until one of them is processed.
async fn first_round(addr: SocketAddr, store: &object_store::aws::AmazonS3) {
    let started = Instant::now();
    let before = crate::cluster::jobs_with_status(addr, "Succeeded").await;
    for n in 0.. {
        let body = format!("output warm-{n}.txt warm\n");
        store
            .put(&ObjectPath::from(format!("in/warm-{n}.txt")), body.into())
            .await
            .expect("upload");
        for _ in 0..100 {
            if crate::cluster::jobs_with_status(addr, "Succeeded").await > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the poller never started"
        );
    }
}

/// Uploads [`FILES`] files to `store`'s input folder and waits until `server` has processed
/// them all (as `label` in its log line).
async fn batch(server: &Process, store: &object_store::aws::AmazonS3, label: &str) -> Bulk {
    let before = crate::cluster::jobs_with_status(server.addr, "Succeeded").await;
    let cpu = server.cpu_time();
    let started = Instant::now();
    let uploaders: Vec<_> = (0..UPLOADERS)
        .map(|u| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (u..FILES).step_by(UPLOADERS) {
                    let body = format!("output f{i}.txt {i}\n");
                    store
                        .put(&ObjectPath::from(format!("in/f{i}.txt")), body.into())
                        .await
                        .expect("upload");
                }
            })
        })
        .collect();
    for uploader in uploaders {
        uploader.await.expect("uploader");
    }
    let uploaded = started.elapsed();
    loop {
        if crate::cluster::jobs_with_status(server.addr, "Succeeded").await >= before + FILES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the bulk batch did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let processed = started.elapsed();
    let server_cpu = (server.cpu_time() - cpu) / u32::try_from(FILES).unwrap_or(u32::MAX);
    check(server.addr, store, before).await;
    eprintln!(
        "{label}: {FILES} files uploaded in {uploaded:?}, processed in {processed:?}, server CPU {server_cpu:?}/file"
    );
    Bulk {
        files: FILES,
        uploaded,
        processed,
        server_cpu,
    }
}

/// Every output is there, and no file was processed twice or failed.
async fn check(addr: SocketAddr, store: &object_store::aws::AmazonS3, before: usize) {
    use futures::TryStreamExt as _;
    let outputs: Vec<_> = store
        .list(Some(&ObjectPath::from("out")))
        .try_collect()
        .await
        .expect("list outputs");
    let batch_outputs = outputs
        .iter()
        .filter(|o| o.location.as_ref().starts_with("out/f"))
        .count();
    assert_eq!(batch_outputs, FILES, "outputs in {BUCKET}/out");
    assert_eq!(
        crate::cluster::jobs_with_status(addr, "Succeeded").await,
        before + FILES,
        "each file processed once"
    );
    assert_eq!(
        crate::cluster::jobs_with_status(addr, "Failed").await,
        0,
        "no job failed"
    );
    let sample = store
        .get(&ObjectPath::from(format!("out/f{}.txt", FILES - 1)))
        .await
        .expect("the last file's output")
        .bytes()
        .await
        .expect("read");
    assert_eq!(sample, (FILES - 1).to_string().as_bytes());
}

/// An S3 client for the bulk bucket of the embedded store at `addr`.
fn store(addr: SocketAddr) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://{addr}"))
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .expect("S3 client")
}
