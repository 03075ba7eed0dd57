//! Binds the listener, serves the API, and shuts down gracefully on Ctrl-C or SIGTERM.

use crate::api;
use crate::app::{App, StartError};
use crate::config::ServeArgs;

/// Runs the server until a shutdown signal.
pub async fn serve(args: ServeArgs) -> Result<(), StartError> {
    let app = App::open(&args)?;
    crate::jobs::start_workers(&app);
    let router = api::router(app.clone(), args.max_body);
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
    tracing::info!(
        data_dir = %args.data_dir.display(),
        scratch = %app.invoker.scratch_root().display(),
        services = app.registry.list().len(),
        "oscar-wasm listening on http://{addr}"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|source| StartError::Io {
            context: "serving".into(),
            source,
        })?;
    tracing::info!("oscar-wasm stopped");
    Ok(())
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
