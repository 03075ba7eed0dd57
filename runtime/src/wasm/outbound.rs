//! Outbound network of guests: a service's allow-list (`allowed_outbound_hosts`, Spin's
//! spelling and meaning) and the sender of wasi:http's outgoing requests that enforces it.
//!
//! Nothing is reachable by default. An entry opens a scheme, a host (exact, `*.suffix`, or
//! `*`) and a port (default for the scheme when left out, `*` for any). The name is checked
//! against the list, then resolved here, and every address it resolves to is checked again
//! (loopback, link-local, private and other non-public ranges stay closed unless the server
//! runs with `--allow-local-endpoints`); the connection goes to a checked address only, so a
//! name cannot be rebound between the check and the connection. Redirects are not followed
//! (wasi:http never does): a guest that follows one makes a new request, checked the same.
//! Each connection ends with the invocation's deadline; response bodies are bounded.

use axum::http;
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Longest wait for a name to resolve.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a connection when the guest sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an allow-list entry is not one; the definition's author's to fix (HTTP 400).
#[derive(Debug, thiserror::Error)]
#[error(
    "allowed_outbound_hosts: {entry:?} {reason} (write scheme://host[:port], e.g. \"https://api.example.com\", \"https://*.example.com:8443\", \"http://127.0.0.1:*\")"
)]
pub struct AllowListError {
    entry: String,
    reason: &'static str,
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `http`, `https`, or `None` for any.
    scheme: Option<String>,
    /// Lower-case host; `*.example.com` matches its subdomains, `*` any host.
    host: String,
    /// `None` for any port.
    port: Option<u16>,
}

/// The destinations a service may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

