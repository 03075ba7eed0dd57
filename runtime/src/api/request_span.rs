//! Each request's identity in the logs: a request id (the client's `X-Request-ID` when it is
//! a sane one, else a fresh one) and the trace id of a W3C `traceparent` header, held by a
//! tracing span around the request so that every log line it causes carries them, and the
//! request id echoed in the answer's `X-Request-ID`.

use crate::protocol::headers;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The id of the request being served, for handlers that name it (a /run's invocation).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Longest client-chosen request id kept; a longer or odd one is replaced.
const MAX_CLIENT_ID: usize = 128;

/// Wraps the request in a `request` span and answers its id.
pub async fn trace_request(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| client_id_is_sane(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let trace_id = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_of);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    if let Some(trace_id) = trace_id {
        span.record("trace_id", trace_id);
        crate::telemetry::continue_trace(&span, request.headers());
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(headers::REQUEST_ID, value);
    }
    response
}

/// Printable ASCII without spaces, bounded: safe in a log line and a header.
fn client_id_is_sane(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), unless it is
/// malformed or all zeros (invalid by the specification).
fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_read_from_valid_traceparents_only() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
        // A later version may add fields after the four it shares with version 00.
        assert!(trace_id_of("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn only_sane_client_ids_are_kept() {
        assert!(client_id_is_sane("abc-123"));
        assert!(!client_id_is_sane(""));
        assert!(!client_id_is_sane("a b"));
        assert!(!client_id_is_sane("line\nbreak"));
        assert!(!client_id_is_sane(&"x".repeat(MAX_CLIENT_ID + 1)));
    }
}
