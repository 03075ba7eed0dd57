//! The Kubernetes Job that runs one invocation of an image service: the user's image runs
//! oscar-wasm's supervisor (copied in by an init container into a shared `emptyDir`), which
//! fetches the input from this server, runs the service's script with /bin/sh under OSCAR's
//! contract, and posts the output files back. No shared storage is needed.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference, PodSpec, PodTemplateSpec,
    ResourceRequirements, Volume, VolumeMount,
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

/// The definition's settings that OSCAR puts on an image service's Job and pod
/// (pkg/types/service.go `ToPodSpec`, pkg/handlers/job.go).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSettings {
    /// `image_pull_secrets`: names of Secrets in the Jobs' namespace, for private registries.
    pub image_pull_secrets: Vec<String>,
    /// `labels`, on the Job and its pod.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `annotations`, on the Job and its pod.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `enable_gpu`: a limit of one `nvidia.com/gpu`.
    pub gpu: bool,
    /// `ephemeral_storage_request`: the container's `ephemeral-storage` request.
    pub ephemeral_storage: Option<String>,
}

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
    /// The definition's pull secrets, labels, annotations, GPU and ephemeral storage.
    pub pod: &'a PodSettings,
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

/// Builds the Job; also names the definition's labels and annotations that Kubernetes would
/// refuse (and so refuse the whole Job), which are left off.
pub fn job(request: &JobRequest<'_>, settings: &JobSettings) -> (Job, Vec<String>) {
    let (labels, mut left_off) = labels(request);
    let (annotations, more) = annotations(request);
    left_off.extend(more);
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name(request.service, request.invocation)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: annotations.clone(),
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
                    annotations,
                    ..Default::default()
                }),
                spec: Some(pod(request, settings)),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    (job, left_off)
}

/// The definition's labels, as OSCAR puts them on the Job and its pod, then the labels that
/// tie both to the service and the invocation (which win); and the labels left off.
fn labels(request: &JobRequest<'_>) -> (BTreeMap<String, String>, Vec<String>) {
    let (mut labels, left_off) = definition_labels(request.pod);
    for (key, value) in [
        ("app.kubernetes.io/managed-by", "oscar-wasm"),
        (SERVICE_LABEL, request.service),
        (INVOCATION_LABEL, request.invocation),
    ] {
        labels.insert(key.to_string(), value.to_string());
    }
    (labels, left_off)
}

/// The definition's labels that Kubernetes takes, and those left off (described).
pub(super) fn definition_labels(pod: &PodSettings) -> (BTreeMap<String, String>, Vec<String>) {
    let mut left_off = Vec::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &pod.labels {
        if is_qualified_name(key) && is_label_value(value) {
            labels.insert(key.clone(), value.clone());
        } else {
            left_off.push(format!("label {key}={value}"));
        }
    }
    (labels, left_off)
}

/// The definition's annotations (none: `None`), and those left off.
fn annotations(request: &JobRequest<'_>) -> (Option<BTreeMap<String, String>>, Vec<String>) {
    let (kept, left_off): (Vec<_>, Vec<_>) = request
        .pod
        .annotations
        .iter()
        .partition(|(key, _)| is_qualified_name(key));
    let kept: BTreeMap<String, String> = kept
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (
        (!kept.is_empty()).then_some(kept),
        left_off
            .into_iter()
            .map(|(k, _)| format!("annotation {k}"))
            .collect(),
    )
}

/// A label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        (1..=253).contains(&p.len())
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, starting and ending
/// with a letter or digit.
fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && edge(value.chars().next())
            && edge(value.chars().last()))
}

