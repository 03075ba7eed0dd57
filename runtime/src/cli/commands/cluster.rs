//! `oscar-wasm cluster add | list | default | remove`: the clusters file.

use crate::cli::clusters::{self, Cluster, Clusters};
use crate::cli::render::{print_json, table};
use crate::cli::{CliError, ClusterArgs, ClusterCommand};

/// Runs a cluster subcommand.
pub fn cluster(args: ClusterArgs) -> Result<(), CliError> {
    let path = clusters::path().ok_or_else(|| {
        CliError::Usage("no config folder: set HOME, XDG_CONFIG_HOME or OSCAR_WASM_CLUSTERS".into())
    })?;
    let mut file = Clusters::load(&path)?;
    match args.command {
        ClusterCommand::Add {
            name,
            endpoint,
            user,
            password,
            disable_ssl,
            default,
        } => {
            file.oscar.insert(
                name.clone(),
                Cluster {
                    endpoint,
                    auth_user: user,
                    auth_password: password,
                    ssl_verify: !disable_ssl,
                },
            );
            if default || file.default.is_none() {
                file.default = Some(name.clone());
            }
            file.save(&path)?;
            eprintln!("cluster {name} saved in {}", path.display());
        }
        ClusterCommand::List => {
            if args.json {
                // Passwords stay in the file.
                let listed: Vec<_> = file
                    .oscar
                    .iter()
                    .map(|(name, c)| {
                        serde_json::json!({
                            "name": name, "endpoint": c.endpoint, "user": c.auth_user,
                            "ssl_verify": c.ssl_verify,
                            "default": file.default.as_deref() == Some(name.as_str()),
                        })
                    })
                    .collect();
                return print_json(&listed);
            }
            let rows = file
                .oscar
                .iter()
                .map(|(name, c)| {
                    let mark = if file.default.as_deref() == Some(name.as_str()) {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        mark.to_string(),
                        name.clone(),
                        c.endpoint.clone(),
                        c.auth_user.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["DEFAULT", "NAME", "ENDPOINT", "USER"], rows));
        }
        ClusterCommand::Default { name } => {
            if !file.oscar.contains_key(&name) {
                return Err(CliError::Usage(format!("no cluster named {name:?}")));
            }
            file.default = Some(name);
            file.save(&path)?;
        }
        ClusterCommand::Remove { name } => {
            if file.oscar.remove(&name).is_none() {
                return Err(CliError::Usage(format!("no cluster named {name:?}")));
            }
            if file.default.as_deref() == Some(name.as_str()) {
                file.default = None;
            }
            file.save(&path)?;
        }
    }
    Ok(())
}
