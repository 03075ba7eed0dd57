//! A definition's storage fields, OSCAR's way: `storage_providers` (credentials by type and
//! id), `input` and `output` (lists of `{storage_provider, path, prefix, suffix}`), validated
//! once at deploy time into a typed view. The JSON itself is kept as given (providers of other
//! types included), except that responses show credentials as `"hidden"`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The provider every service can use without defining it: the server's own store.
pub const DEFAULT_PROVIDER: &str = "minio.default";

/// What responses show instead of a credential.
pub const HIDDEN: &str = "hidden";

/// A storage field that is wrong, named as the user wrote it (`input[1].path`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid \"{field}\": {reason}")]
pub struct StorageError {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> StorageError {
    StorageError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// An S3-compatible provider (types `minio` and `s3`).
#[derive(Clone, PartialEq)]
pub struct Provider {
    /// `minio.ID` or `s3.ID`.
    pub reference: String,
    /// The endpoint URL; `None` for AWS S3 itself.
    pub endpoint: Option<String>,
    /// The region (S3 signs with it).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Whether to verify TLS certificates.
    pub verify: bool,
}

impl std::fmt::Debug for Provider {
    // Credentials never reach a log line, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("reference", &self.reference)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// One `input` or `output` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StoragePath {
    /// `TYPE.ID` (the id defaulted to `default`).
    pub provider: String,
    /// The bucket (the path's first segment).
    pub bucket: String,
    /// The folder inside the bucket (the rest of the path; may be empty).
    pub folder: String,
    /// Output names must start with one of these (when any).
    pub prefix: Vec<String>,
    /// Output names must end with one of these (when any).
    pub suffix: Vec<String>,
}

impl StoragePath {
    /// Whether `key` lies in this path's bucket and folder.
    pub fn holds(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket
            && (self.folder.is_empty()
                || key
                    .strip_prefix(&self.folder)
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    /// Whether an output file (its name relative to the output folder) passes the filters.
    pub fn accepts(&self, name: &str) -> bool {
        (self.prefix.is_empty() || self.prefix.iter().any(|p| name.starts_with(p.as_str())))
            && (self.suffix.is_empty() || self.suffix.iter().any(|s| name.ends_with(s.as_str())))
    }

    /// The key an output file is uploaded to.
    pub fn key_for(&self, name: &str) -> String {
        if self.folder.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.folder)
        }
    }
}

/// A service's storage configuration, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageSpec {
    /// The S3-compatible providers the definition declares, by `TYPE.ID`.
    pub providers: BTreeMap<String, Provider>,
    /// Where input objects come from.
    pub inputs: Vec<StoragePath>,
    /// Where output files go.
    pub outputs: Vec<StoragePath>,
    /// `mount`: a bucket folder the guest sees at `/mnt/<bucket>/<folder>`.
    pub mount: Option<StoragePath>,
    /// `isolation_level: USER`'s private buckets (`bucket_list`): each an allowed user's own
    /// copy of the `minio.default` input and output folders ([`StorageSpec::for_bucket`]).
    /// Not in [`StorageSpec::paths`]: a private bucket is its user's alone, not open to
    /// everyone who may use the service.
    pub isolated: Vec<String>,
}

impl StorageSpec {
    /// Every bucket path the service names: inputs, outputs and its mount.
    pub fn paths(&self) -> impl Iterator<Item = &StoragePath> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .chain(self.mount.as_ref())
    }
}

/// Why `endpoint` points at this machine or its link-local network (loopback, `localhost`,
/// 169.254.0.0/16 where clouds serve instance credentials, fe80::/10, unspecified), where a
/// definition must not send the server unless `--allow-local-endpoints` says so; `None` if
/// it does not. Names are judged as written: a public name that resolves to such an address
/// is the network's to block.
pub fn local_endpoint(endpoint: &str) -> Option<String> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    let local = match url.host()? {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => ip.is_loopback() || ip.is_link_local() || ip.is_unspecified(),
        url::Host::Ipv6(ip) => {
            let mapped = ip.to_ipv4_mapped();
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_unicast_link_local()
                || mapped.is_some_and(|v4| v4.is_loopback() || v4.is_link_local())
        }
    };
    local.then(|| {
        format!(
            "{endpoint:?} is on this machine or its link-local network; this server does not reach there for a definition (--allow-local-endpoints)"
        )
    })
}

