//! Definitions as OSCAR's Go server decodes them, so that its clients' bodies mean here what
//! they mean there: JSON keys matched case-insensitively (oscar-cli sends the environment as
//! `"Variables"`), a lenient `log_level` (empty or unknown is INFO), the defaults OSCAR fills at
//! creation (memory, cpu, visibility, owner, the default labels the dashboard reads, and
//! `storage_providers.minio.default` with hidden keys), and a log line for the fields OSCAR
//! acts on that this runtime keeps but does not.

use serde_json::{Map, Value, json};

/// The keys of OSCAR's service definition (pkg/types/service.go), plus this runtime's own.
const SERVICE_KEYS: &[&str] = &[
    "name",
    "cluster_id",
    "memory",
    "cpu",
    "enable_gpu",
    "enable_sgx",
    "image_prefetch",
    "total_memory",
    "total_cpu",
    "synchronous",
    "replicas",
    "rescheduler_threshold",
    "delegation",
    "federation",
    "token",
    "log_level",
    "image",
    "alpine",
    "script",
    "file_stage_in",
    "image_pull_secrets",
    "expose",
    "environment",
    "annotations",
    "labels",
    "input",
    "output",
    "storage_providers",
    "clusters",
    "vo",
    "allowed_users",
    "visibility",
    "owner",
    "mount",
    "volume",
    "isolation_level",
    "bucket_list",
    "interlink_node_name",
    "ephemeral_storage_request",
    "kserve",
    "module",
    "timeout",
    "max_concurrency",
    "poll_interval",
    "allowed_outbound_hosts",
];
/// The keys of `environment`.
const ENVIRONMENT_KEYS: &[&str] = &["variables", "secrets"];
/// The keys of an `input` or `output` entry.
const PATH_KEYS: &[&str] = &["storage_provider", "path", "suffix", "prefix"];
/// The keys of a storage provider's settings.
const PROVIDER_KEYS: &[&str] = &[
    "endpoint",
    "verify",
    "access_key",
    "secret_key",
    "region",
    "session_token",
    "oneprovider_host",
    "token",
    "space",
    "hostname",
    "login",
    "password",
];
/// Fields OSCAR acts on that this runtime keeps as given but does not act on.
pub const NOT_ACTED_ON: &[&str] = &[
    "volume",
    "federation",
    "delegation",
    "replicas",
    "enable_gpu",
    "enable_sgx",
    "synchronous",
    "file_stage_in",
    "image_prefetch",
    "kserve",
    "interlink_node_name",
    "total_memory",
    "total_cpu",
    "alpine",
    "image_pull_secrets",
    "ephemeral_storage_request",
];
/// OSCAR's owner of services created with the administrator's credentials.
pub const ADMIN_OWNER: &str = "cluster_admin";

/// Makes `sub` the owner of a definition a user creates, as OSCAR does (`owner`, and the
/// `owner_name` label from the user's name, spaces as `_`).
pub fn set_owner(definition: &mut Map<String, Value>, sub: &str, name: &str) {
    definition.insert("owner".into(), json!(sub));
    let shown = if name.is_empty() { sub } else { name };
    with_object(definition, "labels", |labels| {
        labels.insert("owner_name".into(), json!(shown.replace(' ', "_")));
    });
}

/// Renames keys to OSCAR's spelling where only their case differs, as Go's JSON decoder
/// matches them, and makes `log_level` what OSCAR would keep. Applied to every definition.
pub fn normalize(definition: &mut Map<String, Value>) {
    canonical_keys(definition, SERVICE_KEYS);
    if let Some(Value::Object(environment)) = definition.get_mut("environment") {
        canonical_keys(environment, ENVIRONMENT_KEYS);
    }
    for key in ["input", "output"] {
        if let Some(Value::Array(entries)) = definition.get_mut(key) {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                canonical_keys(entry, PATH_KEYS);
            }
        }
    }
    if let Some(Value::Object(kinds)) = definition.get_mut("storage_providers") {
        for ids in kinds.values_mut().filter_map(Value::as_object_mut) {
            for settings in ids.values_mut().filter_map(Value::as_object_mut) {
                canonical_keys(settings, PROVIDER_KEYS);
            }
        }
    }
    lenient_log_level(definition);
}

