//! The job workers: each takes the next job from the queue and runs it to completion.

use super::record::{Status, now_ms, to_ms};
use crate::app::App;
use crate::invoke::{Exit, Kind, Request};
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
    let input_path = jobs.store.input_path(service, job);
    let input = match tokio::fs::read(&input_path).await {
        Ok(input) => input,
        Err(e) => {
            fail(
                &mut record,
                format!("The job's input could not be read: {e}"),
            );
            return;
        }
    };

    record.status = Status::Running;
    record.started_ms = Some(now_ms());
    record.attempts += 1;
    if !matches!(jobs.store.update(&record), Ok(true)) {
        return;
    }
    jobs.refresh_gauge();

    let key = (service.to_string(), job.to_string());
    let cancel = Arc::new(Notify::new());
    jobs.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), cancel.clone());
    let record_level = deployed.service.spec.log_level;
    let request = Request {
        kind: Kind::Job,
        id: job.to_string(),
    };
    let result = tokio::select! {
        result = app.invoker.invoke(deployed, input, request) => Some(result),
        // Deleted while running: dropping the invocation stops the guest.
        () = cancel.notified() => None,
    };
    jobs.running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    let Some(result) = result else { return };

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
                let _ = jobs.store.append_log(&service, &job, &lines);
                record.status = if done.exit == Exit::Success {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                record.outcome = Some(done.exit.label().to_string());
            }
        }
        record.finished_ms = Some(finished);
        record.bytes = jobs.store.measure(&service, &job);
        let _ = jobs.store.update(&record);
        jobs.store.enforce_retention(&service);
    })
    .await;
}