impl StorageSpec {
    /// The storage an invocation triggered from `bucket` uses: for one of the private buckets
    /// of `isolation_level: USER`, the `minio.default` inputs and outputs moved into it (its
    /// user's files come from and go to that bucket alone, as OSCAR redirects them); for any
    /// other bucket, the service's own.
    pub fn for_bucket(&self, bucket: &str) -> std::borrow::Cow<'_, StorageSpec> {
        if !self.isolated.iter().any(|b| b == bucket) {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut moved = self.clone();
        for path in moved.inputs.iter_mut().chain(moved.outputs.iter_mut()) {
            if path.provider == DEFAULT_PROVIDER {
                path.bucket = bucket.to_string();
            }
        }
        std::borrow::Cow::Owned(moved)
    }

    /// The input entry whose bucket and folder hold `bucket/key`.
    pub fn input_for(&self, bucket: &str, key: &str) -> Option<&StoragePath> {
        self.inputs.iter().find(|p| p.holds(bucket, key))
    }
}

/// Parses and checks the storage fields of definition `service`.
pub fn parse(service: &str, definition: &Map<String, Value>) -> Result<StorageSpec, StorageError> {
    let mut spec = StorageSpec::default();
    let mut declared: Vec<String> = Vec::new();
    match definition.get("storage_providers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(types)) => {
            for (kind, ids) in types {
                let field = format!("storage_providers.{kind}");
                let Value::Object(ids) = ids else {
                    if ids.is_null() {
                        continue;
                    }
                    return Err(err(field, "must map provider ids to their settings"));
                };
                for (id, settings) in ids {
                    let reference = format!("{kind}.{id}");
                    declared.push(reference.clone());
                    if reference == DEFAULT_PROVIDER || !matches!(kind.as_str(), "minio" | "s3") {
                        // minio.default is always the server's own store, as in OSCAR; other
                        // types are kept as given but cannot be used here.
                        continue;
                    }
                    let field = format!("{field}.{id}");
                    let provider = parse_provider(&field, &reference, kind == "minio", settings)?;
                    spec.providers.insert(reference, provider);
                }
            }
        }
        Some(_) => return Err(err("storage_providers", "must be a mapping of types")),
    }
    spec.mount = match definition.get("mount") {
        None | Some(Value::Null) => None,
        Some(Value::Object(entry)) if entry.values().all(blank) => None,
        // A bare name is a bucket here, as OSCAR's rclone mounts it.
        Some(Value::Object(entry)) => Some(parse_path(None, entry, "mount", &declared)?),
        Some(_) => return Err(err("mount", "must be a mapping {storage_provider, path}")),
    };
    spec.inputs = parse_paths(service, definition, "input", &declared)?;
    spec.outputs = parse_paths(service, definition, "output", &declared)?;
    spec.isolated = parse_isolation(definition)?;
    for (i, input) in spec.inputs.iter().enumerate() {
        if input.provider != DEFAULT_PROVIDER && !spec.providers.contains_key(&input.provider) {
            return Err(err(
                format!("input[{i}].storage_provider"),
                format!(
                    "{} is not an S3-compatible provider (minio or s3); only those can trigger a service here",
                    input.provider
                ),
            ));
        }
    }
    for (i, output) in spec.outputs.iter().enumerate() {
        if output.provider != DEFAULT_PROVIDER && !spec.providers.contains_key(&output.provider) {
            return Err(err(
                format!("output[{i}].storage_provider"),
                format!(
                    "{} is not an S3-compatible provider (minio or s3); outputs can go only to those here",
                    output.provider
                ),
            ));
        }
    }
    Ok(spec)
}

/// `isolation_level` (`SERVICE`, OSCAR's default, or `USER`, any case) and, for `USER`, the
/// private buckets of `bucket_list`.
fn parse_isolation(definition: &Map<String, Value>) -> Result<Vec<String>, StorageError> {
    let level = match definition.get("isolation_level") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_ascii_uppercase(),
        Some(_) => return Err(err("isolation_level", "must be SERVICE or USER")),
    };
    match level.as_str() {
        "" | "SERVICE" => return Ok(Vec::new()),
        "USER" => {}
        other => {
            return Err(err(
                "isolation_level",
                format!("{other:?} is not SERVICE or USER"),
            ));
        }
    }
    let names = match definition.get("bucket_list") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(names)) => names,
        Some(_) => return Err(err("bucket_list", "must be a list of bucket names")),
    };
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = name
                .as_str()
                .ok_or_else(|| err(format!("bucket_list[{i}]"), "must be a bucket name"))?;
            super::names::check_bucket(name)
                .map_err(|e| err(format!("bucket_list[{i}]"), e.to_string()))?;
            Ok(name.to_string())
        })
        .collect()
}