/// Renames each key equal to one of `known` but for case, unless `known` is there as is.
pub(crate) fn canonical_keys(map: &mut Map<String, Value>, known: &[&str]) {
    let renames: Vec<(String, &str)> = map
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .filter_map(|key| {
            let canonical = known.iter().find(|k| k.eq_ignore_ascii_case(key))?;
            (!map.contains_key(*canonical)).then(|| (key.clone(), *canonical))
        })
        .collect();
    for (key, canonical) in renames {
        if let Some(value) = map.remove(&key) {
            map.insert(canonical.to_string(), value);
        }
    }
}

/// OSCAR upper-cases `log_level` and turns an absent, empty or unknown one into INFO (which
/// it stores: its dashboard's form shows it).
fn lenient_log_level(definition: &mut Map<String, Value>) {
    let level = match definition.get("log_level") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(level)) => level.to_ascii_uppercase(),
        Some(_) => return,
    };
    let kept = match level.as_str() {
        "NOTSET" | "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL" => level,
        _ => "INFO".to_string(),
    };
    definition.insert("log_level".into(), Value::String(kept));
}

/// What the server fills in where a definition is silent.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `memory`, as a quantity.
    pub memory: String,
    /// The cluster store (`minio.default`): endpoint, verify, region; keys shown hidden.
    pub store_endpoint: Option<String>,
    /// Whether the store's certificate is verified.
    pub store_verify: bool,
    /// The store's region.
    pub store_region: String,
}

/// Fills the fields OSCAR fills at creation (pkg/handlers/create.go, checkValues): memory
/// and cpu, visibility, owner, the default labels (the dashboard reads `owner_name`),
/// annotations, and `minio.default` with hidden keys.
pub fn fill_defaults(definition: &mut Map<String, Value>, defaults: &Defaults) {
    let name = definition
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let blank = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
    if blank(definition.get("memory")) {
        definition.insert("memory".into(), json!(defaults.memory));
    }
    if blank(definition.get("cpu")) {
        definition.insert("cpu".into(), json!("0.2"));
    }
    if blank(definition.get("visibility")) {
        definition.insert("visibility".into(), json!("private"));
    }
    if blank(definition.get("owner")) {
        definition.insert("owner".into(), json!(ADMIN_OWNER));
    }
    with_object(definition, "labels", |labels| {
        labels.insert("oscar.grycap/user-service".into(), json!("true"));
        labels.insert("oscar_service".into(), json!(name));
        labels.insert("applicationId".into(), json!(name));
        labels.insert("queue".into(), json!(format!("root.oscar-queue.{name}")));
        labels.entry("owner_name").or_insert_with(|| json!("oscar"));
    });
    with_object(definition, "annotations", |_| {});
    with_object(definition, "storage_providers", |providers| {
        with_object(providers, "minio", |minio| {
            minio.insert(
                "default".into(),
                json!({
                    "endpoint": defaults.store_endpoint,
                    "verify": defaults.store_verify,
                    "access_key": crate::storage::spec::HIDDEN,
                    "secret_key": crate::storage::spec::HIDDEN,
                    "region": defaults.store_region,
                }),
            );
        });
    });
}

/// Runs `f` on the object at `key`, made one when missing or not an object (in place, so the
/// keys keep their order).
fn with_object(map: &mut Map<String, Value>, key: &str, f: impl FnOnce(&mut Map<String, Value>)) {
    if !matches!(map.get(key), Some(Value::Object(_))) {
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(object)) = map.get_mut(key) {
        f(object);
    }
}

