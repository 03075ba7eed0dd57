//! Image services, run as OSCAR runs them: one Kubernetes Job per invocation, through the
//! Kubernetes API (kube-rs). Configured from KUBECONFIG or the in-cluster service account, and
//! enabled only when the API server answers.
//!
//! An invocation: the input and script wait here under a one-time token; the Job is created
//! ([`manifest`]); the supervisor in the pod fetches them from `/kube/invocations/<id>`, runs
//! the script and posts the outputs back; the runtime watches the Job to its end (within the
//! service's timeout), reads the pod's log, and deletes a synchronous call's Job. The answer
//! follows the same rules as a wasm service's.

pub mod exposed;
pub mod manifest;

use crate::executor::invocation::{Completed, Exit, Meters, files_bytes};
use crate::faas::{LogLevel, LogLine, OutputFile};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use manifest::{JobRequest, JobSettings};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Settings of the Kubernetes executor.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Job settings (namespace, supervisor image, TTL).
    pub jobs: JobSettings,
    /// This server's URL as pods reach it.
    pub callback_url: String,
}

/// A failure of the executor (not of the user's script).
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The Kubernetes API refused or failed.
    #[error("Kubernetes API, {action}: {source}")]
    Api {
        /// What was being done (`creating Job x`).
        action: String,
        /// The API's error.
        source: kube::Error,
    },
}

impl KubeError {
    fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Api { action, source }
    }
}

/// One invocation of an image service.
pub struct Invocation<'a> {
    /// The user's image.
    pub image: &'a str,
    /// The script it runs.
    pub script: &'a str,
    /// What the definition sets on the pod.
    pub pod: &'a manifest::PodSettings,
    /// The input file's name.
    pub input_name: String,
    /// The input file's bytes.
    pub input: Vec<u8>,
    /// Variables added for this invocation (a storage event's).
    pub extra_env: Vec<(String, String)>,
    /// The service's timeout.
    pub timeout: Duration,
    /// A job (its Job kept until its TTL) rather than a synchronous call.
    pub asynchronous: bool,
}

pub use oscar_wasm_supervisor::{PodResult, ResultFile};

/// An invocation waiting for its pod.
struct Pending {
    token: String,
    input_name: String,
    input: Vec<u8>,
    script: String,
    result: Option<oneshot::Sender<PodResult>>,
}

/// The executor: a Kubernetes client and the invocations in flight.
pub struct Kube {
    client: kube::Client,
    settings: KubeSettings,
    pending: Mutex<HashMap<String, Pending>>,
}