fn parse_provider(
    field: &str,
    reference: &str,
    is_minio: bool,
    settings: &Value,
) -> Result<Provider, StorageError> {
    let Value::Object(settings) = settings else {
        return Err(err(field, "must be a mapping of settings"));
    };
    let text = |key: &str| -> Result<Option<String>, StorageError> {
        match settings.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err(err(format!("{field}.{key}"), "must be a string")),
        }
    };
    let access_key = text("access_key")?;
    let secret_key = text("secret_key")?;
    let (access_key, secret_key) = match (access_key, secret_key) {
        (Some(a), Some(s)) => (a, s),
        (None, _) => return Err(err(format!("{field}.access_key"), "is required")),
        (_, None) => return Err(err(format!("{field}.secret_key"), "is required")),
    };
    if access_key == HIDDEN || secret_key == HIDDEN {
        return Err(err(
            field,
            "credentials shown as \"hidden\" must be given in full for a new provider",
        ));
    }
    let endpoint = text("endpoint")?;
    if is_minio && endpoint.is_none() {
        return Err(err(
            format!("{field}.endpoint"),
            "is required for minio providers",
        ));
    }
    if let Some(e) = &endpoint {
        let url = reqwest::Url::parse(e)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        let Some(url) = url else {
            return Err(err(
                format!("{field}.endpoint"),
                format!("{e:?} is not an http:// or https:// URL"),
            ));
        };
        // Credentials in a URL would be shown and logged with it.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                format!("{field}.endpoint"),
                "must not hold credentials (user:password@); give them as access_key and secret_key",
            ));
        }
    }
    let verify = match settings.get("verify") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err(format!("{field}.verify"), "must be true or false")),
    };
    Ok(Provider {
        reference: reference.to_string(),
        endpoint,
        region: text("region")?.unwrap_or_else(|| "us-east-1".into()),
        access_key,
        secret_key,
        verify,
    })
}

fn parse_paths(
    service: &str,
    definition: &Map<String, Value>,
    list: &str,
    declared: &[String],
) -> Result<Vec<StoragePath>, StorageError> {
    let entries = match definition.get(list) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(err(list, "must be a list of {storage_provider, path}")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("{list}[{i}]");
        let Value::Object(entry) = entry else {
            return Err(err(field, "must be a mapping {storage_provider, path}"));
        };
        out.push(parse_path(Some(service), entry, &field, declared)?);
    }
    Ok(out)
}

/// A blank value (as OSCAR's zero values arrive).
fn blank(value: &Value) -> bool {
    value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty())
}

/// One `{storage_provider, path, prefix, suffix}` entry, as `field` names it; a bare name is
/// a folder of the bucket named after `service`, or without one a bucket.
fn parse_path(
    service: Option<&str>,
    entry: &Map<String, Value>,
    field: &str,
    declared: &[String],
) -> Result<StoragePath, StorageError> {
    let provider = match entry.get("storage_provider") {
        Some(Value::String(p)) if !p.trim().is_empty() => {
            let p = p.trim();
            if p.contains('.') {
                p.to_string()
            } else {
                format!("{p}.default")
            }
        }
        _ => {
            return Err(err(
                format!("{field}.storage_provider"),
                "is required: \"TYPE\" or \"TYPE.ID\"",
            ));
        }
    };
    if provider != DEFAULT_PROVIDER && !declared.contains(&provider) {
        return Err(err(
            format!("{field}.storage_provider"),
            format!("{provider} is not declared in storage_providers"),
        ));
    }
    let path = match entry.get("path") {
        Some(Value::String(p)) => p.trim().trim_matches('/').trim().to_string(),
        _ => return Err(err(format!("{field}.path"), "is required")),
    };
    if path.is_empty() {
        return Err(err(format!("{field}.path"), "must not be empty"));
    }
    // As OSCAR: a bare name is a folder in a bucket named after the service.
    let path = match service {
        Some(service) if !path.contains('/') => format!("{service}/{path}"),
        _ => path,
    };
    let (bucket, folder) = path.split_once('/').unwrap_or((path.as_str(), ""));
    super::names::check_bucket(bucket)
        .map_err(|reason| err(format!("{field}.path"), reason.to_string()))?;
    // A mount may be a whole bucket; an input or output always names a folder.
    if !(folder.is_empty() && service.is_none()) {
        super::names::check_folder(folder)
            .map_err(|reason| err(format!("{field}.path"), reason.to_string()))?;
    }
    let strings = |key: &str| -> Result<Vec<String>, StorageError> {
        match entry.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(format!("{field}.{key}"), "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(err(format!("{field}.{key}"), "must be a list of strings")),
        }
    };
    Ok(StoragePath {
        provider,
        bucket: bucket.to_string(),
        folder: folder.to_string(),
        prefix: strings("prefix")?,
        suffix: strings("suffix")?,
    })
}

