//! Which server a client command talks to, with which credentials, and the HTTP client that
//! turns its answers into [`CliError`]s.
//!
//! Precedence: flags, then their environment variables, then the cluster named by `--cluster`
//! (or the default one) in the clusters file, then `http://127.0.0.1:8080` as user `oscar`
//! without a password (what `oscar-wasm serve` gives by default).

use super::CliError;
use super::clusters::{self, Clusters};
use reqwest::Url;
use reqwest::blocking::{RequestBuilder, Response};
use std::time::Duration;

/// Flags shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The server's URL [default: the cluster's, else http://127.0.0.1:8080].
    #[arg(long, env = "OSCAR_WASM_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// The administrator's user name [default: the cluster's, else oscar].
    #[arg(long, env = "OSCAR_WASM_USER", global = true)]
    pub user: Option<String>,
    /// The administrator's password [default: the cluster's].
    #[arg(
        long,
        env = "OSCAR_WASM_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// A cluster of the clusters file (`oscar-wasm cluster list`) [default: its default].
    #[arg(long, env = "OSCAR_WASM_CLUSTER", global = true)]
    pub cluster: Option<String>,
    /// Print JSON (for scripts) instead of tables and text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connection to one server.
pub struct Client {
    http: reqwest::blocking::Client,
    endpoint: Url,
    user: String,
    password: Option<String>,
}

impl Client {
    /// Resolves the endpoint and credentials and builds the HTTP client.
    pub fn connect(args: &ConnectionArgs) -> Result<Self, CliError> {
        let file = match clusters::path() {
            Some(path) if args.endpoint.is_none() || args.cluster.is_some() => {
                Clusters::load(&path)?
            }
            _ => Clusters::default(),
        };
        let cluster = file.select(args.cluster.as_deref())?.map(|(_, c)| c);
        let endpoint = args
            .endpoint
            .clone()
            .or_else(|| cluster.map(|c| c.endpoint.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let user = args
            .user
            .clone()
            .or_else(|| cluster.map(|c| c.auth_user.clone()))
            .unwrap_or_else(|| "oscar".into());
        let password = args
            .password
            .clone()
            .or_else(|| cluster.and_then(|c| c.auth_password.clone()))
            .filter(|p| !p.is_empty());
        let verify = cluster.is_none_or(|c| c.ssl_verify);
        let endpoint = Url::parse(&endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "endpoint {endpoint:?} is not an http:// or https:// URL"
                ))
            })?;
        let http = reqwest::blocking::Client::builder()
            // Invocations last as long as the service's timeout; the server enforces it.
            .timeout(None)
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(!verify)
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            user,
            password,
        })
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The URL of a path made of `segments`, each percent-encoded (a name can never climb out
    /// of its route), plus a query.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A request with the administrator's credentials (none when no password is known: an
    /// open local server).
    pub fn admin(&self, method: reqwest::Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.password {
            Some(p) => request.basic_auth(&self.user, Some(p)),
            None => request,
        }
    }

    /// A request to invoke a service: with its token when given, else as the administrator.
    pub fn invoker(&self, url: Url, token: Option<&str>) -> RequestBuilder {
        match token {
            Some(t) => self.http.post(url).bearer_auth(t),
            None => self.admin(reqwest::Method::POST, url),
        }
    }

    /// Sends a request; connection failures become [`CliError::Unreachable`].
    pub fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        request.send().map_err(|e| CliError::Unreachable {
            endpoint: self.endpoint.to_string(),
            reason: error_chain(&e),
        })
    }

    /// Sends a request and insists on a success status.
    pub fn send_ok(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = self.send(request)?;
        check(response)
    }
}

/// A success answer as is; any other becomes [`CliError::Refused`] or [`CliError::Server`]
/// with the server's message.
pub fn check(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut message = response.text().unwrap_or_default().trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let status = status.as_u16();
    if (400..500).contains(&status) {
        Err(CliError::Refused { status, message })
    } else {
        Err(CliError::Server { status, message })
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The `digest` of an upload's answer (POST /system/modules or /system/packages).
pub fn stored_digest(response: Response) -> Result<String, CliError> {
    let stored: serde_json::Value = response
        .json()
        .map_err(|e| CliError::Usage(format!("unexpected answer to the upload: {e}")))?;
    stored["digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| CliError::Usage("the upload's answer has no digest".into()))
}
