//! A small HTTP service in the `wasi:http/proxy` world, showing what one can do here:
//!
//! - `GET /...` answers with the method, path and query it saw (as text);
//! - `POST .../upper` streams the request body back upper-cased, chunk by chunk, never holding
//!   the whole body;
//! - `GET .../fetch?url=http://host:port/path` makes an outbound request (allowed only where the
//!   service's `allowed_outbound_hosts` says) and answers with its status and body, or the
//!   error code the host refused it with;
//! - `GET .../alloc?mib=N` allocates N MiB (to meet the service's memory limit);
//! - `GET .../spin` never answers (to meet the service's timeout).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Hello;

wasi::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_with_query.clone(), String::new()),
        };
        // Served at /system/services/{name}/exposed/..., it routes on its last segment, so the
        // same paths work with and without `rewrite_target` (and under `wasmtime serve`).
        let route = path.rsplit('/').next().unwrap_or_default();
        match (request.method(), route) {
            (Method::Post, "upper") => upper(request, out),
            (Method::Get, "fetch") => {
                let answer = match param(&query, "url") {
                    Some(url) => fetch(&url),
                    None => (400, b"name a url: /fetch?url=http://host:port/path\n".to_vec()),
                };
                respond(out, answer.0, &answer.1);
            }
            (Method::Get, "alloc") => {
                let mib: usize = param(&query, "mib").and_then(|m| m.parse().ok()).unwrap_or(1);
                let mut held = Vec::new();
                for _ in 0..mib {
                    held.push(vec![1u8; 1 << 20]);
                }
                let text = format!("allocated {} MiB\n", held.len());
                respond(out, 200, text.as_bytes());
            }
            (Method::Get, "spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            (method, _) => {
                let text = format!("{method:?} {path} query={query}\n");
                println!("served {path}");
                respond(out, 200, text.as_bytes());
            }
        }
    }
}

/// Sends `body` with `status` and a text content type.
fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set(&"content-type".to_string(), &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// The request body back, upper-cased as it streams.
fn upper(request: IncomingRequest, out: ResponseOutparam) {
    let response = OutgoingResponse::new(Fields::new());
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    let Ok(incoming) = request.consume() else { return };
    let (Ok(input), Ok(output)) = (incoming.stream(), outgoing.write()) else {
        return;
    };
    while let Ok(mut chunk) = input.blocking_read(64 * 1024) {
        chunk.make_ascii_uppercase();
        for part in chunk.chunks(4096) {
            if output.blocking_write_and_flush(part).is_err() {
                return;
            }
        }
    }
    drop(output);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// The value of `key` in a query string (no percent-decoding beyond `%2F` and `%3A`).
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.replace("%3A", ":").replace("%2F", "/"))
    })
}

/// GETs `url`, following up to three redirects as a browser would (each a new request, which
/// the host checks against the allow-list again); the status and body, or 502 and the error
/// the host refused it with.
fn fetch(url: &str) -> (u16, Vec<u8>) {
    let mut url = url.to_string();
    for _ in 0..3 {
        match get(&url) {
            Fetched::Redirect(to) => url = to,
            Fetched::Done(status, body) => return (status, body),
        }
    }
    (502, b"too many redirects\n".to_vec())
}

enum Fetched {
    Redirect(String),
    Done(u16, Vec<u8>),
}

fn get(url: &str) -> Fetched {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Fetched::Done(400, b"the url must start with http:// or https://\n".to_vec()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&scheme));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let refused = |e: String| Fetched::Done(502, format!("outbound request failed: {e}\n").into_bytes());
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return refused(format!("{code:?}")),
    };
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return refused(format!("{code:?}")),
        _ => return refused("no response".into()),
    };
    let status = response.status();
    if (300..400).contains(&status)
        && let Some(location) = response.headers().get(&"location".to_string()).first()
    {
        return Fetched::Redirect(String::from_utf8_lossy(location).into_owned());
    }
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    let mut answer = format!("upstream status {status}\n").into_bytes();
    answer.extend_from_slice(&body);
    Fetched::Done(200, answer)
}
