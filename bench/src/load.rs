//! A keep-alive HTTP/1.1 load generator: `concurrency` connections, each sending one request
//! after another for a fixed time, every latency recorded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Latencies and counts of one run.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Successful requests' latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Requests that failed or answered something unexpected.
    pub errors: u64,
    /// Measured wall time.
    pub elapsed: Duration,
}

impl Stats {
    /// Builds stats from raw latencies.
    pub fn new(mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            latencies,
            errors,
            elapsed,
        }
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile latency (0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    /// The slowest request.
    pub fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }
}

/// What to send and what to expect back.
#[derive(Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// Request body.
    pub body: Bytes,
    /// The expected response body.
    pub expect: Bytes,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

/// Drives `target` with `concurrency` connections: `warmup` unmeasured, then `duration`.
pub async fn drive(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(
            async move { connection(target, start, end).await },
        ));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Stats::new(latencies, errors, duration)
}

async fn connection(target: Target, start: Instant, end: Instant) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let Ok(stream) = tokio::net::TcpStream::connect(target.addr).await else {
        return (latencies, 1);
    };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
        return (latencies, 1);
    };
    tokio::spawn(conn);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut request = Request::post(&target.path);
        for (k, v) in &target.headers {
            request = request.header(k, v);
        }
        let request = request
            .header("host", "bench")
            .body(Full::new(target.body.clone()))
            .expect("request");
        let sent = Instant::now();
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                match response.into_body().collect().await {
                    Ok(body) => status.is_success() && body.to_bytes() == target.expect,
                    Err(_) => false,
                }
            }
            Err(_) => {
                errors += 1;
                break;
            }
        };
        let latency = sent.elapsed();
        if sent >= start {
            if ok {
                latencies.push(latency);
            } else {
                errors += 1;
            }
        }
    }
    (latencies, errors)
}
