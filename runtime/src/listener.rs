//! Accepting HTTP connections within bounds, for both listeners (the API's and the embedded S3
//! store's): at most `--max-connections` served at once (more wait in the kernel's backlog), a
//! deadline for each request's headers that also closes connections left idle between
//! requests, and a graceful stop that lets requests in flight finish.
//!
//! Without these, idle or slow connections held open by one client exhaust the process's file
//! descriptors and every other client, `/health` included, times out.

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long requests in flight may take to finish once a stop was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request's headers, and most idle time between requests.
    pub header_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Raises the soft open-file limit to the hard one (a server, not an interactive shell, is
/// what the hard limit is for) and returns the files the process may then hold open; `None`
/// when the system says no limit or cannot tell.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    limit.current
}

/// The connections each of `listeners` may serve at once, at most `requested`, so that all of
/// them together leave `reserve` of the process's `open_files` for everything else (module
/// and job files, scratch folders, outbound connections). A connection beyond what the
/// process can open would be accepted and then fail every request, /health included.
pub fn fit_connections(requested: usize, open_files: u64, listeners: usize, reserve: u64) -> usize {
    let per_listener = open_files.saturating_sub(reserve) / listeners.max(1) as u64;
    requested
        .min(usize::try_from(per_listener).unwrap_or(usize::MAX))
        .max(1)
}

/// Serves `service` on every connection `listener` accepts, until `shutdown` completes.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // HTTP/1.1 only, which every OSCAR and S3 client speaks: detecting HTTP/2 first means
    // waiting for a connection's first bytes with no deadline, which an idle client never
    // sends. hyper's header deadline starts at accept and again after each response.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: beyond the cap, connections wait in the backlog, unaccepted.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors, most often: wait for some to be freed.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(socket), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
    }
}

#[cfg(test)]
mod tests {
    use super::fit_connections;

    #[test]
    fn connections_fit_the_open_file_limit() {
        assert_eq!(fit_connections(512, 1 << 20, 2, 192), 512);
        assert_eq!(fit_connections(512, 256, 2, 192), 32);
        assert_eq!(fit_connections(512, 256, 1, 192), 64);
        // Never zero: one connection is always served.
        assert_eq!(fit_connections(512, 100, 2, 192), 1);
    }
}
