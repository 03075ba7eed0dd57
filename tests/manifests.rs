//! The Kubernetes manifests in deploy/, read as Kubernetes reads them: every document parsed
//! strictly into its typed object (k8s-openapi; a field it does not know, or a value of the
//! wrong shape, fails the test instead of being dropped), then the invariants that matter
//! checked: probes on a route that reports readiness, resources bounded, the RBAC the server
//! needs and no more, and NATS reached where the NATS chart serves it.

mod common;

use common::repo_root;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Deserialize as _;
use serde_json::Value;
use std::collections::BTreeSet;

/// The YAML documents of `deploy/kubernetes/<file>`, as JSON values.
fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes").join(file)).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|value| !value.is_null())
        .collect()
}

/// `value` as `T`, refused when anything in it is not part of `T` (serialised back, the typed
/// object must say exactly what the file says).
fn strictly<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{file}: {} is not valid: {e}", value["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, value,
        "{file}: {} has fields Kubernetes does not know",
        value["kind"]
    );
    typed
}

/// Each document of `file` by kind, checked strictly.
struct Objects {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    accounts: Vec<ServiceAccount>,
    roles: Vec<Role>,
    bindings: Vec<RoleBinding>,
}

fn objects(file: &str) -> Objects {
    let mut out = Objects {
        deployments: vec![],
        services: vec![],
        accounts: vec![],
        roles: vec![],
        bindings: vec![],
    };
    for document in documents(file) {
        match document["kind"].as_str() {
            Some("Deployment") => out.deployments.push(strictly(file, &document)),
            Some("Service") => out.services.push(strictly(file, &document)),
            Some("ServiceAccount") => out.accounts.push(strictly(file, &document)),
            Some("Role") => out.roles.push(strictly(file, &document)),
            Some("RoleBinding") => out.bindings.push(strictly(file, &document)),
            other => panic!("{file}: an object of kind {other:?} this test does not check"),
        }
    }
    out
}

#[test]
fn the_server_deployment_is_probed_bounded_and_reaches_nats() {
    let file = "oscar-wasm.yaml";
    let objects = objects(file);
    let [deployment] = &objects.deployments[..] else {
        panic!("{file}: one Deployment expected");
    };
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let [container] = &pod.containers[..] else {
        panic!("{file}: one container expected");
    };
    let ports: Vec<&str> = container
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    for (what, probe) in [
        ("readiness", &container.readiness_probe),
        ("liveness", &container.liveness_probe),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{file}: no {what} probe over HTTP"));
        assert_eq!(get.path.as_deref(), Some("/health"), "{what}");
        let port = serde_json::to_value(&get.port).unwrap();
        assert!(
            port.as_str().is_some_and(|p| ports.contains(&p)),
            "{what} probe's port {port} is not a port of the container ({ports:?})"
        );
    }
    // The image scripts/build-images.sh pushes, run as it is built to run: its non-root user,
    // a read-only root (it writes only to its volumes), nothing more.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        container.image.as_deref(),
        Some(format!("ghcr.io/oscar-wasm/oscar-wasm:{version}").as_str()),
        "{file}: not the image scripts/build-images.sh --push ghcr.io/oscar-wasm names"
    );
    let security = container
        .security_context
        .as_ref()
        .expect("a securityContext");
    assert_eq!(security.run_as_non_root, Some(true), "{file}");
    assert_eq!(
        security.run_as_user,
        Some(65532),
        "{file}: the image's user"
    );
    assert_eq!(security.read_only_root_filesystem, Some(true), "{file}");
    assert_eq!(security.allow_privilege_escalation, Some(false), "{file}");
    let mounts: Vec<&str> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    let data_dir = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "OSCAR_WASM_DATA_DIR")
        .and_then(|e| e.value.as_deref());
    assert!(
        data_dir.is_some_and(|d| mounts.contains(&d)),
        "{file}: the data folder {data_dir:?} is not a volume ({mounts:?}), and the root is read-only"
    );
    let resources = container.resources.as_ref().unwrap();
    for (what, amounts) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        assert!(
            amounts.as_ref().is_some_and(|a| a.contains_key("memory")),
            "{file}: no memory {what}"
        );
    }
    // The NATS URL names the Service NATS's chart makes for its release ("nats", the README's
    // helm install), on the client port.
    let env: std::collections::BTreeMap<&str, Option<&str>> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        env.get("OSCAR_WASM_CLUSTER"),
        Some(&Some("nats://nats:4222"))
    );
    // The Service sends traffic to the Deployment's pods, on the port the probes use.
    let [service] = &objects.services[..] else {
        panic!("{file}: one Service expected");
    };
    let selector = service.spec.as_ref().unwrap().selector.as_ref().unwrap();
    let labels = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (key, value) in selector {
        assert_eq!(
            labels.get(key),
            Some(value),
            "the Service selects {key}={value}"
        );
    }
    // The NATS chart's values: a cluster of three with JetStream on volumes, so that the
    // servers' default of three replicas has three NATS servers to place them on.
    let values = &documents("nats-values.yaml")[0];
    assert_eq!(values["config"]["cluster"]["enabled"], true);
    assert_eq!(values["config"]["cluster"]["replicas"], 3);
    assert_eq!(values["config"]["jetstream"]["fileStore"]["enabled"], true);
}