/// Every field OSCAR's Go server always answers, with Go's zero value (pkg/types/service.go:
/// it serialises its struct whole), for what a definition leaves out. OSCAR's dashboard reads
/// them without checking (`expose.max_scale` in its services list, `script.toString()` on a
/// service's page) and goes blank when one is missing. Maps and lists answer `{}` and `[]`
/// where Go would say `null`, which no client reads differently. Answers only: sent back
/// (the dashboard resends what it read), zero values mean "not set" ([`not_acted_on`]).
const GO_ZERO_VALUES: &[(&str, &str)] = &[
    ("cluster_id", r#""""#),
    ("memory", r#""""#),
    ("cpu", r#""""#),
    ("total_memory", r#""""#),
    ("total_cpu", r#""""#),
    ("enable_gpu", "false"),
    ("enable_sgx", "false"),
    ("image_prefetch", "false"),
    ("synchronous", r#"{"min_scale": 0, "max_scale": 0}"#),
    ("delegation", r#""""#),
    ("rescheduler_threshold", "0"),
    ("log_level", r#""""#),
    ("image", r#""""#),
    ("alpine", "false"),
    ("token", r#""""#),
    ("file_stage_in", "false"),
    ("input", "[]"),
    ("output", "[]"),
    ("script", r#""""#),
    (
        "expose",
        r#"{"min_scale": 0, "max_scale": 0, "cpu_threshold": 0, "rewrite_target": false, "nodePort": 0, "default_command": false, "set_auth": false, "health_path": ""}"#,
    ),
    ("environment", r#"{"variables": {}, "secrets": {}}"#),
    ("annotations", "{}"),
    ("vo", r#""""#),
    ("labels", "{}"),
    ("owner", r#""""#),
    ("interlink_node_name", r#""""#),
    ("visibility", r#""""#),
    ("allowed_users", "[]"),
    ("isolation_level", r#""""#),
    ("bucket_list", "[]"),
    ("mount", r#"{"storage_provider": "", "path": ""}"#),
];

/// Adds [`GO_ZERO_VALUES`] where `definition` has nothing (absent or `null`), at any depth
/// of the template's objects.
pub fn with_go_zero_values(definition: &mut Map<String, Value>) {
    for (key, zero) in GO_ZERO_TEMPLATE.iter() {
        fill_zero(definition, key, zero.clone());
    }
}

/// [`GO_ZERO_VALUES`] parsed once (constant text; the test below parses every entry).
static GO_ZERO_TEMPLATE: std::sync::LazyLock<Vec<(&str, Value)>> = std::sync::LazyLock::new(|| {
    GO_ZERO_VALUES
        .iter()
        .filter_map(|(key, zero)| Some((*key, serde_json::from_str(zero).ok()?)))
        .collect()
});

fn fill_zero(map: &mut Map<String, Value>, key: &str, zero: Value) {
    match (map.get_mut(key), zero) {
        (None | Some(Value::Null), zero) => {
            map.insert(key.to_string(), zero);
        }
        (Some(Value::Object(present)), Value::Object(fields)) => {
            for (field, value) in fields {
                fill_zero(present, &field, value);
            }
        }
        _ => {}
    }
}

/// Blanks the values of `environment.secrets`, as OSCAR's answers show them.
pub fn blank_secrets(definition: &mut Map<String, Value>) {
    if let Some(Value::Object(environment)) = definition.get_mut("environment")
        && let Some(Value::Object(secrets)) = environment.get_mut("secrets")
    {
        for value in secrets.values_mut() {
            *value = Value::String(String::new());
        }
    }
}

/// Puts back the stored value of each secret that `new` sends blank (a definition read back
/// with GET and sent again).
pub fn restore_blank_secrets(new: &mut Map<String, Value>, stored: &Map<String, Value>) {
    let Some(Value::Object(old)) = stored.get("environment").and_then(|e| e.get("secrets")) else {
        return;
    };
    if let Some(Value::Object(environment)) = new.get_mut("environment")
        && let Some(Value::Object(secrets)) = environment.get_mut("secrets")
    {
        for (key, value) in secrets.iter_mut() {
            if value.as_str() == Some("")
                && let Some(previous) = old.get(key)
            {
                *value = previous.clone();
            }
        }
    }
}

/// The fields of [`NOT_ACTED_ON`] that image services act on (their Job and pod carry them).
pub const ACTED_ON_BY_IMAGES: &[&str] = &[
    "enable_gpu",
    "image_pull_secrets",
    "ephemeral_storage_request",
];

/// The fields of `definition` that OSCAR acts on and this runtime does not, when set
/// (`image`: for an image service, which acts on [`ACTED_ON_BY_IMAGES`]).
pub fn not_acted_on(definition: &Map<String, Value>, image: bool) -> Vec<&'static str> {
    NOT_ACTED_ON
        .iter()
        .copied()
        .filter(|key| !(image && ACTED_ON_BY_IMAGES.contains(key)))
        .filter(|key| definition.get(*key).is_some_and(is_set))
        .collect()
}

/// Whether `value` says anything: Go clients send every field, unset ones as zero values
/// (`"expose": {"min_scale": 0, ...}`), which mean "not set".
pub fn is_set(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Bool(true) => true,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Array(items) => items.iter().any(is_set),
        Value::Object(fields) => fields.values().any(is_set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_every_go_field_and_keep_what_is_set() {
        for (key, zero) in GO_ZERO_VALUES {
            assert!(serde_json::from_str::<Value>(zero).is_ok(), "{key}: {zero}");
            assert!(SERVICE_KEYS.contains(key), "{key} is not an OSCAR key");
        }
        let mut d = json!({"name": "x", "module": "sha256:00", "expose": {"api_port": 8080},
            "environment": {"variables": {"A": "1"}}, "script": null})
        .as_object()
        .cloned()
        .unwrap();
        with_go_zero_values(&mut d);
        assert_eq!(d["expose"]["max_scale"], 0);
        assert_eq!(d["expose"]["api_port"], 8080);
        assert_eq!(d["script"], "");
        assert_eq!(d["environment"]["variables"]["A"], "1");
        assert_eq!(d["environment"]["secrets"], json!({}));
        assert_eq!(d["mount"]["path"], "");
        // What the answer adds means "not set" when a client sends it back.
        assert!(!not_acted_on(&d, true).contains(&"expose"));
        assert!(!not_acted_on(&d, false).contains(&"expose"));
        let mut zeros = Map::new();
        with_go_zero_values(&mut zeros);
        assert!(not_acted_on(&zeros, false).is_empty(), "{zeros:?}");
    }

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn keys_match_case_insensitively_as_in_go() {
        let mut d = map(json!({
            "Name": "x", "LOG_LEVEL": "debug",
            "environment": {"Variables": {"A": "1"}, "Secrets": {"S": "2"}},
            "input": [{"Storage_Provider": "minio", "Path": "b/in"}],
            "storage_providers": {"minio": {"m": {"Endpoint": "http://h", "Access_Key": "a"}}}
        }));
        normalize(&mut d);
        assert_eq!(d["name"], "x");
        assert_eq!(d["log_level"], "DEBUG");
        assert_eq!(d["environment"]["variables"]["A"], "1");
        assert_eq!(d["environment"]["secrets"]["S"], "2");
        assert_eq!(d["input"][0]["storage_provider"], "minio");
        assert_eq!(d["storage_providers"]["minio"]["m"]["access_key"], "a");
        // An exact key wins over one that differs only by case.
        let mut both = map(json!({"name": "a", "Name": "b"}));
        normalize(&mut both);
        assert_eq!(
            (both["name"].clone(), both["Name"].clone()),
            (json!("a"), json!("b"))
        );
    }

    #[test]
    fn log_levels_are_lenient() {
        for (given, kept) in [
            ("", "INFO"),
            ("verbose", "INFO"),
            ("notset", "NOTSET"),
            ("Warning", "WARNING"),
        ] {
            let mut d = map(json!({"log_level": given}));
            normalize(&mut d);
            assert_eq!(d["log_level"], kept, "{given}");
        }
    }

    #[test]
    fn defaults_are_filled_where_the_definition_is_silent() {
        let defaults = Defaults {
            memory: "256Mi".into(),
            store_endpoint: Some("http://127.0.0.1:9000".into()),
            store_verify: true,
            store_region: "us-east-1".into(),
        };
        let mut d = map(json!({"name": "x", "memory": "", "cpu": "1", "labels": {"team": "a"}}));
        fill_defaults(&mut d, &defaults);
        assert_eq!(
            (d["memory"].clone(), d["cpu"].clone()),
            (json!("256Mi"), json!("1"))
        );
        assert_eq!(d["visibility"], "private");
        assert_eq!(d["owner"], ADMIN_OWNER);
        assert_eq!(d["labels"]["team"], "a");
        assert_eq!(d["labels"]["owner_name"], "oscar");
        assert_eq!(d["labels"]["oscar_service"], "x");
        assert_eq!(
            d["storage_providers"]["minio"]["default"]["secret_key"],
            "hidden"
        );
        assert_eq!(
            d["storage_providers"]["minio"]["default"]["endpoint"],
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn fields_not_acted_on_are_named_when_set() {
        let d = map(
            json!({"expose": {"api_port": 8080}, "enable_gpu": false, "mount": null,
                           "synchronous": {"min_scale": 1}}),
        );
        assert_eq!(not_acted_on(&d, false), ["synchronous"]);
        let gpu = map(json!({"enable_gpu": true, "image_pull_secrets": ["r"]}));
        assert_eq!(
            not_acted_on(&gpu, false),
            ["enable_gpu", "image_pull_secrets"]
        );
        assert!(not_acted_on(&gpu, true).is_empty());
    }
}
