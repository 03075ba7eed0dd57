//! Image services with `expose`, deployed as OSCAR deploys them (pkg/resourcemanager's
//! exposed services): a Deployment `{name}-dlp` of `min_scale` replicas (at least one) running
//! the image with the service's script (`/bin/sh -c SCRIPT`), or the image's own command with
//! `expose.default_command`, listening on `api_port`; and a ClusterIP Service `{name}-svc`,
//! port 80 to `api_port`. Both are applied when the service is created or updated and deleted
//! with it. The exposed route forwards to the Service's cluster address (`api/exposed.rs`);
//! OSCAR's ingress and its basic-auth Secret are this server's own route and check.

use super::manifest::{PodSettings, SERVICE_LABEL};
use super::{Kube, KubeError};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, LocalObjectReference, PodSpec, PodTemplateSpec, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use std::collections::BTreeMap;

/// The Service's port, as OSCAR's (`servicePortNumber`).
pub const SERVICE_PORT: i32 = 80;
/// The label OSCAR selects an exposed service's pods by.
const APP_LABEL: &str = "app";

/// What an exposed image service is made of.
#[derive(Debug, Clone)]
pub struct ExposedImage<'a> {
    /// The service.
    pub service: &'a str,
    /// Its image.
    pub image: &'a str,
    /// Its script, run with /bin/sh unless `default_command`.
    pub script: &'a str,
    /// The port the container listens on.
    pub api_port: u16,
    /// Replicas (OSCAR's `min_scale`; at least one here, as there is no autoscaler from 0).
    pub replicas: u32,
    /// Run the image's own command instead of the script.
    pub default_command: bool,
    /// `memory` and `cpu` of the definition.
    pub memory: Option<&'a str>,
    /// `cpu` of the definition.
    pub cpu: Option<&'a str>,
    /// Pull secrets, labels, annotations, GPU, ephemeral storage.
    pub pod: &'a PodSettings,
    /// The service's variables.
    pub env: &'a [(String, String)],
}

/// `{name}-dlp`, OSCAR's name of an exposed service's Deployment.
pub fn deployment_name(service: &str) -> String {
    format!("{service}-dlp")
}

/// `{name}-svc`, OSCAR's name of its Service.
pub fn service_name(service: &str) -> String {
    format!("{service}-svc")
}

fn selector(service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(APP_LABEL.to_string(), format!("oscar-svc-{service}"))])
}

/// The Deployment.
pub fn deployment(spec: &ExposedImage<'_>, namespace: &str) -> Deployment {
    let (mut labels, _) = super::manifest::definition_labels(spec.pod);
    labels.extend(selector(spec.service));
    labels.insert(SERVICE_LABEL.to_string(), spec.service.to_string());
    let annotations = (!spec.pod.annotations.is_empty()).then(|| spec.pod.annotations.clone());
    let command = (!spec.default_command).then(|| {
        vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            spec.script.to_string(),
        ]
    });
    let container = Container {
        name: "service".into(),
        image: Some(spec.image.to_string()),
        command,
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(spec.api_port),
            ..Default::default()
        }]),
        env: Some(
            spec.env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: super::manifest::resources(spec.memory, spec.cpu, spec.pod),
        ..Default::default()
    };
    let pull_secrets = &spec.pod.image_pull_secrets;
    Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(spec.service)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: annotations.clone(),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.replicas.max(1)).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector(spec.service)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
                        pull_secrets
                            .iter()
                            .map(|name| LocalObjectReference { name: name.clone() })
                            .collect()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ClusterIP Service in front of the Deployment's pods.
