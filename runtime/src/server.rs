//! Binds the listener, serves the API, and shuts down gracefully on Ctrl-C or SIGTERM.

use crate::api;
use crate::app::{App, StartError};
use crate::config::ServeArgs;

/// Runs the server until a shutdown signal.
pub async fn serve(args: ServeArgs) -> Result<(), StartError> {
    // Everything the server creates (definitions with secrets, job inputs and outputs, stored
    // objects, scratch folders) is users' data: owner-only, whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Io {
            context: format!("binding {}", args.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    // The embedded store's port is bound first: services' minio.default needs its address.
    let s3_listener = if args.storage_endpoint.is_none() {
        let listener = tokio::net::TcpListener::bind(args.s3_listen)
            .await
            .map_err(|source| StartError::Io {
                context: format!(
                    "binding the embedded S3 store to {} (--s3-listen picks another address)",
                    args.s3_listen
                ),
                source,
            })?;
        Some(listener)
    } else {
        None
    };
    let s3_addr = s3_listener.as_ref().and_then(|l| l.local_addr().ok());
    // Image services need a cluster that answers; without one they are refused at creation.
    let kube = match args.kube_settings().map(|mut settings| {
        // Port 0 in the callback URL stands for the port this server bound.
        if let Ok(mut url) = reqwest::Url::parse(&settings.callback_url)
            && url.port() == Some(0)
            && url.set_port(Some(addr.port())).is_ok()
        {
            settings.callback_url = url.to_string();
        }
        settings
    }) {
        Some(settings) => match crate::kube::Kube::connect(settings).await {
            Ok(kube) => {
                tracing::info!(namespace = %kube.namespace(), "image services run as Kubernetes Jobs");
                Some(kube)
            }
            Err(reason) => {
                tracing::warn!("image services are disabled: {reason}");
                None
            }
        },
        None => None,
    };
    let cluster = if args.cluster.enabled() {
        let cluster = crate::cluster::Cluster::connect(&args.cluster)
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        let stores = open_cluster_stores(&cluster).await?;
        tracing::info!(nats = %args.cluster.nats_urls.join(","), "cluster member: services, modules and jobs are kept in NATS JetStream");
        Some((cluster, stores))
    } else {
        None
    };
    let app = App::open_with(&args, s3_addr, kube, cluster).await?;
    let limits = crate::listener::ConnectionLimits {
        max_connections: connection_cap(&args, if s3_listener.is_some() { 2 } else { 1 }),
        header_timeout: std::time::Duration::try_from_secs_f64(args.header_timeout)
            .unwrap_or(std::time::Duration::from_secs(30)),
    };
    let embedded = match s3_listener {
        Some(listener) => Some(crate::background::EmbeddedStore::open(
            &app, listener, limits,
        )?),
        None => None,
    };
    let background = crate::background::Background::start(&app, embedded);
    let api = api::service(app.clone(), args.max_body);
    tracing::info!(
        data_dir = %args.data_dir.display(),
        scratch = %args.scratch_root(&app.operations.data_dir).display(),
        services = app.services.registry.list().len(),
        "oscar-wasm listening on http://{addr}"
    );
    let service = hyper_util::service::TowerToHyperService::new(api);
    let signal = async {
        shutdown_signal().await;
        tracing::info!("stopping: finishing the requests in flight");
    };
    crate::listener::serve(listener, service, limits, signal).await;
    background.stop().await;
    // What calls were still running is not needed any more: their inputs and outputs go.
    app.invocations.executor.stop();
    tracing::info!("oscar-wasm stopped");
    Ok(())
}

/// The cluster's buckets and streams, retried for a minute: servers started together race
/// to create them, and a NATS cluster that just formed (or lost a node) takes a few seconds to
/// place a new stream and elect its leader ("stream not found" right after it was created).
async fn open_cluster_stores(
    cluster: &crate::cluster::Cluster,
) -> Result<crate::app::StateStores, StartError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut pause = std::time::Duration::from_millis(250);
    loop {
        match crate::app::StateStores::cluster(cluster).await {
            Ok(stores) => return Ok(stores),
            Err(e @ crate::cluster::ClusterError::JetStream { .. })
                if std::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(error = %e, "the cluster's streams are not ready yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(4));
            }
            Err(e) => return Err(StartError::Config(e.to_string())),
        }
    }
}

/// `--max-connections`, lowered when the process cannot open that many files: each of the
/// `listeners` gets its share of the open-file limit (raised to the hard limit first), minus
/// a reserve for what invocations open (a few files each) and the server's own files.
fn connection_cap(args: &crate::config::ServeArgs, listeners: usize) -> usize {
    let Some(open_files) = crate::listener::raise_open_file_limit() else {
        return args.max_connections;
    };
    let reserve = 64 + 4 * args.max_concurrency as u64;
    let cap =
        crate::listener::fit_connections(args.max_connections, open_files, listeners, reserve);
    if cap < args.max_connections {
        tracing::warn!(
            open_files,
            requested = args.max_connections,
            serving = cap,
            "the process may open only {open_files} files: serving {cap} connections per listener instead of --max-connections {} (raise the open-file limit, `ulimit -n`, to serve more)",
            args.max_connections
        );
    }
    cap
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
