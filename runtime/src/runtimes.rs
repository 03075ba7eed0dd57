//! The script runtimes this server ships: a definition whose `image` names one
//! (`oscar-wasm/python:3.14`, `oscar-wasm/javascript:1`) and whose `script` is a program in its language becomes a wasm
//! service running that program, with no build on the user's side. The runtime is one
//! `wasi:cli/command` component per language (built by `runtimes/<language>/build.sh` into
//! `--runtimes-dir`), stored and compiled once like any module and shared by every service of
//! that language; each service's script reaches it as a read-only folder at [`APP_DIR`].
//! A leaf: it imports nothing of the crate.

use serde_json::{Map, Value};

/// One runtime: the image name that selects it and the component file that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// What a definition's `image` says.
    pub image: &'static str,
    /// The component, in `--runtimes-dir`.
    pub file: &'static str,
    /// The language, for messages.
    pub language: &'static str,
    /// The script's file name in [`APP_DIR`].
    pub script_file: &'static str,
    /// The script that builds the component.
    pub build_script: &'static str,
    /// Whether its runner puts `/oscar/app/lib` (a service's packages) on its import path.
    pub takes_packages: bool,
}

/// Python 3.14: CPython from componentize-py, `runtimes/python`.
pub const PYTHON: Runtime = Runtime {
    image: "oscar-wasm/python:3.14",
    file: "python-3.14.wasm",
    language: "Python",
    script_file: "script.py",
    build_script: "runtimes/python/build.sh",
    takes_packages: true,
};

/// JavaScript: StarlingMonkey (SpiderMonkey) from componentize-js, `runtimes/javascript`; the
/// `1` is the version of the API its runner gives scripts (files, environment, exit).
pub const JAVASCRIPT: Runtime = Runtime {
    image: "oscar-wasm/javascript:1",
    file: "javascript-1.wasm",
    language: "JavaScript",
    script_file: "script.js",
    build_script: "runtimes/javascript/build.sh",
    takes_packages: false,
};

/// Every runtime this server knows.
pub const ALL: &[Runtime] = &[PYTHON, JAVASCRIPT];

/// The image names reserved for runtimes start with this.
pub const PREFIX: &str = "oscar-wasm/";

/// Where the guest sees the service's script folder (read-only).
pub const APP_DIR: &str = "/oscar/app";

/// The runtime `image` names: `None` when it names none (a registry's image), `Err` when it
/// is in the runtimes' namespace but names no runtime this server has.
pub fn named(image: &str) -> Option<Result<Runtime, String>> {
    let image = image.trim();
    if !image.starts_with(PREFIX) {
        return None;
    }
    Some(
        ALL.iter()
            .copied()
            .find(|r| r.image == image)
            .ok_or_else(|| {
                let known: Vec<&str> = ALL.iter().map(|r| r.image).collect();
                format!(
                    "{image} is not a runtime of this server; it has {}",
                    known.join(", ")
                )
            }),
    )
}

/// The packages (`sha256:<hex>` of a zip in the package store) a script service names.
pub fn packages_of(definition: &Map<String, Value>) -> Option<&str> {
    definition
        .get("packages")?
        .as_str()
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The runtime and script of a service that runs one.
pub fn of(definition: &Map<String, Value>) -> Option<(Runtime, &str)> {
    let runtime = named(definition.get("image")?.as_str()?)?.ok()?;
    let script = definition.get("script")?.as_str()?;
    Some((runtime, script))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runtime_images_are_recognised_and_others_left_alone() {
        assert_eq!(named("oscar-wasm/python:3.14"), Some(Ok(PYTHON)));
        assert_eq!(named("oscar-wasm/javascript:1"), Some(Ok(JAVASCRIPT)));
        assert!(named("oscar-wasm/python:2.7").unwrap().is_err());
        assert_eq!(named("ghcr.io/grycap/cowsay"), None);
        let definition = json!({"image": "oscar-wasm/python:3.14", "script": "print(1)"});
        let (runtime, script) = of(definition.as_object().unwrap()).unwrap();
        assert_eq!((runtime, script), (PYTHON, "print(1)"));
        assert!(
            of(json!({"image": "alpine", "script": "x"})
                .as_object()
                .unwrap())
            .is_none()
        );
    }
}
