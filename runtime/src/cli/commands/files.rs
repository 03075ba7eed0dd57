//! `oscar-wasm service put-file | get-file | list-files`: files in a service's storage, as
//! oscar-cli offers them. The cluster's own store (`minio.default`) is reached with the
//! credentials GET /system/config gives the administrator; other providers' credentials are
//! never returned by the server, so their owners' S3 clients reach them instead.

use crate::cli::connection::Client;
use crate::cli::render::{print_json, size, table};
use crate::cli::{CliError, file_error};
use crate::storage::objects;
use crate::storage::spec::{DEFAULT_PROVIDER, Provider};
use futures::StreamExt;
use object_store::ObjectStore;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

/// The provider's settings, after checking that the service exists.
fn provider(client: &Client, service: &str, reference: &str) -> Result<Provider, CliError> {
    client.send_ok(client.admin(
        Method::GET,
        client.url(&["system", "services", service], &[]),
    ))?;
    let reference = if reference.contains('.') {
        reference.to_string()
    } else {
        format!("{reference}.default")
    };
    if reference != DEFAULT_PROVIDER {
        return Err(CliError::Usage(format!(
            "{reference}: the server never returns a provider's credentials; use that store's own \
             client (only {DEFAULT_PROVIDER}, the cluster's store, is reachable through oscar-wasm)"
        )));
    }
    let config: Value = client
        .send_ok(client.admin(Method::GET, client.url(&["system", "config"], &[])))?
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer from /system/config: {e}")))?;
    let minio = &config["minio_provider"];
    let text = |k: &str| minio[k].as_str().unwrap_or("").to_string();
    Ok(Provider {
        reference,
        endpoint: Some(text("endpoint")).filter(|e| !e.is_empty()),
        region: Some(text("region"))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into()),
        access_key: text("access_key"),
        secret_key: text("secret_key"),
        verify: minio["verify"].as_bool().unwrap_or(true),
    })
}

/// `BUCKET/KEY` into its parts.
fn split(remote: &str, need_key: bool) -> Result<(String, String), CliError> {
    let remote = remote.trim_matches('/');
    let (bucket, key) = remote.split_once('/').unwrap_or((remote, ""));
    if bucket.is_empty() || (need_key && key.is_empty()) {
        return Err(CliError::Usage(format!(
            "{remote:?}: expected BUCKET/{}",
            if need_key { "KEY" } else { "FOLDER" }
        )));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))
}

fn storage_failure(e: impl std::fmt::Display) -> CliError {
    CliError::Server {
        status: 502,
        message: e.to_string(),
    }
}

/// Uploads `local` to `remote` (`BUCKET/KEY`).
pub fn put(
    client: &Client,
    service: &str,
    reference: &str,
    local: &Path,
    remote: &str,
    json: bool,
) -> Result<(), CliError> {
    let provider = provider(client, service, reference)?;
    let (bucket, key) = split(remote, true)?;
    let bytes = std::fs::read(local).map_err(|e| file_error(local, e))?;
    let len = bytes.len();
    runtime()?
        .block_on(objects::upload(&provider, &bucket, &key, bytes))
        .map_err(storage_failure)?;
    if json {
        return print_json(&json!({"bucket": bucket, "key": key, "size": len}));
    }
    eprintln!(
        "uploaded {} to s3://{bucket}/{key} ({len} bytes)",
        local.display()
    );
    Ok(())
}

/// Downloads `remote` (`BUCKET/KEY`) to `local`.
pub fn get(
    client: &Client,
    service: &str,
    reference: &str,
    remote: &str,
    local: &Path,
    json: bool,
) -> Result<(), CliError> {
    let provider = provider(client, service, reference)?;
    let (bucket, key) = split(remote, true)?;
    let size = runtime()?
        .block_on(objects::download(&provider, &bucket, &key, local))
        .map_err(storage_failure)?;
    if json {
        return print_json(&json!({"bucket": bucket, "key": key, "size": size}));
    }
    eprintln!(
        "downloaded s3://{bucket}/{key} to {} ({size} bytes)",
        local.display()
    );
    Ok(())
}

/// Lists the objects under `remote` (`BUCKET` or `BUCKET/FOLDER`).
pub fn list(
    client: &Client,
    service: &str,
    reference: &str,
    remote: &str,
    json: bool,
) -> Result<(), CliError> {
    let provider = provider(client, service, reference)?;
    let (bucket, folder) = split(remote, false)?;
    let store = objects::bucket(&provider, &bucket).map_err(storage_failure)?;
    let prefix = (!folder.is_empty()).then(|| object_store::path::Path::from(folder.as_str()));
    let objects = runtime()?.block_on(async {
        let mut listing = store.list(prefix.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            found.push(meta.map_err(storage_failure)?);
        }
        Ok::<_, CliError>(found)
    })?;
    if json {
        let listed: Vec<Value> = objects
            .iter()
            .map(|m| {
                json!({"key": m.location.to_string(), "size": m.size,
                       "last_modified": m.last_modified.to_rfc3339()})
            })
            .collect();
        return print_json(&listed);
    }
    let rows = objects
        .iter()
        .map(|m| {
            vec![
                m.location.to_string(),
                size(m.size),
                m.last_modified.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["KEY", "SIZE", "MODIFIED"], rows));
    Ok(())
}