/// The input a pod's supervisor fetches.
pub struct PodInput {
    /// The input file's name.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Kube {
    /// Connects with KUBECONFIG or the in-cluster service account; `None` (with the reason)
    /// when no cluster answers.
    pub async fn connect(settings: KubeSettings) -> Result<Self, String> {
        // Already installed is fine: any provider will do for the API server's TLS.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
            .await
            .map_err(|_| "the Kubernetes API server did not answer within 10 s".to_string())?
            .map_err(|e| format!("the Kubernetes API server did not answer: {e}"))?;
        Ok(Self {
            client,
            settings,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The Jobs' namespace.
    pub fn namespace(&self) -> &str {
        &self.settings.jobs.namespace
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The input of invocation `id`, for the holder of its token.
    pub fn input(&self, id: &str, token: &str) -> Option<PodInput> {
        let pending = self.pending();
        let p = pending.get(id)?;
        crate::auth::secrets_equal(p.token.as_bytes(), token.as_bytes()).then(|| PodInput {
            name: p.input_name.clone(),
            bytes: p.input.clone(),
        })
    }

    /// The script of invocation `id`, for the holder of its token.
    pub fn script(&self, id: &str, token: &str) -> Option<String> {
        let pending = self.pending();
        let p = pending.get(id)?;
        crate::auth::secrets_equal(p.token.as_bytes(), token.as_bytes()).then(|| p.script.clone())
    }

    /// Whether invocation `id` waits for a result from the holder of `token`.
    pub fn expects_result(&self, id: &str, token: &str) -> bool {
        self.pending().get(id).is_some_and(|p| {
            p.result.is_some() && crate::auth::secrets_equal(p.token.as_bytes(), token.as_bytes())
        })
    }

    /// Takes invocation `id`'s result; the token is spent (`false` when it is wrong or used).
    pub fn deliver(&self, id: &str, token: &str, result: PodResult) -> bool {
        let mut pending = self.pending();
        let Some(p) = pending.get_mut(id) else {
            return false;
        };
        if !crate::auth::secrets_equal(p.token.as_bytes(), token.as_bytes()) {
            return false;
        }
        match p.result.take() {
            Some(sender) => sender.send(result).is_ok(),
            None => false,
        }
    }

    /// Runs one invocation of an image service as a Job and waits for its end.
    pub async fn run(
        &self,
        service: &crate::service::Service,
        mut invocation: Invocation<'_>,
    ) -> Result<Completed, KubeError> {
        let started = Instant::now();
        let input_len = u64::try_from(invocation.input.len()).unwrap_or(u64::MAX);
        let (timeout, asynchronous, image) = (
            invocation.timeout,
            invocation.asynchronous,
            invocation.image,
        );
        let registered = self.register(&mut invocation);
        let _forget = Forget(self, registered.id.clone());
        let name = manifest::job_name(&service.spec.name, &registered.id);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), self.namespace());
        let mut log = vec![LogLine::now(
            LogLevel::Info,
            format!(
                "Running service {} (image {image}) as Kubernetes Job {}/{name}",
                service.spec.name,
                self.namespace()
            ),
        )];
        let (job, left_off) = self.manifest(service, invocation, &registered);
        if !left_off.is_empty() {
            log.push(LogLine::now(
                LogLevel::Warning,
                format!(
                    "Left off the Job, since Kubernetes refuses them: {}",
                    left_off.join(", ")
                ),
            ));
        }
        jobs.create(&PostParams::default(), &job)
            .await
            .map_err(KubeError::api(format!("creating Job {name}")))?;

        let finished = match tokio::time::timeout(timeout, self.watch_to_end(&jobs, &name)).await {
            Ok(Ok(succeeded)) => Some(succeeded),
            Ok(Err(e)) => {
                self.delete_logged(&jobs, &name, &mut log).await;
                return Err(e);
            }
            Err(_) => None,
        };
        let pod_log = self.pod_log(&name).await;
        if !asynchronous || finished.is_none() {
            self.delete_logged(&jobs, &name, &mut log).await;
        }
        // The supervisor posts before it exits, so a finished Job's result is here or about to
        // be; a timed-out one has none to wait for.
        let result = match finished {
            Some(_) => tokio::time::timeout(Duration::from_secs(5), registered.result)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let elapsed = started.elapsed();
        let (exit, files, output) = conclude(finished, result, pod_log, timeout, elapsed, &mut log);
        // The container's CPU time and memory are the cluster's to measure, not this server's.
        let meters = Meters {
            wall: elapsed,
            bytes_in: input_len,
            bytes_out: files_bytes(&files),
            ..Meters::default()
        };
        Ok(Completed {
            exit,
            files,
            output,
            log,
            meters,
        })
    }

    /// Puts the invocation in the table its pod's supervisor reads, under a new id and token;
    /// its input moves there.
    fn register(&self, invocation: &mut Invocation<'_>) -> Registered {
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let token = hex::encode(rand::random::<[u8; 24]>());
        let (sender, receiver) = oneshot::channel();
        self.pending().insert(
            id.clone(),
            Pending {
                token: token.clone(),
                input_name: std::mem::take(&mut invocation.input_name),
                input: std::mem::take(&mut invocation.input),
                script: invocation.script.to_string(),
                result: Some(sender),
            },
        );
        Registered {
            id,
            token,
            result: receiver,
        }
    }

    /// The Job that runs the invocation.
    fn manifest(
        &self,
        service: &crate::service::Service,
        invocation: Invocation<'_>,
        registered: &Registered,
    ) -> (Job, Vec<String>) {
        let callback = format!(
            "{}/kube/invocations/{}",
            self.settings.callback_url.trim_end_matches('/'),
            registered.id
        );
        let text = |key: &str| service.definition.get(key).and_then(|v| v.as_str());
        // The storage variables of a bucket-triggered invocation join the service's own, and
        // so does the trace context (W3C's TRACEPARENT, as OpenTelemetry's SDKs read it from
        // the environment) when traces are exported: the pod's own spans join the request's.
        let env: Vec<(String, String)> = service
            .spec
            .env
            .iter()
            .cloned()
            .chain(invocation.extra_env)
            .chain(crate::telemetry::current_traceparent().map(|t| ("TRACEPARENT".into(), t)))
            .collect();
        let request = JobRequest {
            service: &service.spec.name,
            invocation: &registered.id,
            image: invocation.image,
            memory: text("memory"),
            cpu: text("cpu"),
            env: &env,
            pod: invocation.pod,
            timeout_secs: invocation.timeout.as_secs().max(1) as i64,
            callback: &callback,
            token: &registered.token,
            asynchronous: invocation.asynchronous,
        };
        manifest::job(&request, &self.settings.jobs)
    }

    /// Deletes Job `name`; a failure becomes a warning in the invocation's log.
    async fn delete_logged(&self, jobs: &Api<Job>, name: &str, log: &mut Vec<LogLine>) {
        if let Err(e) = self.delete(jobs, name).await {
            tracing::warn!(job = name, error = %e, "could not delete a Job");
            log.push(LogLine::now(LogLevel::Warning, e.to_string()));
        }
    }

    /// Watches Job `name` until it is Complete (`true`) or Failed (`false`).
    async fn watch_to_end(&self, jobs: &Api<Job>, name: &str) -> Result<bool, KubeError> {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        loop {
            let mut stream = jobs
                .watch(&params, "0")
                .await
                .map_err(KubeError::api(format!("watching Job {name}")))?
                .boxed();
            while let Some(event) = stream
                .try_next()
                .await
                .map_err(KubeError::api(format!("watching Job {name}")))?
            {
                if let WatchEvent::Added(job) | WatchEvent::Modified(job) = event
                    && let Some(done) = finished(&job)
                {
                    return Ok(done);
                }
            }
        }
    }

    /// The log of the Job's pod (empty when there is none yet).
    async fn pod_log(&self, job: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace());
        let Ok(list) = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
        else {
            return String::new();
        };
        let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) else {
            return String::new();
        };
        pods.logs(&name, &LogParams::default())
            .await
            .unwrap_or_default()
    }

    async fn delete(&self, jobs: &Api<Job>, name: &str) -> Result<(), KubeError> {
        jobs.delete(name, &DeleteParams::background())
            .await
            .map(|_| ())
            .map_err(KubeError::api(format!("deleting Job {name}")))
    }

    /// Deletes every Job of a service (its asynchronous ones, when it is deleted).
    pub async fn delete_service_jobs(&self, service: &str) -> Result<(), KubeError> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), self.namespace());
        jobs.delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(&format!("{}={service}", manifest::SERVICE_LABEL)),
        )
        .await
        .map(|_| ())
        .map_err(KubeError::api(format!("deleting the Jobs of {service}")))
    }
}