#[test]
fn the_rbac_grants_what_the_server_calls_and_no_more() {
    let file = "rbac.yaml";
    let objects = objects(file);
    let [role] = &objects.roles[..] else {
        panic!("{file}: one Role expected");
    };
    let granted: BTreeSet<String> = role
        .rules
        .iter()
        .flatten()
        .flat_map(|rule| {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            let verbs = rule.verbs.clone();
            groups.into_iter().flat_map(move |group| {
                let verbs = verbs.clone();
                resources.clone().into_iter().flat_map(move |resource| {
                    let group = group.clone();
                    verbs
                        .clone()
                        .into_iter()
                        .map(move |verb| format!("{group}/{resource}:{verb}"))
                })
            })
        })
        .collect();
    // What runtime/src/kube/mod.rs calls: create a Job, watch it by name (list and watch),
    // delete it, and delete all of a service's Jobs with the service; list its pod by label
    // and read the pod's log.
    let needed: BTreeSet<String> = [
        "batch/jobs:create",
        "batch/jobs:list",
        "batch/jobs:watch",
        "batch/jobs:delete",
        "batch/jobs:deletecollection",
        "/pods:list",
        "/pods/log:get",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(
        granted, needed,
        "{file}: the Role must grant exactly what is used"
    );
    assert!(
        role.metadata.namespace.is_some(),
        "{file}: a namespaced Role, nothing cluster-wide"
    );
    let [binding] = &objects.bindings[..] else {
        panic!("{file}: one RoleBinding expected");
    };
    let [account] = &objects.accounts[..] else {
        panic!("{file}: one ServiceAccount expected");
    };
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), Some(&subject.name)),
        ("ServiceAccount", account.metadata.name.as_ref())
    );
}

/// The example alerting rules name only metrics a server exports: each `oscar_wasm_*` name in
/// an expression (a histogram's `_bucket`, `_sum` and `_count` series included) appears in a
/// running server's /metrics after an invocation.
#[test]
fn the_alerting_rules_name_real_metrics() {
    let text = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yaml")).unwrap();
    let rules: Value = yaml_serde::from_str(&text).unwrap();
    let exprs: Vec<String> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            assert!(r["alert"].is_string(), "a rule without a name: {r}");
            r["expr"].as_str().expect("an expr").to_string()
        })
        .collect();
    assert!(exprs.len() >= 5, "{exprs:?}");
    let dir = common::TestDir::new();
    let server = common::Server::start(&dir.data(), &[]);
    common::deploy(
        &server,
        &common::guest("uppercase"),
        serde_json::json!({"name": "upper"}),
    );
    let (status, _, _) = common::run(&server, "upper", common::b64(b"x"));
    assert_eq!(status, 200);
    let exported = common::metrics_text(&server);
    let mut named = BTreeSet::new();
    for expr in &exprs {
        for (at, _) in expr.match_indices("oscar_wasm_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    assert!(!named.is_empty());
    for name in &named {
        assert!(
            exported
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "deploy/prometheus/alerts.yaml names {name}, which /metrics does not export:\n{exported}"
        );
    }
}
