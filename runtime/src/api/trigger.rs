//! What an invocation body is: a storage event (and which object it names, checked against the
//! service before anything runs or is queued), or an input file under FaaS Supervisor's rules.
//! A JSON object is parsed once, for both, and only up to `--max-json-body` bytes: as a tree
//! it takes many times its size in memory.

use super::{ApiError, AppState};
use crate::faas;
use crate::registry::Deployed;
use crate::storage::event::{self, ObjectEvent, Trigger};
use crate::storage::spec::Provider;

/// What an invocation body is.
pub enum Body {
    /// An ordinary body, decoded by FaaS Supervisor's rules into the input file's bytes.
    Plain(Vec<u8>),
    /// A storage event naming an object the service reads, and the provider it is read from.
    Event(Box<(ObjectEvent, Provider)>),
    /// A message to acknowledge without running anything (test event, SNS confirmation).
    Ignored(String),
}

/// Classifies `body`; a malformed event, or one for a key outside every input folder, is 400;
/// a JSON object over the size limit is 413.
pub fn classify(app: &AppState, deployed: &Deployed, body: &[u8]) -> Result<Body, ApiError> {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !is_object {
        return Ok(Body::Plain(faas::decode_body(body)?));
    }
    let limit = app.invocations.requests.max_json_body;
    if body.len() as u64 > limit {
        return Err(ApiError::TooLarge(format!(
            "a JSON body is limited to {limit} bytes on this server (--max-json-body); send larger inputs base64-encoded"
        )));
    }
    let map = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => map,
        // Not JSON after all (or not an object): the base64 rules decide.
        _ => return Ok(Body::Plain(faas::decode_body(body)?)),
    };
    let value = serde_json::Value::Object(map);
    match event::parse_value(&value) {
        None => Ok(Body::Plain(match value {
            serde_json::Value::Object(map) => faas::decode_json_object(map)?,
            _ => faas::decode_body(body)?,
        })),
        Some(Err(reason)) => Err(ApiError::BadRequest(format!(
            "invalid storage event: {reason}"
        ))),
        Some(Ok(Trigger::Ignore(message))) => Ok(Body::Ignored(message)),
        Some(Ok(Trigger::Object(event))) => {
            let provider = app
                .buckets
                .storage
                .source_for(
                    &deployed.service.spec.storage.for_bucket(&event.bucket),
                    &event,
                )
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .clone();
            Ok(Body::Event(Box::new((event, provider))))
        }
    }
}