/// Where credentials sit in a definition: each section, and how many levels of names lie
/// between it and the settings that hold them (`storage_providers.TYPE.ID.KEY`,
/// `clusters.ID.auth_password`).
const CREDENTIAL_SECTIONS: [(&str, usize); 2] = [("storage_providers", 2), ("clusters", 1)];

/// The definition as responses show it: every provider's credentials and every federated
/// cluster's password replaced by `"hidden"`.
pub fn redact(definition: &Map<String, Value>) -> Map<String, Value> {
    let mut shown = definition.clone();
    for (section, depth) in CREDENTIAL_SECTIONS {
        if let Some(top) = shown.get_mut(section) {
            redact_level(top, depth);
        }
    }
    shown
}

fn redact_level(value: &mut Value, depth: usize) {
    let Value::Object(map) = value else { return };
    for (key, value) in map.iter_mut() {
        if depth > 0 {
            redact_level(value, depth - 1);
        } else if is_secret_key(key) && !value.is_null() {
            *value = Value::String(HIDDEN.into());
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    matches!(
        key,
        "access_key"
            | "secret_key"
            | "password"
            | "token"
            | "session_token"
            | "refresh_token"
            | "auth_password"
    )
}

/// Puts back the stored credentials where an update says `"hidden"` (a definition read with
/// GET, changed and sent back with PUT).
pub fn restore_hidden(new: &mut Map<String, Value>, stored: &Map<String, Value>) {
    let stored = Value::Object(stored.clone());
    for (section, depth) in CREDENTIAL_SECTIONS {
        if let Some(top) = new.get_mut(section) {
            restore_level(top, depth, &format!("/{section}"), &stored);
        }
    }
}

fn restore_level(value: &mut Value, depth: usize, path: &str, stored: &Value) {
    let Value::Object(map) = value else { return };
    for (key, value) in map.iter_mut() {
        // A JSON pointer to the same place in the stored definition.
        let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
        if depth > 0 {
            restore_level(value, depth - 1, &here, stored);
        } else if value.as_str() == Some(HIDDEN)
            && let Some(previous) = stored.pointer(&here)
        {
            *value = previous.clone();
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_credential_is_hidden_and_restored_in_place() {
        let stored = json!({
            "storage_providers": {
                "minio": {"x": {"access_key": "ak", "secret_key": "sk", "endpoint": "e"}},
                "rucio": {"r": {"refresh_token": "rt"}}
            },
            "clusters": {"c/1": {"endpoint": "e", "auth_user": "u", "auth_password": "pw"}}
        });
        let stored = stored.as_object().unwrap().clone();
        let shown = redact(&stored);
        let text = serde_json::to_string(&shown).unwrap();
        for secret in ["\"ak\"", "\"sk\"", "\"rt\"", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["clusters"]["c/1"]["auth_user"], "u");
        let mut sent_back = shown.clone();
        sent_back["storage_providers"]["minio"]["x"]["endpoint"] = json!("new");
        restore_hidden(&mut sent_back, &stored);
        assert_eq!(
            sent_back["storage_providers"]["minio"]["x"]["secret_key"],
            "sk"
        );
        assert_eq!(
            sent_back["storage_providers"]["minio"]["x"]["endpoint"],
            "new"
        );
        assert_eq!(
            sent_back["storage_providers"]["rucio"]["r"]["refresh_token"],
            "rt"
        );
        assert_eq!(sent_back["clusters"]["c/1"]["auth_password"], "pw");
    }
}

#[cfg(test)]
mod endpoint_tests {
    use crate::storage::spec::local_endpoint;

    #[test]
    fn local_and_link_local_endpoints_are_recognised() {
        for local in [
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://localhost:9000",
            "http://LOCALHOST.",
            "http://minio.localhost",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0:9000",
            "http://[::1]:9000",
            "http://[fe80::1]",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(local_endpoint(local).is_some(), "{local}");
        }
        for remote in [
            "https://s3.amazonaws.com",
            "http://10.0.0.5:9000",
            "http://minio.example.org",
            "http://[2001:db8::1]",
        ] {
            assert!(local_endpoint(remote).is_none(), "{remote}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(value: Value) -> Result<StorageSpec, StorageError> {
        parse("svc", value.as_object().unwrap())
    }

    #[test]
    fn a_mount_is_a_bucket_path_and_its_zero_value_is_none() {
        let mount = |m: Value| parse_json(json!({"mount": m})).map(|s| s.mount);
        let bare = mount(json!({"storage_provider": "minio", "path": "data"}))
            .unwrap()
            .unwrap();
        assert_eq!((bare.bucket.as_str(), bare.folder.as_str()), ("data", ""));
        let deep = mount(json!({"storage_provider": "minio.default", "path": "/bkt/f/g/"}))
            .unwrap()
            .unwrap();
        assert_eq!((deep.bucket.as_str(), deep.folder.as_str()), ("bkt", "f/g"));
        assert_eq!(
            mount(json!({"storage_provider": "", "path": ""})).unwrap(),
            None
        );
        assert_eq!(mount(json!(null)).unwrap(), None);
        for bad in [
            json!({"path": "bkt"}),
            json!({"storage_provider": "minio", "path": "bkt/../x"}),
            json!("bkt"),
        ] {
            assert!(mount(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn oscar_paths_and_providers() {
        let spec = parse_json(json!({
            "storage_providers": {
                "s3": {"aws": {"access_key": "AK", "secret_key": "SK", "region": "eu-west-1"}},
                "minio": {"default": {"endpoint": "http://ignored", "access_key": "x", "secret_key": "y"}},
                "onedata": {"od": {"oneprovider_host": "h", "token": "t", "space": "s"}}
            },
            "input": [{"storage_provider": "minio", "path": "/in-bucket/images/ "}],
            "output": [
                {"storage_provider": "s3.aws", "path": "results", "suffix": [".png"], "prefix": ["gray"]},
                {"storage_provider": "onedata.od", "path": "space/y"}
            ]
        }));
        // onedata output: kept in the JSON, refused as a target here.
        let e = spec.unwrap_err();
        assert_eq!(e.field, "output[1].storage_provider");

        let spec = parse_json(json!({
            "storage_providers": {"s3": {"aws": {"access_key": "AK", "secret_key": "SK"}}},
            "input": [{"storage_provider": "minio", "path": "/in-bucket/images/ "}],
            "output": [{"storage_provider": "s3.aws", "path": "results", "suffix": [".png"], "prefix": ["gray"]}]
        }))
        .unwrap();
        let input = &spec.inputs[0];
        assert_eq!(input.provider, "minio.default");
        assert_eq!(
            (input.bucket.as_str(), input.folder.as_str()),
            ("in-bucket", "images")
        );
        assert!(input.holds("in-bucket", "images/a b.png"));
        assert!(!input.holds("in-bucket", "imagesX/a.png"));
        assert!(!input.holds("other", "images/a.png"));
        let output = &spec.outputs[0];
        // A bare name is a folder in the service's bucket.
        assert_eq!(
            (output.bucket.as_str(), output.folder.as_str()),
            ("svc", "results")
        );
        assert!(output.accepts("gray-1.png"));
        assert!(!output.accepts("gray-1.jpg"));
        assert!(!output.accepts("color.png"));
        assert_eq!(output.key_for("gray-1.png"), "results/gray-1.png");
        assert_eq!(spec.providers["s3.aws"].region, "us-east-1");
        assert!(!format!("{:?}", spec.providers["s3.aws"]).contains("SK"));
    }

    #[test]
    fn bad_fields_are_named() {
        for (value, field) in [
            (
                json!({"input": [{"storage_provider": "minio", "path": " / "}]}),
                "input[0].path",
            ),
            (
                json!({"input": [{"storage_provider": "minio.nope", "path": "b/f"}]}),
                "input[0].storage_provider",
            ),
            (
                json!({"input": [{"path": "b/f"}]}),
                "input[0].storage_provider",
            ),
            (
                json!({"input": [{"storage_provider": "minio", "path": "B_d/f"}]}),
                "input[0].path",
            ),
            (
                json!({"input": [{"storage_provider": "minio", "path": "bucket/../x"}]}),
                "input[0].path",
            ),
            (
                json!({"output": [{"storage_provider": "minio", "path": "bkt/x", "suffix": "png"}]}),
                "output[0].suffix",
            ),
            (json!({"input": "bkt"}), "input"),
            (
                json!({"storage_providers": {"minio": {"m": {"endpoint": "http://h", "access_key": "a"}}}}),
                "storage_providers.minio.m.secret_key",
            ),
            (
                json!({"storage_providers": {"minio": {"m": {"access_key": "a", "secret_key": "s"}}}}),
                "storage_providers.minio.m.endpoint",
            ),
            (
                json!({"storage_providers": {"s3": {"m": {"secret_key": "s"}}}}),
                "storage_providers.s3.m.access_key",
            ),
            (
                json!({"storage_providers": {"minio": {"m": {"endpoint": "ftp://h", "access_key": "a", "secret_key": "s"}}}}),
                "storage_providers.minio.m.endpoint",
            ),
        ] {
            let e = parse_json(value.clone()).unwrap_err();
            assert_eq!(e.field, field, "{value}: {e}");
        }
    }

    #[test]
    fn credentials_are_hidden_and_restored() {
        let stored = json!({"name": "s", "storage_providers": {"minio": {"m": {
            "endpoint": "http://h", "access_key": "AK", "secret_key": "SK"}}}});
        let stored = stored.as_object().unwrap();
        let shown = redact(stored);
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("AK") && !text.contains("SK"), "{text}");
        assert_eq!(
            shown["storage_providers"]["minio"]["m"]["endpoint"],
            "http://h"
        );
        let mut sent_back = shown.clone();
        restore_hidden(&mut sent_back, stored);
        assert_eq!(&sent_back, stored);
    }
}

#[cfg(test)]
mod isolation_tests {
    use super::*;
    use serde_json::json;

    fn spec(definition: Value) -> Result<StorageSpec, StorageError> {
        parse("s", definition.as_object().unwrap())
    }

    #[test]
    fn private_buckets_take_the_inputs_and_outputs_of_the_default_store() {
        let definition = json!({"isolation_level": "user", "bucket_list": ["iso-bob"],
            "storage_providers": {"s3": {"x": {"access_key": "a", "secret_key": "b"}}},
            "input": [{"storage_provider": "minio", "path": "iso/in"}],
            "output": [{"storage_provider": "minio.default", "path": "iso/out"},
                       {"storage_provider": "s3.x", "path": "archive/out"}]});
        let spec = spec(definition).unwrap();
        assert_eq!(spec.isolated, ["iso-bob"]);
        assert!(
            spec.paths().all(|p| p.bucket != "iso-bob"),
            "not the service's own"
        );
        let moved = spec.for_bucket("iso-bob");
        assert!(moved.input_for("iso-bob", "in/a.txt").is_some());
        assert!(moved.input_for("iso", "in/a.txt").is_none());
        let outputs: Vec<_> = moved.outputs.iter().map(|p| p.bucket.as_str()).collect();
        assert_eq!(outputs, ["iso-bob", "archive"], "only minio.default moves");
        // Any other bucket keeps the service's own storage.
        assert_eq!(*spec.for_bucket("iso"), spec);
    }

    #[test]
    fn isolation_levels_are_service_or_user() {
        let list = json!(["iso-bob"]);
        assert!(
            spec(json!({"isolation_level": "SERVICE", "bucket_list": list}))
                .unwrap()
                .isolated
                .is_empty()
        );
        assert!(spec(json!({"isolation_level": "tenant"})).is_err());
        assert!(spec(json!({"isolation_level": "USER", "bucket_list": ["../x"]})).is_err());
        assert!(spec(json!({"isolation_level": "USER", "bucket_list": "iso-bob"})).is_err());
    }
}
