//! Service files as users keep them: OSCAR's FDL (`functions.oscar[].<cluster>: definition`)
//! or one plain definition, in YAML or JSON (YAML parses both).
//!
//! As oscar-cli does, a `script` that names a file beside the service file is replaced by the
//! file's text. oscar-wasm adds two conveniences: a `module` that is not a digest names a .wasm
//! file beside the service file, and `packages` that are not a digest name a folder or zip of
//! Python packages beside it; `service apply` uploads both.

use super::{CliError, file_error};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One service definition read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The definition, as the API takes it (scripts inlined).
    pub value: Map<String, Value>,
    /// A module file to upload and attach, if the definition names one.
    pub module_file: Option<PathBuf>,
    /// A packages folder or zip to upload and attach, if the definition names one.
    pub packages_path: Option<PathBuf>,
}

impl Definition {
    /// The service's name.
    pub fn name(&self) -> &str {
        self.value.get("name").and_then(Value::as_str).unwrap_or("")
    }
}

/// Reads every definition of a service file.
pub fn read(path: &Path) -> Result<Vec<Definition>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| file_error(path, e))
}

/// Parses a service file's text; relative file names are resolved against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<Definition>, String> {
    let document: Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(top) = document else {
        return Err("expected a mapping: an FDL file or a service definition".into());
    };
    let raw = match top.get("functions") {
        Some(functions) => fdl_definitions(functions)?,
        None => vec![top],
    };
    if raw.is_empty() {
        return Err("no service definitions found under functions.oscar".into());
    }
    raw.into_iter().map(|value| resolve(value, base)).collect()
}

/// `functions.oscar` is a list of single-key mappings: cluster id -> definition.
fn fdl_definitions(functions: &Value) -> Result<Vec<Map<String, Value>>, String> {
    let list = functions
        .get("oscar")
        .and_then(Value::as_array)
        .ok_or("functions.oscar must be a list of `<cluster>: <definition>` entries")?;
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let by_cluster = entry.as_object().ok_or_else(|| {
            format!("functions.oscar[{i}] must be a mapping `<cluster>: <definition>`")
        })?;
        for (cluster, definition) in by_cluster {
            match definition {
                Value::Object(d) => out.push(d.clone()),
                _ => {
                    return Err(format!(
                        "functions.oscar[{i}].{cluster} must be a service definition (a mapping)"
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn resolve(mut value: Map<String, Value>, base: &Path) -> Result<Definition, String> {
    let name = match value.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err("every service definition needs a `name`".into()),
    };
    if let Some(Value::String(script)) = value.get("script")
        && !script.contains('\n')
    {
        let file = base.join(script);
        if file.is_file() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("service {name}: script {}: {e}", file.display()))?;
            value.insert("script".into(), Value::String(text));
        }
    }
    let mut local_file = |field: &str| match value.get(field) {
        Some(Value::String(m)) if !m.starts_with("sha256:") => {
            let file = base.join(m);
            value.remove(field);
            Some(file)
        }
        _ => None,
    };
    let module_file = local_file("module");
    let packages_path = local_file("packages");
    Ok(Definition {
        value,
        module_file,
        packages_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdl_with_script_and_module_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script.sh"), "echo hi\n").unwrap();
        let text = r#"
functions:
  oscar:
  - my-cluster:
      name: grayify
      memory: 256Mi
      cpu: '0.5'
      image: ghcr.io/example/imagemagick
      script: script.sh
      environment:
        variables:
          SIZE: "64"
  - other:
      name: gray-wasm
      module: dist/gray.wasm
"#;
        let defs = parse(text, dir.path()).unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].name(), "grayify");
        assert_eq!(defs[0].value["script"], "echo hi\n");
        assert_eq!(defs[0].value["cpu"], "0.5");
        assert_eq!(defs[0].value["environment"]["variables"]["SIZE"], "64");
        assert_eq!(defs[0].module_file, None);
        assert_eq!(defs[1].module_file, Some(dir.path().join("dist/gray.wasm")));
        assert!(!defs[1].value.contains_key("module"));
    }

    #[test]
    fn plain_definitions_in_json_or_yaml() {
        let base = Path::new("/nonexistent");
        let json = r#"{"name": "up", "module": "sha256:00", "script": "echo inline"}"#;
        let defs = parse(json, base).unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].value["module"], "sha256:00");
        // A script whose file does not exist stays as written.
        assert_eq!(defs[0].value["script"], "echo inline");
        let yaml = "name: up\nlog_level: CRITICAL\n";
        assert_eq!(parse(yaml, base).unwrap()[0].value["log_level"], "CRITICAL");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let base = Path::new(".");
        for (text, needle) in [
            ("- a\n- b\n", "expected a mapping"),
            ("functions: {}\n", "functions.oscar"),
            ("functions:\n  oscar: []\n", "no service definitions"),
            ("functions:\n  oscar:\n  - c: 3\n", "functions.oscar[0].c"),
            ("memory: 1Gi\n", "needs a `name`"),
            ("name: [unclosed\n", ""),
        ] {
            let err = parse(text, base).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
