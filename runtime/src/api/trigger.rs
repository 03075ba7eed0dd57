//! Whether an invocation body is a storage event (and which object it names), checked against
//! the service before anything runs or is queued.

use super::{ApiError, AppState};
use crate::registry::Deployed;
use crate::storage::event::{self, ObjectEvent, Trigger};
use crate::storage::spec::Provider;

/// What an invocation body is.
pub enum Body {
    /// An ordinary body: FaaS Supervisor's decoding rules apply.
    Plain,
    /// A storage event naming an object the service reads, and the provider it is read from.
    Event(Box<(ObjectEvent, Provider)>),
    /// A message to acknowledge without running anything (test event, SNS confirmation).
    Ignored(String),
}

/// Classifies `body`; a malformed event, or one for a key outside every input folder, is 400.
pub fn storage_trigger(app: &AppState, deployed: &Deployed, body: &[u8]) -> Result<Body, ApiError> {
    match event::parse(body) {
        None => Ok(Body::Plain),
        Some(Err(reason)) => Err(ApiError::BadRequest(format!(
            "invalid storage event: {reason}"
        ))),
        Some(Ok(Trigger::Ignore(message))) => Ok(Body::Ignored(message)),
        Some(Ok(Trigger::Object(event))) => {
            let provider = app
                .storage
                .source_for(&deployed.service.spec.storage, &event)
                .map_err(ApiError::BadRequest)?
                .clone();
            Ok(Body::Event(Box::new((event, provider))))
        }
    }
}
