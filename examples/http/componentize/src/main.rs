//! `componentize-proxy IN.wasm OUT.wasm`: a wasm32-wasip1 core module exporting
//! `wasi:http/incoming-handler` (a Rust `cdylib` built with the `wasi` crate's proxy bindings)
//! made into a `wasi:http/proxy` component, with the preview 1 proxy adapter of wasmtime 48.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: componentize-proxy IN.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    match componentize(input, output) {
        Ok(size) => {
            println!("wrote {output} ({size} bytes)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("componentize-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn componentize(input: &str, output: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let core = std::fs::read(input).map_err(|e| format!("reading {input}: {e}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&core)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(output, &component).map_err(|e| format!("writing {output}: {e}"))?;
    Ok(component.len())
}
