//! The Kubernetes Job that runs one invocation of an image service: the user's image runs
//! oscar-wasm's supervisor (copied in by an init container into a shared `emptyDir`), which
//! fetches the input from this server, runs the service's script with /bin/sh under OSCAR's
//! contract, and posts the output files back. No shared storage is needed.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Where the init container puts the supervisor, inside every container of the pod.
pub const SUPERVISOR_PATH: &str = "/oscar-wasm/bin/oscar-wasm-supervisor";
/// Where the supervisor binary is in the supervisor image.
pub const SUPERVISOR_IN_IMAGE: &str = "/oscar-wasm-supervisor";
/// Label naming the service.
pub const SERVICE_LABEL: &str = "oscar-wasm.io/service";
/// Label naming the invocation.
pub const INVOCATION_LABEL: &str = "oscar-wasm.io/invocation";

/// Cluster-wide settings of image services.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Namespace of the Jobs.
    pub namespace: String,
    /// The image that holds the supervisor binary at [`SUPERVISOR_IN_IMAGE`].
    pub supervisor_image: String,
    /// Seconds a finished asynchronous Job is kept before Kubernetes removes it.
    pub ttl_after_finished: i32,
}

/// What one invocation's Job is made of.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The service.
    pub service: &'a str,
    /// The invocation's id (also the Job's name suffix).
    pub invocation: &'a str,
    /// The user's image.
    pub image: &'a str,
    /// `memory` of the definition (a Kubernetes quantity), if any.
    pub memory: Option<&'a str>,
    /// `cpu` of the definition, if any.
    pub cpu: Option<&'a str>,
    /// The service's variables.
    pub env: &'a [(String, String)],
    /// The invocation's deadline, in seconds.
    pub timeout_secs: i64,
    /// Where the supervisor reaches this server for this invocation
    /// (`<callback>/kube/invocations/<id>`).
    pub callback: &'a str,
    /// The invocation's one-time token.
    pub token: &'a str,
    /// Asynchronous (kept `ttl_after_finished` seconds) or synchronous (deleted at once by the
    /// runtime).
    pub asynchronous: bool,
}

/// The Job's name: `<service>-<invocation>`, within Kubernetes's 63 characters.
pub fn job_name(service: &str, invocation: &str) -> String {
    let mut name = format!("{service}-{invocation}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Builds the Job.
pub fn job(request: &JobRequest<'_>, settings: &JobSettings) -> Job {
    let labels = labels(request);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(request.service, request.invocation)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // One try: a failed script is the invocation's answer, as in OSCAR.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(request.timeout_secs.max(1)),
            ttl_seconds_after_finished: request.asynchronous.then_some(settings.ttl_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod(request, settings)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The labels that tie the Job and its pod to the service and the invocation.
fn labels(request: &JobRequest<'_>) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/managed-by", "oscar-wasm"),
        (SERVICE_LABEL, request.service),
        (INVOCATION_LABEL, request.invocation),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The pod: an init container copies the supervisor into a shared folder, and the user's
/// image runs it.
fn pod(request: &JobRequest<'_>, settings: &JobSettings) -> PodSpec {
    let mount = VolumeMount {
        name: "oscar-wasm-bin".into(),
        mount_path: "/oscar-wasm/bin".into(),
        ..Default::default()
    };
    PodSpec {
        restart_policy: Some("Never".into()),
        volumes: Some(vec![Volume {
            name: "oscar-wasm-bin".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }]),
        init_containers: Some(vec![Container {
            name: "oscar-wasm-supervisor".into(),
            image: Some(settings.supervisor_image.clone()),
            // The supervisor copies itself: its image holds nothing else, not even `cp`.
            command: Some(vec![
                SUPERVISOR_IN_IMAGE.into(),
                "--install".into(),
                SUPERVISOR_PATH.into(),
            ]),
            volume_mounts: Some(vec![mount.clone()]),
            ..Default::default()
        }]),
        containers: vec![Container {
            name: "service".into(),
            image: Some(request.image.to_string()),
            // OSCAR's rule for asynchronous invocations: a tag is pulled again, so a pushed
            // fix reaches the next job.
            image_pull_policy: request.asynchronous.then(|| "Always".to_string()),
            command: Some(vec![SUPERVISOR_PATH.into()]),
            env: Some(environment(request)),
            resources: resources(request),
            volume_mounts: Some(vec![mount]),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The service's variables, then where and how the supervisor reaches the runtime.
fn environment(request: &JobRequest<'_>) -> Vec<EnvVar> {
    let variable = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    };
    request
        .env
        .iter()
        .map(|(name, value)| variable(name, value))
        .chain([
            variable("OSCAR_WASM_CALLBACK", request.callback),
            variable("OSCAR_WASM_INVOCATION_TOKEN", request.token),
        ])
        .collect()
}

/// `memory` and `cpu` as both request and limit, as OSCAR sets them; none when neither is set.
fn resources(request: &JobRequest<'_>) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    if let Some(memory) = request.memory {
        limits.insert("memory".to_string(), Quantity(memory.to_string()));
    }
    if let Some(cpu) = request.cpu {
        limits.insert("cpu".to_string(), Quantity(cpu.to_string()));
    }
    (!limits.is_empty()).then(|| ResourceRequirements {
        requests: Some(limits.clone()),
        limits: Some(limits),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_carries_the_contract() {
        let settings = JobSettings {
            namespace: "oscar-svc".into(),
            supervisor_image: "ghcr.io/example/oscar-wasm-supervisor:0.1".into(),
            ttl_after_finished: 600,
        };
        let env = vec![("SIZE".to_string(), "64".to_string())];
        let request = JobRequest {
            service: "grayify",
            invocation: "0123abcd",
            image: "ghcr.io/example/imagemagick",
            memory: Some("256Mi"),
            cpu: Some("0.5"),
            env: &env,
            timeout_secs: 60,
            callback: "http://oscar-wasm:8080/kube/invocations/0123abcd",
            token: "t0k",
            asynchronous: true,
        };
        let value = serde_json::to_value(job(&request, &settings)).unwrap();
        assert_eq!(value["metadata"]["name"], "grayify-0123abcd");
        assert_eq!(value["metadata"]["namespace"], "oscar-svc");
        assert_eq!(value["metadata"]["labels"][SERVICE_LABEL], "grayify");
        let spec = &value["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["activeDeadlineSeconds"], 60);
        assert_eq!(spec["ttlSecondsAfterFinished"], 600);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["initContainers"][0]["image"], settings.supervisor_image);
        let main = &pod["containers"][0];
        assert_eq!(main["image"], "ghcr.io/example/imagemagick");
        assert_eq!(main["imagePullPolicy"], "Always");
        assert_eq!(main["command"][0], SUPERVISOR_PATH);
        assert_eq!(main["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(main["resources"]["requests"]["cpu"], "0.5");
        let env = main["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "SIZE" && e["value"] == "64")
        );
        assert!(
            env.iter()
                .any(|e| e["name"] == "OSCAR_WASM_INVOCATION_TOKEN")
        );
        // A synchronous Job is deleted by the runtime, not by a TTL.
        let sync = JobRequest {
            asynchronous: false,
            ..request
        };
        let value = serde_json::to_value(job(&sync, &settings)).unwrap();
        assert!(value["spec"].get("ttlSecondsAfterFinished").is_none());
        let main = &value["spec"]["template"]["spec"]["containers"][0];
        assert!(main.get("imagePullPolicy").is_none());
    }
}
