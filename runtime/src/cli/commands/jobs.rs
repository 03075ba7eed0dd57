//! `oscar-wasm jobs`, `logs` and `outputs`: OSCAR's /system/logs routes and oscar-wasm's
//! /system/outputs.

use crate::cli::connection::Client;
use crate::cli::render::{print_json, size, table, unzip};
use crate::cli::{CliError, JobsArgs, LogsArgs, OutputsArgs};
use crate::protocol::JobStatus;
use reqwest::Method;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every job of a service, following OSCAR's paging, oldest first.
fn list_all(client: &Client, service: &str) -> Result<Map<String, Value>, CliError> {
    let mut all = Map::new();
    let mut page: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000")];
        if let Some(p) = &page {
            query.push(("page", p));
        }
        let body: Value = client
            .send_ok(client.admin(
                Method::GET,
                client.url(&["system", "logs", service], &query),
            ))?
            .json()
            .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))?;
        if let Some(jobs) = body.get("jobs").and_then(Value::as_object) {
            all.extend(jobs.clone());
        }
        match body.get("next_page").and_then(Value::as_str) {
            Some(next) if !next.is_empty() && Some(next) != page.as_deref() => {
                page = Some(next.to_string());
            }
            _ => return Ok(all),
        }
    }
}

/// `oscar-wasm jobs NAME`: a table of the service's jobs, or OSCAR's JobsResponse with --json.
pub fn jobs(args: JobsArgs) -> Result<(), CliError> {
    let client = Client::connect(&args.conn)?;
    let mut all = list_all(&client, &args.name)?;
    if args.wait {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        while all.is_empty()
            || all
                .values()
                .any(|j| !status_of(j).is_some_and(JobStatus::is_finished))
        {
            std::thread::sleep(delay);
            delay = next_delay(delay, started);
            all = list_all(&client, &args.name)?;
        }
    }
    if args.conn.json {
        return print_json(&serde_json::json!({ "jobs": all }));
    }
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    let rows = all
        .iter()
        .map(|(name, job)| {
            vec![
                name.clone(),
                text(job, "status"),
                job.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("job")
                    .to_string(),
                text(job, "creation_time"),
                text(job, "finish_time"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["JOB", "STATUS", "KIND", "CREATED", "FINISHED"], rows)
    );
    Ok(())
}

/// The text of a job's log.
pub fn fetch_log(
    client: &Client,
    service: &str,
    job: &str,
    timestamps: bool,
) -> Result<String, CliError> {
    let query: &[(&str, &str)] = if timestamps {
        &[("timestamps", "true")]
    } else {
        &[]
    };
    client
        .send_ok(client.admin(
            Method::GET,
            client.url(&["system", "logs", service, job], query),
        ))?
        .text()
        .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))
}

/// `oscar-wasm logs NAME [JOB]`: a job's log; without JOB, the newest job's.
pub fn logs(args: LogsArgs) -> Result<(), CliError> {
    let client = Client::connect(&args.conn)?;
    let job = match args.job {
        Some(job) => job,
        None => {
            let all = list_all(&client, &args.name)?;
            // Oldest first; creation times are RFC 3339 in UTC, so they sort as text.
            let newest = all
                .iter()
                .max_by(|a, b| {
                    let t = |v: &Value| v["creation_time"].as_str().unwrap_or("").to_string();
                    t(a.1).cmp(&t(b.1))
                })
                .map(|(name, _)| name.clone())
                .ok_or_else(|| CliError::Refused {
                    status: 404,
                    message: format!("service {} has no jobs", args.name),
                })?;
            eprintln!("job {newest}");
            newest
        }
    };
    let log = fetch_log(&client, &args.name, &job, args.timestamps)?;
    if args.conn.json {
        return print_json(&serde_json::json!({"job_name": job, "log": log}));
    }
    print!("{log}");
    Ok(())
}

/// A listed job's status.
fn status_of(job: &Value) -> Option<JobStatus> {
    job.get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

/// Polls the job's status until it is Succeeded or Failed; returns that status.
pub fn wait_for(
    client: &Client,
    service: &str,
    job: &str,
    first_delay: Duration,
) -> Result<JobStatus, CliError> {
    let mut delay = first_delay;
    let started = Instant::now();
    loop {
        let all = list_all(client, service)?;
        let status = all
            .get(job)
            .and_then(status_of)
            .ok_or_else(|| CliError::Refused {
                status: 404,
                message: format!("job {job} is no longer listed (deleted?)"),
            })?;
        if status.is_finished() {
            return Ok(status);
        }
        std::thread::sleep(delay);
        delay = next_delay(delay, started);
    }
}

/// The next polling delay: quick answers for quick jobs, and no hammering of the server for
/// long ones.
fn next_delay(delay: Duration, started: Instant) -> Duration {
    (delay * 2).min(if started.elapsed() < Duration::from_secs(10) {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    })
}

/// Downloads a job's outputs (one zip) into `dir`.
pub fn download_outputs(
    client: &Client,
    service: &str,
    job: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    let bytes = client
        .send_ok(client.admin(
            Method::GET,
            client.url(&["system", "outputs", service, job], &[("format", "zip")]),
        ))?
        .bytes()
        .map_err(|e| CliError::Usage(format!("reading the outputs: {e}")))?;
    unzip(&bytes, dir)
}

/// `oscar-wasm outputs NAME JOB [--output DIR]`: lists a job's output files or downloads them.
pub fn outputs(args: OutputsArgs) -> Result<(), CliError> {
    let client = Client::connect(&args.conn)?;
    if let Some(dir) = &args.output {
        let written = download_outputs(&client, &args.name, &args.job, dir)?;
        if args.conn.json {
            let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            return print_json(&paths);
        }
        eprintln!("wrote {} files into {}", written.len(), dir.display());
        return Ok(());
    }
    let files: Vec<Value> = client
        .send_ok(client.admin(
            Method::GET,
            client.url(&["system", "outputs", &args.name, &args.job], &[]),
        ))?
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer: {e}")))?;
    if args.conn.json {
        return print_json(&files);
    }
    let rows = files
        .iter()
        .map(|f| {
            vec![
                f["path"].as_str().unwrap_or("").to_string(),
                f["size"].as_u64().map_or_else(String::new, size),
            ]
        })
        .collect();
    print!("{}", table(&["PATH", "SIZE"], rows));
    Ok(())
}
