//! `oscar-wasm service apply | list | get | delete`.

use crate::cli::connection::Client;
use crate::cli::definitions::{self, Definition};
use crate::cli::render::{print_json, table};
use crate::cli::{CliError, ServiceArgs, ServiceCommand, file_error};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

/// Modules larger than this get a progress bar while they upload (on a terminal).
const PROGRESS_THRESHOLD: u64 = 1 << 20;

/// Runs a service subcommand.
pub fn service(args: ServiceArgs) -> Result<(), CliError> {
    // Offline: no server needed.
    if let ServiceCommand::Manifest {
        file,
        namespace,
        supervisor_image,
        callback_url,
        asynchronous,
    } = &args.command
    {
        return manifest(
            file,
            namespace,
            supervisor_image,
            callback_url,
            *asynchronous,
        );
    }
    let client = Client::connect(&args.conn)?;
    let json = args.conn.json;
    match args.command {
        ServiceCommand::Apply { file, module } => apply(&client, &file, module.as_deref(), json),
        ServiceCommand::List => list(&client, json),
        ServiceCommand::Get { name } => get(&client, &name, json),
        ServiceCommand::PutFile {
            name,
            provider,
            local,
            remote,
        } => super::files::put(&client, &name, &provider, &local, &remote, json),
        ServiceCommand::GetFile {
            name,
            provider,
            remote,
            local,
        } => super::files::get(&client, &name, &provider, &remote, &local, json),
        ServiceCommand::ListFiles {
            name,
            provider,
            remote,
        } => super::files::list(&client, &name, &provider, &remote, json),
        ServiceCommand::Manifest { .. } => Ok(()),
        ServiceCommand::Delete { names } => {
            for name in names {
                client.send_ok(client.admin(
                    Method::DELETE,
                    client.url(&["system", "services", &name], &[]),
                ))?;
                if !json {
                    println!("service {name} deleted");
                }
            }
            Ok(())
        }
    }
}

fn apply(client: &Client, file: &Path, module: Option<&Path>, json: bool) -> Result<(), CliError> {
    let mut defs = definitions::read(file)?;
    if let Some(module) = module {
        match defs.as_mut_slice() {
            [only] => only.module_file = Some(module.to_path_buf()),
            _ => {
                return Err(CliError::Usage(format!(
                    "--module needs a file with one service; {} defines {}",
                    file.display(),
                    defs.len()
                )));
            }
        }
    }
    let mut applied = Vec::new();
    for def in defs {
        let (name, action, module) = apply_one(client, def)?;
        if !json {
            match &module {
                Some(digest) => println!("service {name} {action} (module {digest})"),
                None => println!("service {name} {action}"),
            }
        }
        applied.push(json!({"name": name, "action": action, "module": module}));
    }
    if json {
        print_json(&applied)?;
    }
    Ok(())
}

/// Uploads the definition's module if it has one, then creates or updates the service.
fn apply_one(
    client: &Client,
    mut def: Definition,
) -> Result<(String, &'static str, Option<String>), CliError> {
    let name = def.name().to_string();
    if let Some(path) = &def.module_file {
        let digest = upload_module(client, path)?;
        def.value.insert("module".into(), Value::String(digest));
    }
    if let Some(path) = &def.packages_path {
        let digest = crate::cli::packages::upload(client, path)?;
        def.value.insert("packages".into(), Value::String(digest));
    }
    let exists = match client
        .send(client.admin(Method::GET, client.url(&["system", "services", &name], &[])))?
    {
        r if r.status() == reqwest::StatusCode::NOT_FOUND => false,
        r => {
            crate::cli::connection::check(r)?;
            true
        }
    };
    let url = client.url(&["system", "services"], &[]);
    let (method, action) = if exists {
        (Method::PUT, "updated")
    } else {
        (Method::POST, "created")
    };
    client.send_ok(client.admin(method, url).json(&def.value))?;
    let module = def
        .value
        .get("module")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((name, action, module))
}

