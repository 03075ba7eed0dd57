//! A wasi-http handler answering the request body upper-cased.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Upper;

wasi::http::proxy::export!(Upper);

impl Guest for Upper {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut bytes = Vec::new();
        if let Ok(body) = request.consume() {
            if let Ok(stream) = body.stream() {
                while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                    bytes.extend_from_slice(&chunk);
                }
            }
        }
        bytes.make_ascii_uppercase();
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            // blocking_write_and_flush takes at most 4096 bytes a call.
            for chunk in bytes.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
