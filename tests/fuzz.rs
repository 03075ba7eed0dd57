//! Fuzzing of what strangers send the server, with proptest, for a bounded number of cases
//! (`FUZZ_CASES`, default 3,000 per target; CI runs the default, a few seconds each): the
//! invocation body decoder, the storage event parser and the service definition parser.
//!
//! Inputs are random bytes, random JSON of any shape and depth, and mutations of valid seeds
//! (a real event, a real definition) with fields replaced by random JSON. Each target must
//! return (accept or refuse with a message), never panic, and keep its own promises: an
//! accepted event names a key with no `..` segment; a refused definition names what is wrong.

use oscar_wasm::faas::decode_body;
use oscar_wasm::service::Service;
use oscar_wasm::storage::event::{self, Trigger};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Failures are shrunk, but not for longer than this.
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested up to a few levels, with the strings that matter here likely.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("minio:s3".to_string()),
            Just("aws:s3".to_string()),
            Just("Notification".to_string()),
            Just("../../etc/passwd".to_string()),
            Just("%2e%2e%2f".to_string()),
            Just("256Mi".to_string()),
            Just("hidden".to_string()),
            "\\PC{0,16}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("Records".to_string()),
                        Just("s3".to_string()),
                        Just("Message".to_string()),
                        Just("Type".to_string()),
                        Just("name".to_string()),
                        Just("key".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random path of `seed` (one step per choice) with `replacement`.
fn mutate(mut seed: Value, choices: &[usize], replacement: Value) -> Value {
    fn at(value: &mut Value, choices: &[usize], replacement: Value) {
        let Some((&choice, rest)) = choices.split_first() else {
            *value = replacement;
            return;
        };
        match value {
            Value::Object(map) if !map.is_empty() => {
                let n = map.len();
                if let Some((_, child)) = map.iter_mut().nth(choice % n) {
                    at(child, rest, replacement);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let n = items.len();
                at(&mut items[choice % n], rest, replacement);
            }
            other => *other = replacement,
        }
    }
    at(&mut seed, choices, replacement);
    seed
}

fn minio_event() -> Value {
    json!({
        "EventName": "s3:ObjectCreated:Put",
        "Key": "images/in/a.png",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
            "eventTime": "2026-11-26T10:00:00.000Z", "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "images"}, "object": {"key": "in%2Fa.png", "size": 3}}
        }]
    })
}

fn definition() -> Value {
    json!({
        "name": "fuzzed", "module": format!("sha256:{}", "ab".repeat(32)),
        "memory": "64Mi", "timeout": 30, "log_level": "INFO", "max_concurrency": 2,
        "environment": {"variables": {"A": "1"}, "secrets": {"S": "x"}},
        "storage_providers": {"minio": {"m": {"endpoint": "http://minio.example.org",
            "access_key": "a", "secret_key": "b"}}},
        "input": [{"storage_provider": "minio.m", "path": "inbox/folder", "suffix": [".png"]}],
        "output": [{"storage_provider": "minio.default", "path": "out"}]
    })
}

fn check_event(body: &[u8]) {
    if let Some(Ok(Trigger::Object(object))) = event::parse(body) {
        assert!(!object.bucket.is_empty());
        assert!(
            !object.key.split('/').any(|s| s == ".."),
            "accepted {:?}",
            object.key
        );
    }
}

fn check_definition(value: Value) {
    match Service::from_definition(value) {
        Ok(service) => assert!(!service.spec.name.is_empty()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn body_decoder_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_body(&body);
    }

    #[test]
    fn body_decoder_takes_any_json(value in any_json()) {
        let text = value.to_string();
        let decoded = decode_body(text.as_bytes());
        if value.is_object() {
            // Objects are inputs (re-serialised, or an API-gateway envelope decoded).
            let is_envelope = value.get("httpMethod").is_some() && value["body"].is_string();
            prop_assert!(decoded.is_ok() || is_envelope, "{text}");
        } else {
            prop_assert!(decoded.is_err(), "{text}");
        }
    }

    #[test]
    fn event_parser_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check_event(&body);
    }

    #[test]
    fn event_parser_takes_any_json_and_mutated_events(
        value in any_json(),
        choices in proptest::collection::vec(any::<usize>(), 0..6),
        sns in any::<bool>(),
    ) {
        check_event(value.to_string().as_bytes());
        let mut mutated = mutate(minio_event(), &choices, value);
        if sns {
            mutated = json!({"Type": "Notification", "Message": mutated.to_string()});
        }
        check_event(mutated.to_string().as_bytes());
    }

    #[test]
    fn definition_parser_takes_any_json_and_mutated_definitions(
        value in any_json(),
        choices in proptest::collection::vec(any::<usize>(), 0..5),
    ) {
        check_definition(value.clone());
        check_definition(mutate(definition(), &choices, value));
    }
}

#[test]
fn the_seeds_are_valid() {
    assert!(matches!(
        event::parse(minio_event().to_string().as_bytes()),
        Some(Ok(Trigger::Object(_)))
    ));
    Service::from_definition(definition()).unwrap();
}