/// POST /system/modules with the file's bytes; returns the digest.
fn upload_module(client: &Client, path: &Path) -> Result<String, CliError> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let len = file.metadata().map_err(|e| file_error(path, e))?.len();
    let show_progress =
        len >= PROGRESS_THRESHOLD && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let body = if show_progress {
        let bar =
            indicatif::ProgressBar::new(len).with_message(format!("uploading {}", path.display()));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        reqwest::blocking::Body::sized(bar.wrap_read(file), len)
    } else {
        reqwest::blocking::Body::sized(file, len)
    };
    let response = client.send_ok(
        client
            .admin(Method::POST, client.url(&["system", "modules"], &[]))
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(body),
    )?;
    crate::cli::connection::stored_digest(response)
}

fn list(client: &Client, json: bool) -> Result<(), CliError> {
    let services: Vec<Value> = client
        .send_ok(client.admin(Method::GET, client.url(&["system", "services"], &[])))?
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))?;
    if json {
        return print_json(&services);
    }
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let rows = services
        .iter()
        .map(|s| {
            let (backend, what) = match s.get("module").and_then(Value::as_str) {
                Some(m) => ("wasm", short_digest(m)),
                None => ("image", text(s, "image")),
            };
            vec![
                text(s, "name"),
                backend.to_string(),
                what,
                text(s, "memory"),
                text(s, "log_level"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["NAME", "BACKEND", "MODULE/IMAGE", "MEMORY", "LOG LEVEL"],
            rows
        )
    );
    Ok(())
}

fn get(client: &Client, name: &str, json: bool) -> Result<(), CliError> {
    let definition: Value = client
        .send_ok(client.admin(Method::GET, client.url(&["system", "services", name], &[])))?
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))?;
    if json {
        return print_json(&definition);
    }
    let yaml = yaml_serde::to_string(&definition)
        .map_err(|e| CliError::Usage(format!("cannot print YAML: {e}")))?;
    print!("{yaml}");
    Ok(())
}

/// `sha256:0123456789ab` instead of 64 hex digits, as container tools shorten image ids.
fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// `service manifest`: the Job of each image service of `file`, as YAML documents.
fn manifest(
    file: &Path,
    namespace: &str,
    supervisor_image: &str,
    callback_url: &str,
    asynchronous: bool,
) -> Result<(), CliError> {
    use crate::kube::manifest::{JobRequest, JobSettings, job};
    use crate::service::{Backend, Service};
    let settings = JobSettings {
        namespace: namespace.to_string(),
        supervisor_image: supervisor_image.to_string(),
        ttl_after_finished: 600,
    };
    let mut documents = Vec::new();
    for def in definitions::read(file)? {
        let name = def.name().to_string();
        let service = Service::from_definition(Value::Object(def.value))
            .map_err(|e| file_error(file, format!("service {name}: {e}")))?;
        let Backend::Image { image, pod, .. } = &service.spec.backend else {
            eprintln!("service {name} runs a module: no Kubernetes objects");
            continue;
        };
        let text = |key: &str| service.definition.get(key).and_then(Value::as_str);
        let callback = format!(
            "{}/kube/invocations/INVOCATION",
            callback_url.trim_end_matches('/')
        );
        let request = JobRequest {
            service: &service.spec.name,
            invocation: "INVOCATION",
            image,
            memory: text("memory"),
            cpu: text("cpu"),
            pod,
            env: &service.spec.env,
            timeout_secs: service
                .spec
                .timeout
                .map_or(60, |t| t.as_secs().max(1) as i64),
            callback: &callback,
            token: "ONE-TIME-TOKEN",
            asynchronous,
        };
        // Serialised straight from the typed object (with its apiVersion and kind), not
        // through a JSON value, whose arbitrary-precision numbers YAML cannot show.
        let (job, left_off) = job(&request, &settings);
        if !left_off.is_empty() {
            eprintln!(
                "service {name}: left off the Job, since Kubernetes refuses them: {}",
                left_off.join(", ")
            );
        }
        documents.push(yaml_serde::to_string(&job).map_err(|e| CliError::Usage(e.to_string()))?);
    }
    print!("{}", documents.join("---\n"));
    Ok(())
}
