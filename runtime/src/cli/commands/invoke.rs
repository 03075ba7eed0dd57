//! `oscar-wasm run` (synchronous) and `oscar-wasm job` (asynchronous): the input file goes up
//! base64-encoded, as OSCAR's clients send it.

use super::read_input;
use crate::cli::connection::{Client, check};
use crate::cli::render::{
    OUTPUT_KIND_HEADER, OUTPUT_NAME_HEADER, RunResult, decode_run, print_json, write_result,
};
use crate::cli::{CliError, JobArgs, RunArgs};
use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;

use crate::protocol::JobStatus;
use crate::protocol::headers::OUTCOME as OUTCOME_HEADER;

/// POST /run/{name}; writes the result; exit 1 when the module failed.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    let client = Client::connect(&args.conn)?;
    let input = read_input(&args.input)?;
    let body = base64::engine::general_purpose::STANDARD.encode(&input);
    let url = client.url(&["run", &args.name], &[]);
    let response = client.send(client.invoker(url, args.token.as_deref()).body(body))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let outcome = header(OUTCOME_HEADER);
    let kind = header(OUTPUT_KIND_HEADER);
    let name = header(OUTPUT_NAME_HEADER);
    if !response.status().is_success() {
        if let Some(outcome) = outcome {
            // The module ran and failed: its log is the message.
            let log = response.text().unwrap_or_default();
            return Err(CliError::Failed(format!(
                "service {} failed ({outcome}):\n{}",
                args.name,
                log.trim_end()
            )));
        }
        check(response)?;
        return Ok(());
    }
    let body = response
        .bytes()
        .map_err(|e| CliError::Unreachable {
            endpoint: client.endpoint().to_string(),
            reason: format!("reading the answer: {e}"),
        })?
        .to_vec();
    let result = decode_run(kind.as_deref(), name, body);
    let label = match &result {
        RunResult::File { .. } => "file",
        RunResult::Zip(_) => "zip",
        RunResult::Logs(_) => "logs",
    };
    if args.conn.json && args.output.is_some() {
        write_result(result, args.output.as_deref())?;
        return print_json(&json!({"output": label, "path": args.output}));
    }
    let summary = write_result(result, args.output.as_deref())?;
    if !summary.is_empty() {
        eprintln!("{summary}");
    }
    Ok(())
}

/// POST /job/{name}; prints the job's name (so `JOB=$(oscar-wasm job ...)` works), or with
/// `--wait` follows it to the end.
pub fn job(args: JobArgs) -> Result<(), CliError> {
    let client = Client::connect(&args.conn)?;
    let input = read_input(&args.input)?;
    let body = base64::engine::general_purpose::STANDARD.encode(&input);
    let url = client.url(&["job", &args.name], &[]);
    let response = client.send_ok(client.invoker(url, args.token.as_deref()).body(body))?;
    let created: Value = response
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))?;
    let job = created["job_name"]
        .as_str()
        .ok_or_else(|| CliError::Usage(format!("the answer names no job: {created}")))?
        .to_string();
    if !args.wait {
        if args.conn.json {
            return print_json(&created);
        }
        println!("{job}");
        return Ok(());
    }
    let status = super::jobs::wait_for(&client, &args.name, &job, Duration::from_millis(200))?;
    let log = super::jobs::fetch_log(&client, &args.name, &job, false)?;
    let mut written = Vec::new();
    if let Some(dir) = &args.output {
        written = super::jobs::download_outputs(&client, &args.name, &job, dir)?;
    }
    if args.conn.json {
        print_json(&json!({
            "job_name": job, "status": status, "log": log,
            "outputs": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        print!("{log}");
        eprintln!("job {job}: {status}");
        if let Some(dir) = &args.output {
            eprintln!("wrote {} files into {}", written.len(), dir.display());
        }
    }
    if status == JobStatus::Succeeded {
        Ok(())
    } else {
        Err(CliError::Failed(format!("job {job} {status}")))
    }
}