/// The pod: an init container copies the supervisor into a shared folder, and the user's
/// image runs it.
fn pod(request: &JobRequest<'_>, settings: &JobSettings) -> PodSpec {
    let mount = VolumeMount {
        name: "oscar-wasm-bin".into(),
        mount_path: "/oscar-wasm/bin".into(),
        ..Default::default()
    };
    let pull_secrets = &request.pod.image_pull_secrets;
    PodSpec {
        restart_policy: Some("Never".into()),
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
            pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
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
            resources: resources(request.memory, request.cpu, request.pod),
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

/// `memory` and `cpu` as both request and limit (OSCAR sets the limits, which Kubernetes
/// copies to requests), one `nvidia.com/gpu` when `enable_gpu` (a limit, as OSCAR sets it;
/// OSCAR adds no node selection for it, the device plugin's resource places the pod), and the
/// `ephemeral-storage` request; none when nothing is set.
pub(super) fn resources(
    memory: Option<&str>,
    cpu: Option<&str>,
    pod: &PodSettings,
) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    if let Some(memory) = memory {
        limits.insert("memory".to_string(), Quantity(memory.to_string()));
    }
    if let Some(cpu) = cpu {
        limits.insert("cpu".to_string(), Quantity(cpu.to_string()));
    }
    let mut requests = limits.clone();
    if pod.gpu {
        limits.insert("nvidia.com/gpu".to_string(), Quantity("1".to_string()));
    }
    if let Some(storage) = &pod.ephemeral_storage {
        requests.insert("ephemeral-storage".to_string(), Quantity(storage.clone()));
    }
    (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
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
        let pod = PodSettings::default();
        let request = JobRequest {
            service: "grayify",
            invocation: "0123abcd",
            image: "ghcr.io/example/imagemagick",
            memory: Some("256Mi"),
            cpu: Some("0.5"),
            pod: &pod,
            env: &env,
            timeout_secs: 60,
            callback: "http://oscar-wasm:8080/kube/invocations/0123abcd",
            token: "t0k",
            asynchronous: true,
        };
        let value = serde_json::to_value(job(&request, &settings).0).unwrap();
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
        let value = serde_json::to_value(job(&sync, &settings).0).unwrap();
        assert!(value["spec"].get("ttlSecondsAfterFinished").is_none());
        let main = &value["spec"]["template"]["spec"]["containers"][0];
        assert!(main.get("imagePullPolicy").is_none());
        assert!(
            value["spec"]["template"]["spec"]
                .get("imagePullSecrets")
                .is_none()
        );
        assert!(main["resources"]["limits"].get("nvidia.com/gpu").is_none());
    }

    #[test]
    fn the_definitions_pod_settings_reach_the_job_and_its_pod() {
        let settings = JobSettings {
            namespace: "oscar-svc".into(),
            supervisor_image: "supervisor".into(),
            ttl_after_finished: 600,
        };
        let pod = PodSettings {
            image_pull_secrets: vec!["regcred".into()],
            labels: [
                ("team", "vision"),
                ("owner_name", "José"),
                (SERVICE_LABEL, "spoofed"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("example.org/note", "any text at all"), ("bad key!", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            gpu: true,
            ephemeral_storage: Some("2Gi".into()),
        };
        let request = JobRequest {
            service: "classify",
            invocation: "42",
            image: "ghcr.io/example/tf",
            memory: Some("1Gi"),
            cpu: None,
            pod: &pod,
            env: &[],
            timeout_secs: 60,
            callback: "http://x/kube/invocations/42",
            token: "t",
            asynchronous: true,
        };
        let (job, left_off) = job(&request, &settings);
        let value = serde_json::to_value(job).unwrap();
        for meta in [&value["metadata"], &value["spec"]["template"]["metadata"]] {
            assert_eq!(meta["labels"]["team"], "vision");
            assert_eq!(meta["labels"][SERVICE_LABEL], "classify", "ours win");
            assert!(meta["labels"].get("owner_name").is_none());
            assert_eq!(meta["annotations"]["example.org/note"], "any text at all");
        }
        assert_eq!(left_off, ["label owner_name=José", "annotation bad key!"]);
        let spec = &value["spec"]["template"]["spec"];
        assert_eq!(
            spec["imagePullSecrets"],
            serde_json::json!([{"name": "regcred"}])
        );
        let resources = &spec["containers"][0]["resources"];
        assert_eq!(resources["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(resources["limits"]["memory"], "1Gi");
        assert_eq!(resources["requests"]["ephemeral-storage"], "2Gi");
        assert!(resources["limits"].get("ephemeral-storage").is_none());
    }
}
