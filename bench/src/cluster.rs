//! Cluster mode's cost next to local mode: the same server alone, then as the member of a
//! cluster on one NATS server (JetStream on loopback, file storage): POST /run under `wrk`, and
//! a batch of jobs (how long POST /job takes to answer 201, how fast the batch drains, the
//! CPU time the server and NATS spend per job), and bulk batches of files through a bucket of
//! the embedded store and through the poller of an external one ([`crate::bulk`]).

use crate::scale::Setup;
use crate::server::{Process, cpu_time, wait_for_port};
use crate::{deploy, free_addr, get, levels, post, wrk};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Jobs in one batch.
const JOBS: usize = 4000;
/// Clients submitting them at once.
pub const SUBMITTERS: usize = 8;

/// One mode's figures.
pub struct Mode {
    /// `local` or `cluster`.
    pub name: &'static str,
    /// POST /run: concurrency, figures, server CPU per request.
    pub run: Vec<(usize, wrk::Figures, Duration)>,
    /// The batch of jobs.
    pub jobs: Jobs,
    /// The bulk batch of files through the embedded store.
    pub bulk: crate::bulk::Bulk,
    /// The bulk batch of files through the poller of an external store.
    pub polled: crate::bulk::Bulk,
}

/// A batch of jobs' figures.
pub struct Jobs {
    /// How many.
    pub count: usize,
    /// POST /job round trips, sorted.
    pub accept: Vec<Duration>,
    /// First submission to the last job Succeeded.
    pub drained: Duration,
    /// The server's CPU time per job.
    pub server_cpu: Duration,
    /// NATS's CPU time per job (cluster mode).
    pub nats_cpu: Option<Duration>,
}

impl Jobs {
    /// The POST /job round trip at quantile `q` (0.5 for the median).
    pub fn accept_percentile(&self, q: f64) -> Duration {
        let i = ((self.accept.len() as f64 - 1.0) * q).round() as usize;
        self.accept.get(i).copied().unwrap_or_default()
    }
}

/// A NATS server with JetStream in a temporary folder, stopped on drop.
struct Nats {
    child: Child,
    url: String,
    _dir: std::sync::Arc<tempfile::TempDir>,
}

impl Nats {
    fn start(bin: &Path) -> Self {
        let dir = crate::workdir();
        let addr = free_addr();
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &addr.port().to_string(),
                "-sd",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        wait_for_port(addr, "nats-server");
        Self {
            child,
            url: format!("nats://{addr}"),
            _dir: dir,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Measures local mode, then cluster mode on a NATS server started from `nats_bin`; `probe`
/// is the sandbox-probe module, for the bulk batch.
pub fn measure(
    rt: &tokio::runtime::Runtime,
    setup: &Setup<'_>,
    nats_bin: &Path,
    probe: &[u8],
) -> Vec<Mode> {
    let mut modes = Vec::new();
    for name in ["local", "cluster"] {
        let nats = (name == "cluster").then(|| Nats::start(nats_bin));
        let dir = crate::workdir();
        let mut extra = flags(nats.as_ref());
        extra.extend([
            "--store-access-key".into(),
            crate::bulk::ACCESS_KEY.into(),
            "--store-secret-key".into(),
            crate::bulk::SECRET_KEY.into(),
        ]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let server = Process::oscar(setup.server_bin, &dir.path().join("data"), &extra);
        rt.block_on(deploy(server.addr, setup.wasm, "upper"));
        let (status, answer) = rt.block_on(post(server.addr, "/run/upper", setup.body.clone()));
        assert_eq!(
            (status, answer),
            (200, setup.expect.to_vec()),
            "{name}: /run"
        );
        let load = wrk::Load {
            url: format!("http://{}/run/upper", server.addr),
            body: setup.body,
            headers: vec![],
        };
        let run = levels(
            &[1, 16],
            setup.wrk,
            &load,
            &server,
            &format!("{name} mode"),
            setup.warmup,
            setup.duration,
        );
        let nats_pid = nats.as_ref().map(|n| n.child.id());
        let jobs = rt.block_on(jobs(&server, nats_pid, setup));
        eprintln!(
            "{name} mode: {} jobs drained in {:?}, server CPU {:?}/job",
            jobs.count, jobs.drained, jobs.server_cpu
        );
        let bulk = rt.block_on(crate::bulk::measure(&server, probe));
        server.stop();
        // A NATS of its own in cluster mode: the batches above are not in its counts.
        drop(nats);
        let nats = (name == "cluster").then(|| Nats::start(nats_bin));
        let polled = polled(rt, setup, nats.as_ref(), probe);
        modes.push(Mode {
            name,
            run,
            jobs,
            bulk,
            polled,
        });
    }
    modes
}

/// The servers' flags in either mode: room for every job of a batch, whose count is the
/// measure.
fn flags(nats: Option<&Nats>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--max-concurrency",
        "64",
        "--max-pending-jobs",
        "5000",
        "--max-pending-total",
        "5000",
        "--max-jobs",
        "25000",
    ]
    .map(String::from)
    .to_vec();
    if let Some(nats) = nats {
        flags.extend(["--cluster".into(), nats.url.clone()]);
    }
    flags
}

/// The bulk batch through the poller: a fresh server using another's embedded store as its
/// external one.
fn polled(
    rt: &tokio::runtime::Runtime,
    setup: &Setup<'_>,
    nats: Option<&Nats>,
    probe: &[u8],
) -> crate::bulk::Bulk {
    let dir = crate::workdir();
    let external = rt.block_on(crate::bulk::external_store(
        setup.server_bin,
        &dir.path().join("external"),
        probe,
    ));
    let mut extra = flags(nats);
    extra.extend(crate::bulk::external_flags(&external));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = Process::oscar(setup.server_bin, &dir.path().join("data"), &extra);
    let polled = rt.block_on(crate::bulk::measure_polled(&server, &external, probe));
    server.stop();
    external.stop();
    polled
}

/// Submits [`JOBS`] jobs from [`SUBMITTERS`] clients and waits until all succeeded.
async fn jobs(server: &Process, nats_pid: Option<u32>, setup: &Setup<'_>) -> Jobs {
    let addr = server.addr;
    let (server_cpu, nats_cpu) = (server.cpu_time(), nats_pid.map(cpu_time));
    let started = Instant::now();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let body = setup.body.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..JOBS / SUBMITTERS {
                    let sent = Instant::now();
                    let (status, answer) = post(addr, "/job/upper", body.clone()).await;
                    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
                    times.push(sent.elapsed());
                }
                times
            })
        })
        .collect();
    let mut accept = Vec::new();
    for submitter in submitters {
        accept.extend(submitter.await.expect("submitter"));
    }
    let count = accept.len();
    loop {
        if jobs_with_status(addr, "Succeeded").await >= count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the jobs did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = started.elapsed();
    accept.sort();
    let per_job = |d: Duration| d / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    Jobs {
        count,
        accept,
        drained,
        server_cpu: per_job(server.cpu_time() - server_cpu),
        nats_cpu: nats_pid
            .zip(nats_cpu)
            .map(|(pid, before)| per_job(cpu_time(pid) - before)),
    }
}

/// Jobs kept with `status`, all services together, from the server's metrics.
pub async fn jobs_with_status(addr: std::net::SocketAddr, status: &str) -> usize {
    let (_, text) = get(addr, "/metrics").await;
    let prefix = format!("oscar_wasm_jobs{{status=\"{status}\"}} ");
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
