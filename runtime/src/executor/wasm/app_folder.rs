//! A script service's own folder, `/oscar/app` in the guest (read-only): its script and, when
//! its definition names packages, their files unpacked under `lib/`. Kept at
//! `apps_root/<sha256 of runtime, script and packages>/`, made once (atomically, in a staging
//! folder renamed into place) and shared by every service with the same three.

use super::super::invocation::InvokeError;
use crate::modules::Digest;
use crate::packages::Packages;
use crate::registry::Deployed;
use std::path::{Path, PathBuf};

/// The packages a script service names whose folder this server has not made yet: read
/// them (asynchronously, from a store that may be remote) before the blocking run.
pub async fn packages_to_unpack(
    packages: &Packages,
    deployed: &Deployed,
) -> Result<Option<Vec<u8>>, InvokeError> {
    if deployed.app_dir.get().is_some() {
        return Ok(None);
    }
    let Some(text) = crate::runtimes::packages_of(&deployed.service.definition) else {
        return Ok(None);
    };
    let digest = Digest::parse(text)
        .map_err(|e| InvokeError::Unavailable(format!("its packages {text:?}: {e}")))?;
    packages
        .read(&digest)
        .await
        .map(Some)
        .map_err(|e| InvokeError::Unavailable(e.to_string()))
}

/// The folder of a runtime service (made now if needed, from `packages`, the zip that
/// [`packages_to_unpack`] read); `None` for any other service.
pub fn folder(
    apps_root: &Path,
    deployed: &Deployed,
    packages: Option<Vec<u8>>,
) -> Result<Option<PathBuf>, InvokeError> {
    let definition = &deployed.service.definition;
    let Some((runtime, script)) = crate::runtimes::of(definition) else {
        return Ok(None);
    };
    if let Some(dir) = deployed.app_dir.get() {
        return Ok(Some(dir.clone()));
    }
    let named = crate::runtimes::packages_of(definition);
    use sha2::Digest as _;
    // Keyed by the runtime too: the same text as Python and as JavaScript is two folders.
    let mut digest = sha2::Sha256::new();
    for part in [runtime.image, script, named.unwrap_or("")] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let dir = apps_root.join(hex::encode(digest.finalize()));
    if !dir.join(runtime.script_file).is_file() {
        let staging = apps_root.join(format!(".{}", uuid::Uuid::new_v4().simple()));
        let made = make(&staging, runtime.script_file, script, named, packages);
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        // Another call may have made it meanwhile: theirs is the same.
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    Ok(Some(deployed.app_dir.get_or_init(|| dir).clone()))
}

fn make(
    staging: &Path,
    script_file: &str,
    script: &str,
    named: Option<&str>,
    packages: Option<Vec<u8>>,
) -> Result<(), InvokeError> {
    let host = |e: std::io::Error| InvokeError::Host(e.to_string());
    crate::fsutil::create_private_dir(staging).map_err(host)?;
    if let Some(named) = named {
        let zip = packages.ok_or_else(|| {
            InvokeError::Unavailable(format!("its packages {named} were not read"))
        })?;
        crate::packages::unpack(&zip, &staging.join("lib"))
            .map_err(|e| InvokeError::Unavailable(e.to_string()))?;
    }
    // The script last: its presence says the folder is whole.
    std::fs::write(staging.join(script_file), script).map_err(host)
}
