//! `oscar-wasm push FILE.wasm REF`: publishes a module as a CNCF wasm OCI artifact, so that a
//! service's `image` can name it (build, push, apply).

use super::super::{CliError, PushArgs};

/// Validates the module locally (a quick check that it is WebAssembly), pushes it and prints
/// the reference with the manifest's digest.
pub fn push(args: PushArgs) -> Result<(), CliError> {
    let module = super::read_input(&args.file)?;
    if !module.starts_with(b"\0asm") {
        return Err(CliError::Usage(format!(
            "{} is not a WebAssembly module (no \\0asm header)",
            args.file.display()
        )));
    }
    let settings = args
        .registries
        .settings(u64::MAX)
        .map_err(CliError::Usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the client: {e}")))?;
    let registries = crate::oci::Registries::new(settings);
    let failed = |e: crate::oci::OciError| {
        if e.is_upstream() {
            CliError::Unreachable {
                endpoint: args.reference.clone(),
                reason: e.to_string(),
            }
        } else {
            CliError::Refused {
                status: 400,
                message: e.to_string(),
            }
        }
    };
    runtime
        .block_on(registries.push(&args.reference, module))
        .map_err(failed)?;
    let digest = runtime
        .block_on(registries.current_digest(&args.reference))
        .map_err(failed)?;
    println!(
        "{}@{digest}",
        args.reference.split('@').next().unwrap_or(&args.reference)
    );
    Ok(())
}