impl AllowList {
    /// Parses a definition's entries.
    pub fn parse(entries: &[String]) -> Result<Self, AllowListError> {
        entries
            .iter()
            .map(|e| parse_rule(e))
            .collect::<Result<Vec<_>, _>>()
            .map(|rules| Self { rules })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `scheme://host:port` is on the list.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules.iter().any(|r| {
            r.scheme.as_deref().is_none_or(|s| s == scheme)
                && r.port.is_none_or(|p| p == port)
                && host_matches(&r.host, &host)
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule, AllowListError> {
    let bad = |reason| AllowListError {
        entry: entry.to_string(),
        reason,
    };
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or_else(|| bad("has no scheme"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "*" => None,
        s @ ("http" | "https") => Some(s.to_string()),
        _ => return Err(bad("has a scheme other than http, https or *")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(bad("must be a scheme, a host and a port only"));
    }
    // An IPv6 address is bracketed, so its colons are not the port's.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid_host = host == "*"
        || host
            .strip_prefix("*.")
            .unwrap_or(&host)
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            && !host.is_empty()
            && !host.strip_prefix("*.").unwrap_or(&host).contains('*');
    if !valid_host {
        return Err(bad("has an invalid host"));
    }
    let port = match (port, scheme.as_deref()) {
        (Some("*"), _) => None,
        (Some(p), _) => Some(p.parse::<u16>().map_err(|_| bad("has an invalid port"))?),
        (None, Some("http")) => Some(80),
        (None, Some("https")) => Some(443),
        (None, _) => return Err(bad("needs a port when its scheme is *")),
    };
    Ok(Rule { scheme, host, port })
}

fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        None => pattern == host,
    }
}

/// Whether `ip` is one a guest may reach without `--allow-local-endpoints`: a public unicast
/// address (not loopback, link-local, private, shared, unspecified, multicast, broadcast or
/// documentation ranges; IPv4-mapped IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// One invocation's outbound sender: its service's list, the server's local rule, its
/// deadline and its bound on response bodies.
#[derive(Clone)]
pub struct Outbound {
    /// The service's allow-list.
    pub allow: Arc<AllowList>,
    /// `--allow-local-endpoints`.
    pub allow_local: bool,
    /// When every connection ends.
    pub deadline: Instant,
    /// Bytes a response body may hold.
    pub max_response: u64,
    /// The service, for the server's log of refusals.
    pub service: Arc<str>,
    /// Refusals of this invocation, for its own log (at most [`MAX_REFUSALS_KEPT`]).
    pub refusals: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Refusals kept per invocation for its log; the rest are counted in the server's log only.
pub const MAX_REFUSALS_KEPT: usize = 16;

impl Outbound {
    /// The destination of `uri` if it may be reached: the checked addresses, the host name
    /// (for TLS) and whether it is HTTPS.
    async fn resolve(&self, uri: &http::Uri) -> Result<Destination, HttpError> {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let scheme = if https { "https" } else { "http" };
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allow.allows(scheme, &host, port) {
            return Err(self.refuse(
                format!("{scheme}://{host}:{port} is not in allowed_outbound_hosts"),
                HttpError::HttpRequestDenied,
            ));
        }
        let resolved =
            tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| HttpError::DnsTimeout)?
                .map_err(|e| HttpError::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                })?;
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            resolved.partition(|a| self.allow_local || is_public(a.ip()));
        if allowed.is_empty() {
            let shown: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
            return Err(self.refuse(
                format!(
                    "{host} resolves to {} only, on this machine or a private network (--allow-local-endpoints)",
                    shown.join(", ")
                ),
                HttpError::DestinationIpProhibited,
            ));
        }
        Ok(Destination {
            addrs: allowed,
            host,
            https,
        })
    }

    fn refuse(&self, why: String, error: HttpError) -> HttpError {
        tracing::warn!(service = %self.service, "outbound request refused: {why}");
        if let Ok(mut kept) = self.refusals.lock()
            && kept.len() < MAX_REFUSALS_KEPT
        {
            kept.push(why);
        }
        error
    }

    /// The refusals so far, for the invocation's log.
    pub fn take_refusals(&self) -> Vec<String> {
        self.refusals
            .lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default()
    }
}

struct Destination {
    addrs: Vec<SocketAddr>,
    host: String,
    https: bool,
}

type IoFuture = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn std::future::Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>>
            + Send,
    > {
        let this = self.clone();
        Box::new(async move {
            let deadline = this.deadline;
            tokio::time::timeout_at(deadline, send(this, request, options))
                .await
                .unwrap_or(Err(HttpError::ConnectionTimeout))
        })
    }
}

async fn send(
    this: Outbound,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let destination = this.resolve(request.uri()).await?;
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let tcp = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect(&destination.addrs[..]),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)?
    .map_err(HttpError::Connect)?;
    let _ = tcp.set_nodelay(true);
    // The request line is origin-form; wasi:http already set the Host header.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let (mut sender, connection): (_, IoFuture) = if destination.https {
        let tls = tls_connect(&destination.host, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        (
            sender,
            Box::new(async move { conn.await.map_err(HttpError::from) }),
        )
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        (
            sender,
            Box::new(async move { conn.await.map_err(HttpError::from) }),
        )
    };
    // The connection is driven while the guest reads the answer, and stops at the deadline.
    let deadline = this.deadline;
    let io: IoFuture = Box::new(async move {
        tokio::time::timeout_at(deadline, Box::into_pin(connection))
            .await
            .unwrap_or(Err(HttpError::ConnectionTimeout))
    });
    let driver = tokio::spawn(Box::into_pin(io));
    let response = sender.send_request(request).await?;
    let max = this.max_response;
    let response = response.map(|body| {
        http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
            .map_err(move |e| match e.downcast::<hyper::Error>() {
                Ok(e) => HttpError::from(*e),
                Err(_) => HttpError::HttpResponseBodySize(Some(max)),
            })
            .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        driver
            .await
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
    });
    Ok((response, io))
}

async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::from(ip),
        Err(_) => rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?,
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(HttpError::Tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn entries_follow_spins_spelling() {
        let l = list(&[
            "https://api.example.com",
            "http://*.internal.example:8080",
            "*://any.example:*",
            "http://127.0.0.1:*",
            "https://[2001:db8::1]:8443",
        ]);
        assert!(l.allows("https", "api.example.com", 443));
        assert!(l.allows("https", "API.Example.com.", 443));
        assert!(
            !l.allows("http", "api.example.com", 80),
            "scheme is part of the rule"
        );
        assert!(
            !l.allows("https", "api.example.com", 8443),
            "default port only"
        );
        assert!(!l.allows("https", "evil-api.example.com", 443));
        assert!(l.allows("http", "a.b.internal.example", 8080));
        assert!(
            !l.allows("http", "internal.example", 8080),
            "*. is subdomains only"
        );
        assert!(!l.allows("http", "xinternal.example", 8080));
        assert!(l.allows("http", "any.example", 1) && l.allows("https", "any.example", 9));
        assert!(l.allows("http", "127.0.0.1", 5000));
        assert!(!l.allows("https", "127.0.0.1", 5000));
        assert!(l.allows("https", "2001:db8::1", 8443));
        assert!(AllowList::default().is_empty());
        assert!(!AllowList::default().allows("https", "example.com", 443));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:99999",
            "*://example.com",
            "https://",
            "https://ex*ample.com",
        ] {
            assert!(
                AllowList::parse(&[bad.to_string()]).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(local.parse().unwrap()), "{local}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
