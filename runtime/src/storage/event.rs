//! Storage events, as FaaS Supervisor reads them: MinIO's bucket notification
//! (`eventSource` `minio:s3`), AWS S3's (`aws:s3`), either inside an SNS envelope
//! (`{"Type": "Notification", "Message": "<the event as a JSON string>"}`), and the messages
//! that must be answered without running anything: S3's `s3:TestEvent` and SNS subscription
//! confirmations.

use serde_json::Value;

/// What an invocation body that is a storage event asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Nothing to run (a test event, a subscription confirmation); the reason, for the answer.
    Ignore(String),
    /// An object was created: process it.
    Object(ObjectEvent),
}

/// The object an event names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEvent {
    /// `minio:s3` or `aws:s3`.
    pub source: String,
    /// The bucket.
    pub bucket: String,
    /// The object key, URL-unquoted (`+` is a space), as FaaS Supervisor does.
    pub key: String,
    /// `eventTime`, as given.
    pub time: String,
    /// The event itself (the record's event, unwrapped from SNS), for the module's `EVENT`.
    pub event: String,
    /// The object's version (ETag) when the poller found it, so that a crash cannot enqueue
    /// the same version twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ObjectEvent {
    /// The key's last segment: the input file's name.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// Reads a body as a storage event. `None`: it is not one (an ordinary invocation body).
/// `Some(Err)`: it looks like one but is malformed.
pub fn parse(body: &[u8]) -> Option<Result<Trigger, String>> {
    // Only an object can be an event: anything else is not parsed at all.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    parse_value(&value)
}

/// [`parse`] of a body already parsed as JSON.
pub fn parse_value(value: &Value) -> Option<Result<Trigger, String>> {
    classify(value, 0)
}

fn classify(value: &Value, depth: u8) -> Option<Result<Trigger, String>> {
    let object = value.as_object()?;
    match object.get("Type").and_then(Value::as_str) {
        Some(t @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) => {
            return Some(Ok(Trigger::Ignore(format!(
                "SNS {t} received; nothing was run. To confirm a subscription, open its SubscribeURL"
            ))));
        }
        Some("Notification") if depth == 0 => {
            let Some(message) = object.get("Message").and_then(Value::as_str) else {
                return Some(Err("SNS notification without a Message".into()));
            };
            return match serde_json::from_str::<Value>(message) {
                Ok(inner) => classify(&inner, depth + 1)
                    .or_else(|| Some(Err("the SNS message is not a storage event".into()))),
                Err(e) => Some(Err(format!("the SNS message is not JSON: {e}"))),
            };
        }
        _ => {}
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Some(Ok(Trigger::Ignore(
            "s3:TestEvent received; nothing was run".into(),
        )));
    }
    let records = object.get("Records")?.as_array()?;
    let record = records.first()?;
    let source = record.get("eventSource").and_then(Value::as_str)?;
    if !matches!(source, "minio:s3" | "aws:s3") {
        return None;
    }
    Some(object_event(source, record, value))
}

fn object_event(source: &str, record: &Value, whole: &Value) -> Result<Trigger, String> {
    let s3 = record.get("s3").ok_or("the event's record has no \"s3\"")?;
    let bucket = s3
        .pointer("/bucket/name")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .ok_or("the event names no bucket (s3.bucket.name)")?;
    let raw_key = s3
        .pointer("/object/key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("the event names no object (s3.object.key)")?;
    let key = unquote_plus(raw_key)?;
    if key.ends_with('/') {
        return Err(format!("the object key {key:?} is not a file name"));
    }
    super::names::check_key(&key).map_err(|e| e.to_string())?;
    Ok(Trigger::Object(ObjectEvent {
        source: source.to_string(),
        bucket: bucket.to_string(),
        key,
        time: record
            .get("eventTime")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        event: whole.to_string(),
        version: None,
    }))
}

/// Python's `urllib.parse.unquote_plus`: `+` is a space, `%XX` a byte, UTF-8 overall.
fn unquote_plus(text: &str) -> Result<String, String> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| format!("the object key is not UTF-8 once unquoted: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minio_event(key: &str) -> Value {
        json!({
            "EventName": "s3:ObjectCreated:Put",
            "Key": format!("images/{key}"),
            "Records": [{
                "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                "eventTime": "2026-11-25T10:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "images"}, "object": {"key": key, "size": 3}}
            }]
        })
    }

    fn object(value: &Value) -> ObjectEvent {
        match parse(value.to_string().as_bytes()) {
            Some(Ok(Trigger::Object(o))) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn minio_aws_and_sns_events() {
        let e = object(&minio_event("in%2Fmy+photo%C3%A9%2B1.png"));
        assert_eq!(e.source, "minio:s3");
        assert_eq!(e.bucket, "images");
        assert_eq!(e.key, "in/my photoé+1.png");
        assert_eq!(e.file_name(), "my photoé+1.png");
        assert_eq!(e.time, "2026-11-25T10:00:00.000Z");

        let mut aws = minio_event("a/b.txt");
        aws["Records"][0]["eventSource"] = json!("aws:s3");
        let sns = json!({"Type": "Notification", "MessageId": "1", "Message": aws.to_string()});
        let e = object(&sns);
        assert_eq!((e.source.as_str(), e.key.as_str()), ("aws:s3", "a/b.txt"));
        // EVENT is the S3 event, unwrapped from SNS.
        assert_eq!(serde_json::from_str::<Value>(&e.event).unwrap(), aws);
    }

    #[test]
    fn test_events_and_confirmations_run_nothing() {
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"});
        let wrapped = json!({"Type": "Notification", "Message": test_event.to_string()});
        let confirm = json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "http://x"});
        for body in [test_event, wrapped, confirm] {
            assert!(
                matches!(
                    parse(body.to_string().as_bytes()),
                    Some(Ok(Trigger::Ignore(_)))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn ordinary_bodies_are_not_events_and_broken_events_are_refused() {
        for body in [
            &b"aGVsbG8="[..],
            b"{\"a\": 1}",
            b"{\"Records\": []}",
            b"[1]",
        ] {
            assert!(parse(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
        let mut no_bucket = minio_event("k");
        no_bucket["Records"][0]["s3"]["bucket"] = json!({});
        let mut climbing = minio_event("..%2F..%2Fetc%2Fpasswd");
        climbing["Records"][0]["s3"]["bucket"] = json!({"name": "b"});
        let sns_garbage = json!({"Type": "Notification", "Message": "not json"});
        for body in [no_bucket, climbing, sns_garbage] {
            assert!(
                matches!(parse(body.to_string().as_bytes()), Some(Err(_))),
                "{body}"
            );
        }
    }
}