pub fn service(spec: &ExposedImage<'_>, namespace: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(service_name(spec.service)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                SERVICE_LABEL.to_string(),
                spec.service.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(spec.service)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(i32::from(spec.api_port))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Kube {
    /// Creates or replaces the Deployment and the Service of an exposed image service.
    pub async fn apply_exposed(&self, spec: &ExposedImage<'_>) -> Result<(), KubeError> {
        let ns = self.namespace().to_string();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        create_or_replace(&deployments, "Deployment", deployment(spec, &ns), |_, _| {}).await?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        // The cluster address is the API server's to keep.
        let keep_address = |wanted: &mut Service, existing: Service| {
            if let (Some(spec), Some(old)) = (wanted.spec.as_mut(), existing.spec) {
                spec.cluster_ip = old.cluster_ip;
            }
        };
        create_or_replace(&services, "Service", service(spec, &ns), keep_address).await
    }

    /// Deletes them; what is already gone is fine.
    pub async fn delete_exposed(&self, service: &str) -> Result<(), KubeError> {
        let ns = self.namespace().to_string();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let services: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let name = deployment_name(service);
        gone(deployments.delete(&name, &DeleteParams::default()).await)
            .map_err(KubeError::api(format!("deleting Deployment {name}")))?;
        let name = service_name(service);
        gone(services.delete(&name, &DeleteParams::default()).await)
            .map_err(KubeError::api(format!("deleting Service {name}")))?;
        Ok(())
    }

    /// Where the Service answers inside the cluster: `host:port` of its cluster address.
    pub async fn exposed_address(&self, service: &str) -> Result<Option<String>, KubeError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), self.namespace());
        let name = service_name(service);
        let found = services
            .get_opt(&name)
            .await
            .map_err(KubeError::api(format!("reading Service {name}")))?;
        Ok(found.and_then(|s| s.spec).and_then(|spec| {
            let ip = spec
                .cluster_ip
                .filter(|ip| !ip.is_empty() && ip != "None")?;
            let port = spec.ports?.first()?.port;
            Some(if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            })
        }))
    }
}

/// Creates `wanted`, or replaces the object of its name (at its resource version, after
/// `keep` took what the cluster owns from it).
async fn create_or_replace<K>(
    api: &Api<K>,
    kind: &str,
    mut wanted: K,
    keep: impl FnOnce(&mut K, K),
) -> Result<(), KubeError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = wanted.meta().name.clone().unwrap_or_default();
    let existing = api
        .get_opt(&name)
        .await
        .map_err(KubeError::api(format!("reading {kind} {name}")))?;
    match existing {
        Some(existing) => {
            wanted.meta_mut().resource_version = existing.meta().resource_version.clone();
            keep(&mut wanted, existing);
            api.replace(&name, &PostParams::default(), &wanted)
                .await
                .map_err(KubeError::api(format!("replacing {kind} {name}")))?;
        }
        None => {
            api.create(&PostParams::default(), &wanted)
                .await
                .map_err(KubeError::api(format!("creating {kind} {name}")))?;
        }
    }
    Ok(())
}

/// A deletion's result, with "already gone" as success.
fn gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_and_service_are_oscars() {
        let pod = PodSettings {
            image_pull_secrets: vec!["regcred".into()],
            labels: BTreeMap::from([("team".into(), "bio".into())]),
            ..Default::default()
        };
        let env = vec![("MODEL".to_string(), "small".to_string())];
        let spec = ExposedImage {
            service: "web",
            image: "nginx:1",
            script: "exec nginx -g 'daemon off;'",
            api_port: 8080,
            replicas: 0,
            default_command: false,
            memory: Some("128Mi"),
            cpu: Some("0.5"),
            pod: &pod,
            env: &env,
        };
        let d = serde_json::to_value(deployment(&spec, "oscar-svc")).unwrap();
        assert_eq!(d["metadata"]["name"], "web-dlp");
        assert_eq!(d["spec"]["replicas"], 1, "at least one replica");
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "oscar-svc-web");
        let pod_spec = &d["spec"]["template"]["spec"];
        let c = &pod_spec["containers"][0];
        assert_eq!(c["image"], "nginx:1");
        assert_eq!(c["command"][2], "exec nginx -g 'daemon off;'");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["env"][0]["name"], "MODEL");
        assert_eq!(c["resources"]["limits"]["memory"], "128Mi");
        assert_eq!(pod_spec["imagePullSecrets"][0]["name"], "regcred");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"]["team"], "bio");
        let own = ExposedImage {
            default_command: true,
            replicas: 3,
            ..spec.clone()
        };
        let d = serde_json::to_value(deployment(&own, "oscar-svc")).unwrap();
        assert!(d["spec"]["template"]["spec"]["containers"][0]["command"].is_null());
        assert_eq!(d["spec"]["replicas"], 3);
        let s = serde_json::to_value(service(&spec, "oscar-svc")).unwrap();
        assert_eq!(s["metadata"]["name"], "web-svc");
        assert_eq!(s["spec"]["ports"][0]["port"], 80);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(s["spec"]["selector"]["app"], "oscar-svc-web");
    }
}