/// An invocation in the pending table.
struct Registered {
    id: String,
    token: String,
    result: oneshot::Receiver<PodResult>,
}

/// How an invocation ended, from whether its Job finished (`None`: timed out) and what its
/// supervisor reported.
fn conclude(
    finished: Option<bool>,
    result: Option<PodResult>,
    pod_log: String,
    timeout: Duration,
    elapsed: Duration,
    log: &mut Vec<LogLine>,
) -> (Exit, Vec<OutputFile>, Vec<u8>) {
    match (finished, result) {
        (None, _) => {
            log.push(LogLine::now(
                LogLevel::Error,
                format!(
                    "Job stopped: timeout of {:.3} s reached",
                    timeout.as_secs_f64()
                ),
            ));
            (Exit::Timeout, Vec::new(), pod_log.into_bytes())
        }
        (Some(_), Some(result)) => {
            let files = decode_files(&result.files);
            let (exit, level) = if result.exit_code == 0 {
                (Exit::Success, LogLevel::Info)
            } else {
                (Exit::Status(result.exit_code), LogLevel::Error)
            };
            log.push(LogLine::now(
                level,
                format!(
                    "Script exited with status {} after {:.3} s; {} output file(s)",
                    result.exit_code,
                    elapsed.as_secs_f64(),
                    files.len()
                ),
            ));
            (exit, files, result.output.into_bytes())
        }
        (Some(_), None) => {
            log.push(LogLine::now(
                LogLevel::Error,
                "The Job ended without its supervisor reporting (image pull, eviction?)",
            ));
            (Exit::Status(1), Vec::new(), pod_log.into_bytes())
        }
    }
}

/// Removes an invocation from the pending table when its run ends, however it ends.
struct Forget<'a>(&'a Kube, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.pending().remove(&self.1);
    }
}

/// `Some(true)` when the Job is Complete, `Some(false)` when Failed, `None` while it runs.
fn finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions {
        if c.status == "True" {
            match c.type_.as_str() {
                "Complete" | "SuccessCriteriaMet" => return Some(true),
                "Failed" | "FailureTarget" => return Some(false),
                _ => {}
            }
        }
    }
    None
}

fn decode_files(files: &[ResultFile]) -> Vec<OutputFile> {
    use base64::Engine as _;
    files
        .iter()
        // Names come from the pod: only plain relative paths become output entries.
        .filter(|f| {
            !f.path.is_empty()
                && std::path::Path::new(&f.path)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .filter_map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&f.base64)
                .ok()?;
            Some(OutputFile {
                path: f.path.clone(),
                bytes,
            })
        })
        .collect()
}
