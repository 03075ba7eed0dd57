//! The job workers: each takes the next job from the queue and runs it to completion.

use super::record::{Status, now_ms, to_ms};
use crate::app::App;
use crate::invoke::{Exit, Input, Kind, Request};
use crate::supervisor::LogLevel;
use std::sync::Arc;
use tokio::sync::Notify;

/// Starts the job workers of `app`. Call once, inside the server's runtime.
pub fn start_workers(app: &Arc<App>) {
    for _ in 0..app.jobs.workers {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                let next = app.jobs.receiver.lock().await.recv().await;
                let Some((service, job)) = next else { break };
                run_job(&app, &service, &job).await;
            }
        });
    }
}

async fn run_job(app: &Arc<App>, service: &str, job: &str) {
    let jobs = &app.jobs;
    let Some(mut record) = jobs.store.get(service, job) else {
        return;
    };
    if record.status != Status::Pending {
        return;
    }
    let fail = |record: &mut super::record::JobRecord, message: String| {
        let _ = jobs.store.append_log(service, job, &[(now_ms(), message)]);
        record.status = Status::Failed;
        record.finished_ms = Some(now_ms());
        record.outcome = Some("error".into());
        let _ = jobs.store.update(record);
    };
    let Some(deployed) = app.registry.get(service) else {
        fail(&mut record, format!("Service {service} no longer exists"));
        return;
    };
    record.status = Status::Running;
    record.started_ms = Some(now_ms());
    record.attempts += 1;
    if !matches!(jobs.store.update(&record), Ok(true)) {
        return;
    }
    jobs.refresh_gauge();

    // The input: the object a bucket event names (downloaded now), else the stored body.
    let input = match &record.trigger {
        Some(event) => {
            let spec = &deployed.service.spec.storage;
            let provider = match app.storage.source_for(spec, event) {
                Ok(p) => p.clone(),
                Err(e) => {
                    fail(&mut record, format!("The job's object cannot be read: {e}"));
                    jobs.refresh_gauge();
                    return;
                }
            };
            match app.storage.stage(&provider, event).await {
                Ok((input, size)) => {
                    let _ = jobs.store.append_log(
                        service,
                        job,
                        &[(
                            now_ms(),
                            format!(
                                "Downloaded s3://{}/{} from {} ({size} bytes)",
                                event.bucket, event.key, provider.reference
                            ),
                        )],
                    );
                    input
                }
                Err(e) => {
                    fail(&mut record, format!("Input download failed: {e}"));
                    jobs.refresh_gauge();
                    return;
                }
            }
        }
        None => match tokio::fs::read(jobs.store.input_path(service, job)).await {
            Ok(bytes) => Input::Body(bytes),
            Err(e) => {
                fail(
                    &mut record,
                    format!("The job's input could not be read: {e}"),
                );
                jobs.refresh_gauge();
                return;
            }
        },
    };

    let key = (service.to_string(), job.to_string());
    let cancel = Arc::new(Notify::new());
    jobs.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), cancel.clone());
    let record_level = deployed.service.spec.log_level;
    let service_handle = deployed.clone();
    let storage_spec = &service_handle.service.spec.storage;
    let request = Request {
        kind: Kind::Job,
        id: job.to_string(),
    };
    let result = tokio::select! {
        result = app.executor.run(deployed, input, request) => Some(result),
        // Deleted while running: dropping the invocation stops the guest.
        () = cancel.notified() => None,
    };
    jobs.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    let Some(result) = result else { return };

    // Outputs go to the service's output buckets after a successful run, as in OSCAR.
    let mut upload_lines: Vec<(u64, String)> = Vec::new();
    let mut upload_failed = false;
    if let Ok(done) = &result
        && done.exit == Exit::Success
        && !storage_spec.outputs.is_empty()
    {
        match app.storage.upload_outputs(storage_spec, &done.files).await {
            Ok(lines) => upload_lines.extend(lines.into_iter().map(|l| (now_ms(), l))),
            Err(e) => {
                upload_lines.push((now_ms(), format!("Output upload failed: {e}")));
                upload_failed = true;
            }
        }
    }

    let app = app.clone();
    let (service, job) = (service.to_string(), job.to_string());
    // Writing outputs and logs is blocking file I/O.
    let _ = tokio::task::spawn_blocking(move || {
        let jobs = &app.jobs;
        let finished = now_ms();
        match result {
            Err(e) => {
                let _ = jobs.store.append_log(
                    &service,
                    &job,
                    &[(finished, format!("The job could not run: {e}"))],
                );
                record.status = Status::Failed;
                record.outcome = Some("error".into());
            }
            Ok(done) => {
                // The service's log level filters the runtime's lines, as in OSCAR; errors always show.
                let level = record_level.min(LogLevel::Error);
                let mut lines: Vec<(u64, String)> = done
                    .log
                    .iter()
                    .filter(|l| l.level >= level)
                    .map(|l| (to_ms(l.time), l.format()))
                    .collect();
                if !done.output.is_empty() {
                    lines.push((
                        finished,
                        String::from_utf8_lossy(&done.output)
                            .trim_end_matches('\n')
                            .to_string(),
                    ));
                }
                match jobs.store.write_outputs(&service, &job, &done.files) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        lines.push((finished, format!("Output files could not be kept: {e}")))
                    }
                }
                lines.extend(upload_lines);
                let _ = jobs.store.append_log(&service, &job, &lines);
                record.status = if done.exit == Exit::Success && !upload_failed {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                record.outcome = Some(if upload_failed {
                    "upload".to_string()
                } else {
                    done.exit.label().to_string()
                });
            }
        }
        record.finished_ms = Some(finished);
        record.bytes = jobs.store.measure(&service, &job);
        let _ = jobs.store.update(&record);
        jobs.store.enforce_retention(&service);
    })
    .await;
}
