//! `oscar-wasm-supervisor`: runs inside an image service's pod, as FaaS Supervisor does in
//! OSCAR. It fetches the invocation's input and script from the runtime (one-time token),
//! runs the script with /bin/sh under OSCAR's contract (INPUT_FILE_PATH, TMP_INPUT_DIR,
//! TMP_OUTPUT_DIR, the service's variables from the pod's environment), and posts the output
//! files and the script's output back. It exits with the script's status, so the Job fails when
//! the script does.
//!
//! Environment: OSCAR_WASM_CALLBACK (`<runtime>/kube/invocations/<id>`),
//! OSCAR_WASM_INVOCATION_TOKEN, and OSCAR_WASM_WORKDIR (default `/tmp`: input in `/tmp/input`,
//! outputs in `/tmp/output`, as in OSCAR).
//!
//! `oscar-wasm-supervisor --install PATH` copies the binary to PATH instead: the pod's init
//! container runs that, so the supervisor image needs nothing but this static binary.

use base64::Engine as _;
use oscar_wasm_supervisor::{INPUT_NAME_HEADER, PodResult, ResultFile};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.as_slice() {
        [] => run(),
        [flag, target] if flag == "--install" => install(Path::new(target)).map(|()| 0),
        _ => Err("usage: oscar-wasm-supervisor [--install PATH]".into()),
    };
    match outcome {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("oscar-wasm-supervisor: {e}");
            ExitCode::from(1)
        }
    }
}

/// Copies this binary to `target` (its folder created), executable.
fn install(target: &Path) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::copy(&me, target).map_err(|e| format!("copying to {}: {e}", target.display()))?;
    std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("making {} executable: {e}", target.display()))
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn run() -> Result<i32, String> {
    let callback = var("OSCAR_WASM_CALLBACK")?;
    let token = var("OSCAR_WASM_INVOCATION_TOKEN")?;
    let workdir =
        PathBuf::from(std::env::var("OSCAR_WASM_WORKDIR").unwrap_or_else(|_| "/tmp".into()));
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(None)
        .connect_timeout(std::time::Duration::from_secs(10));
    if callback.starts_with("http://") {
        // No TLS, so no CA certificates to load: many minimal images have none, and the
        // platform verifier refuses to start without them.
        builder = builder.tls_certs_only(Vec::new());
    }
    let client = builder.build().map_err(|e| {
        format!("setting up HTTP (for an https callback the image needs CA certificates): {e}")
    })?;
    let get = |what: &str| {
        client
            .get(format!("{callback}/{what}"))
            .bearer_auth(&token)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching the {what}: {e}"))
    };

    let input = get("input")?;
    let name = input
        .headers()
        .get(INPUT_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|n| Path::new(n).file_name())
        .map_or_else(|| "event-file".into(), |n| n.to_string_lossy().into_owned());
    let input = input
        .bytes()
        .map_err(|e| format!("reading the input: {e}"))?;
    let script = get("script")?
        .text()
        .map_err(|e| format!("reading the script: {e}"))?;

    let input_dir = workdir.join("input");
    let output_dir = workdir.join("output");
    for dir in [&input_dir, &output_dir] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let input_path = input_dir.join(&name);
    std::fs::write(&input_path, &input).map_err(|e| format!("writing the input: {e}"))?;
    let script_path = workdir.join("oscar-wasm-script.sh");
    std::fs::write(&script_path, script).map_err(|e| format!("writing the script: {e}"))?;

    let done = Command::new("/bin/sh")
        .arg(&script_path)
        .env("INPUT_FILE_PATH", &input_path)
        .env("TMP_INPUT_DIR", &input_dir)
        .env("TMP_OUTPUT_DIR", &output_dir)
        .output()
        .map_err(|e| format!("running /bin/sh: {e}"))?;
    // Also to the pod's own log.
    print!("{}", String::from_utf8_lossy(&done.stdout));
    eprint!("{}", String::from_utf8_lossy(&done.stderr));
    let exit_code = done.status.code().unwrap_or(1);
    let mut output = String::from_utf8_lossy(&done.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&done.stderr));

    let mut files = Vec::new();
    collect(&output_dir, &output_dir, &mut files)?;
    let result = PodResult {
        exit_code,
        output,
        files,
    };
    client
        .post(format!("{callback}/result"))
        .bearer_auth(&token)
        .json(&result)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("posting the result: {e}"))?;
    Ok(exit_code)
}

/// Regular files under `dir`, recursively, named relative to `root`; links are not followed.
fn collect(root: &Path, dir: &Path, files: &mut Vec<ResultFile>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let path = entry.path();
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            let bytes =
                std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
            files.push(ResultFile {
                path: relative.to_string_lossy().into_owned(),
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
    }
    Ok(())
}
