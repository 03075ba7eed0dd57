//! The `oscar-wasm` command: `serve` runs the server; the other commands drive one (see
//! [`oscar_wasm::cli`]).

use clap::{Parser, Subcommand};
use oscar_wasm::cli;
use oscar_wasm::config::ServeArgs;
use std::process::ExitCode;

/// OSCAR-compatible serverless file processing with WebAssembly modules.
#[derive(Parser)]
#[command(name = "oscar-wasm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults: 127.0.0.1:8080, data in ./oscar-data).
    Serve(Box<ServeArgs>),
    /// Create, update, list, show and delete services.
    Service(cli::ServiceArgs),
    /// Invoke a service synchronously: the input file in, its result out.
    Run(cli::RunArgs),
    /// Invoke a service asynchronously; prints the job's name (or, with --wait, its log).
    Job(cli::JobArgs),
    /// List a service's jobs.
    Jobs(cli::JobsArgs),
    /// Print a job's log (default: the service's newest job).
    Logs(cli::LogsArgs),
    /// List or download a job's output files.
    Outputs(cli::OutputsArgs),
    /// Manage the named clusters of the clusters file.
    Cluster(cli::ClusterArgs),
    /// Publish a module to an OCI registry as a CNCF wasm artifact, for a service's `image`.
    Push(cli::PushArgs),
}

fn main() -> ExitCode {
    // A guest trap is an ordinary outcome here, not a host bug: capturing the host's stack
    // for each one (as RUST_BACKTRACE=1 would make wasmtime do) costs ~100 ms. Panics of the
    // server itself still honour RUST_BACKTRACE. Set before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: single-threaded at this point.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    // The config file feeds defaults through the environment, so it is read before parsing.
    // It configures the server only.
    if std::env::args_os().nth(1).is_some_and(|a| a == "serve")
        && let Some(path) = config_file_arg()
        && let Err(e) = oscar_wasm::config::apply_config_file(&path)
    {
        eprintln!("oscar-wasm: {e}");
        return ExitCode::from(2);
    }
    let parsed = Cli::parse();
    let client_result = match parsed.command {
        Command::Serve(args) => return serve(*args),
        Command::Service(args) => cli::commands::service(args),
        Command::Run(args) => cli::commands::run(args),
        Command::Job(args) => cli::commands::job(args),
        Command::Jobs(args) => cli::commands::jobs(args),
        Command::Logs(args) => cli::commands::logs(args),
        Command::Outputs(args) => cli::commands::outputs(args),
        Command::Cluster(args) => cli::commands::cluster(args),
        Command::Push(args) => cli::commands::push(args),
    };
    match client_result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oscar-wasm: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The log filter when OSCAR_WASM_LOG sets none. wasmtime-wasi wraps every WASI call of a
/// guest in an `#[instrument]` span, whose default level is INFO: at plain `info` each
/// invocation built and formatted dozens of spans nobody reads (a profile under load showed
/// them), so wasmtime-wasi's spans are kept to warnings.
const DEFAULT_LOG: &str = "info,wasmtime_wasi=warn";

fn serve(args: ServeArgs) -> ExitCode {
    // Kept to the end: dropping it sends the last spans.
    let _telemetry = match init_logs(args.log_format) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("oscar-wasm: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = args.check() {
        eprintln!("oscar-wasm: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oscar-wasm: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oscar_wasm::server::serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("oscar-wasm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by OSCAR_WASM_LOG, as text or JSON lines; and this crate's spans
/// to an OTLP receiver when the OTEL_* variables name one (see `telemetry`).
fn init_logs(
    format: oscar_wasm::config::LogFormat,
) -> Result<Option<oscar_wasm::telemetry::Telemetry>, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSCAR_WASM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        oscar_wasm::config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // The innermost span (a request's) carries its id; the list of all spans would repeat it.
        oscar_wasm::config::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let (traces, telemetry) = match oscar_wasm::telemetry::from_env()? {
        Some((layer, telemetry)) => (Some(layer), Some(telemetry)),
        None => (None, None),
    };
    // Traces take this crate's spans down to DEBUG (a request's steps), whatever the log
    // filter, and no other crate's (wasmtime-wasi makes a span of every WASI call).
    let traces = traces.map(|layer| {
        layer.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("oscar_wasm", tracing::Level::DEBUG),
        )
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    Ok(telemetry)
}

/// `--config FILE` / `--config=FILE` on the command line, else OSCAR_WASM_CONFIG.
fn config_file_arg() -> Option<std::path::PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(Into::into);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(path.into());
        }
    }
    std::env::var_os("OSCAR_WASM_CONFIG").map(Into::into)
}
