//! FaaS Supervisor's rules, kept byte for byte: how a request body becomes the input file, and
//! how the output folder becomes the response of a synchronous invocation.
//!
//! Pure functions (bytes in, bytes out): nothing here knows about wasm, HTTP or the disk.

pub mod outputs;
pub mod pyjson;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::io::{Cursor, Write};
use std::time::SystemTime;

/// Standard alphabet, padded, but tolerant of non-zero trailing bits as Python's decoder is.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Why a request body cannot become an input file. FaaS Supervisor would crash on these or
/// silently write an empty file; we refuse them with a message instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// A byte that is neither base64 nor white space.
    #[error(
        "the body is neither a JSON object nor base64: byte {byte:#04x} at offset {offset} is not in the base64 alphabet"
    )]
    NotBase64 { byte: u8, offset: usize },
    /// Base64 whose length (white space ignored) is not a multiple of four, or misplaced `=`.
    #[error("the body is not valid base64: {0}")]
    BadBase64(String),
    /// JSON that is not an object: FaaS Supervisor only accepts objects.
    #[error("the body is a JSON {0}; send a JSON object or base64-encoded bytes")]
    JsonNotObject(&'static str),
}

/// Turns an invocation body into the bytes of the input file.
///
/// A JSON object is re-serialised as Python's `json.dumps` does; an API-gateway envelope
/// (`{"httpMethod": .., "body": ".."}`) is unwrapped and its body decoded by the same rules;
/// anything else is base64, white space inside ignored.
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        // Only an object is built as a tree: it must be re-serialised.
        Some(b'{') => {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
                return decode_json_object(map);
            }
        }
        // Other JSON is refused; checking that it is JSON allocates nothing (a large array
        // parsed into a tree would take many times its size).
        Some(&first) => {
            if let Some(kind) = json_kind(first)
                && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
            {
                return Err(BodyError::JsonNotObject(kind));
            }
        }
        None => {}
    }
    decode_base64(body)
}

/// The input file of a body that is a JSON object, already parsed.
pub fn decode_json_object(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>, BodyError> {
    if let (Some(_), Some(serde_json::Value::String(inner))) =
        (map.get("httpMethod"), map.get("body"))
    {
        return decode_body(inner.as_bytes());
    }
    Ok(pyjson::dumps(&serde_json::Value::Object(map)).into_bytes())
}

/// Which JSON value (other than an object) starts with `first`.
fn json_kind(first: u8) -> Option<&'static str> {
    match first {
        b'[' => Some("array"),
        b'"' => Some("string"),
        b'-' | b'0'..=b'9' => Some("number"),
        b't' | b'f' => Some("boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

/// Base64 as the `base64` tool writes it: line breaks and spaces anywhere are ignored.
fn decode_base64(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let mut compact = Vec::with_capacity(body.len());
    for (offset, &byte) in body.iter().enumerate() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => compact.push(byte),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => return Err(BodyError::NotBase64 { byte, offset }),
        }
    }
    if compact.len() % 4 != 0 {
        return Err(BodyError::BadBase64(format!(
            "incorrect padding ({} base64 characters, not a multiple of 4)",
            compact.len()
        )));
    }
    LENIENT_BASE64
        .decode(&compact)
        .map_err(|e| BodyError::BadBase64(e.to_string()))
}

/// FaaS Supervisor's log levels, in increasing severity (Python's logging names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    /// Parses a service's `log_level` (case-insensitive, `WARN` accepted for `WARNING`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            // Python's NOTSET lets every message through, as DEBUG does.
            "DEBUG" | "NOTSET" => Some(Self::Debug),
            "INFO" => Some(Self::Info),
            "WARNING" | "WARN" => Some(Self::Warning),
            "ERROR" => Some(Self::Error),
            "CRITICAL" => Some(Self::Critical),
            _ => None,
        }
    }

    /// The name as Python's logging prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
            Self::Critical => "CRITICAL",
        }
    }
}

/// One line of the runtime's own log for an invocation.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When it was logged.
    pub time: SystemTime,
    /// Its severity; the service's `log_level` filters on it.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

impl LogLine {
    /// A line logged now.
    pub fn now(level: LogLevel, message: impl Into<String>) -> Self {
        Self {
            time: SystemTime::now(),
            level,
            message: message.into(),
        }
    }

    /// `TIME - supervisor - LEVEL - message`, FaaS Supervisor's format.
    pub fn format(&self) -> String {
        format!(
            "{} - supervisor - {} - {}",
            python_asctime(self.time),
            self.level.name(),
            self.message
        )
    }
}

/// One file found in the output folder, with its path relative to that folder (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative path, as the zip entry name.
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// What a synchronous invocation answers, by FaaS Supervisor's three cases.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncResponse {
    /// Exactly one output file: its bytes, base64-encoded.
    File(String),
    /// Several output files: a stored (uncompressed) zip of them, base64-encoded.
    Zip(String),
    /// No output file: the runtime's log lines at the service's level, then the module's output.
    Logs(Vec<u8>),
}

impl SyncResponse {
    /// The response body.
    pub fn into_body(self) -> Vec<u8> {
        match self {
            Self::File(b64) | Self::Zip(b64) => b64.into_bytes(),
            Self::Logs(bytes) => bytes,
        }
    }
}

/// Builds the response of a finished invocation from its output files and logs.
pub fn sync_response(
    mut files: Vec<OutputFile>,
    log: &[LogLine],
    level: LogLevel,
    module_output: &[u8],
) -> std::io::Result<SyncResponse> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match files.len() {
        0 => Ok(SyncResponse::Logs(render_logs(log, level, module_output))),
        1 => Ok(SyncResponse::File(b64.encode(&files[0].bytes))),
        _ => {
            // A stable entry order, whatever order the file system listed them in.
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(SyncResponse::Zip(b64.encode(zip_stored(&files)?)))
        }
    }
}

/// The runtime's lines at or above `level` (none for CRITICAL), then the module's output.
pub fn render_logs(log: &[LogLine], level: LogLevel, module_output: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if level < LogLevel::Critical {
        for line in log.iter().filter(|l| l.level >= level) {
            out.extend_from_slice(line.format().as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(module_output);
    out
}

/// A zip with every entry stored uncompressed, as FaaS Supervisor writes it (ZIP_STORED).
pub fn zip_stored(files: &[OutputFile]) -> std::io::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(
            files
                .iter()
                .any(|f| f.bytes.len() as u64 >= u32::MAX as u64),
        );
    for file in files {
        writer
            .start_file(file.path.as_str(), options)
            .map_err(std::io::Error::other)?;
        writer.write_all(&file.bytes)?;
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

/// Python logging's default `asctime`: `2024-01-31 13:45:07,123` (UTC here).
fn python_asctime(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, m, d) = crate::clock::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn base64_rules_measured_on_faas_supervisor() {
        assert_eq!(decode_body(b"aGVsbG8gd29ybGQK").unwrap(), b"hello world\n");
        assert_eq!(decode_body(b"aGVs bG8=").unwrap(), b"hello");
        assert_eq!(decode_body(b"aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(decode_body(b"").unwrap(), b"");
        assert!(matches!(
            decode_body(b"aGVsbG8"),
            Err(BodyError::BadBase64(_))
        ));
        assert_eq!(
            decode_body(b"!!!!"),
            Err(BodyError::NotBase64 {
                byte: b'!',
                offset: 0
            })
        );
        assert!(matches!(
            decode_body(b"aG=sbG8="),
            Err(BodyError::BadBase64(_))
        ));
        // Non-zero trailing bits are accepted, as Python's decoder does.
        assert_eq!(decode_body(b"aGVsbG9=").unwrap(), b"hello");
    }

    #[test]
    fn json_objects_are_reserialised_and_others_refused() {
        assert_eq!(decode_body(br#"{"a":1}"#).unwrap(), br#"{"a": 1}"#);
        assert_eq!(
            decode_body(b"[1,2]"),
            Err(BodyError::JsonNotObject("array"))
        );
        assert_eq!(decode_body(b"42"), Err(BodyError::JsonNotObject("number")));
        assert_eq!(decode_body(b"null"), Err(BodyError::JsonNotObject("null")));
        assert_eq!(
            decode_body(br#""a string""#),
            Err(BodyError::JsonNotObject("string"))
        );
    }

    #[test]
    fn api_gateway_envelope_is_unwrapped() {
        let body = br#"{"httpMethod":"POST","body":"aGVsbG8="}"#;
        assert_eq!(decode_body(body).unwrap(), b"hello");
    }

    fn file(path: &str, bytes: &[u8]) -> OutputFile {
        OutputFile {
            path: path.into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn one_file_is_its_base64() {
        let r = sync_response(
            vec![file("a.txt", b"HELLO WORLD")],
            &[],
            LogLevel::Info,
            b"",
        )
        .unwrap();
        assert_eq!(r, SyncResponse::File("SEVMTE8gV09STEQ=".into()));
    }

    #[test]
    fn several_files_are_a_stored_zip() {
        let files = vec![file("b/c.txt", b"ccc"), file("a.txt", b"aa")];
        let SyncResponse::Zip(b64) = sync_response(files, &[], LogLevel::Info, b"").unwrap() else {
            panic!("expected a zip");
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let names: Vec<_> = (0..2)
            .map(|i| archive.by_index(i).unwrap().name().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "b/c.txt"]);
        let mut entry = archive.by_name("b/c.txt").unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert_eq!(text, "ccc");
    }

    #[test]
    fn no_files_gives_filtered_logs_then_module_output() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let log = vec![
            LogLine {
                time: t,
                level: LogLevel::Debug,
                message: "debug".into(),
            },
            LogLine {
                time: t,
                level: LogLevel::Info,
                message: "info".into(),
            },
        ];
        let body = render_logs(&log, LogLevel::Info, b"out\n");
        assert_eq!(
            body,
            b"2023-11-14 22:13:20,123 - supervisor - INFO - info\nout\n"
        );
        assert_eq!(render_logs(&log, LogLevel::Critical, b"out\n"), b"out\n");
        assert_eq!(
            render_logs(&log, LogLevel::Debug, b"")
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            2
        );
    }

    #[test]
    fn log_levels_parse_like_python_names() {
        assert_eq!(LogLevel::parse("critical"), Some(LogLevel::Critical));
        assert_eq!(LogLevel::parse("WARN"), Some(LogLevel::Warning));
        assert_eq!(LogLevel::parse("verbose"), None);
    }
}

/// Property tests: run with the rest (`cargo test -p oscar-wasm faas::properties`);
/// `PROPTEST_CASES=100000` runs more cases.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    proptest! {
        #[test]
        fn decoding_any_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_body(&body);
        }

        #[test]
        fn base64_bodies_round_trip_however_wrapped(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            width in 1usize..120,
        ) {
            let encoded = b64(&bytes);
            let wrapped: String = encoded
                .as_bytes()
                .chunks(width)
                .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
                .collect();
            // A few base64 texts are also JSON scalars ("1234", "true", "null"): FaaS
            // Supervisor crashes on those, and so they are refused.
            if serde_json::from_str::<serde_json::Value>(&encoded).is_ok() {
                prop_assert!(matches!(decode_body(encoded.as_bytes()), Err(BodyError::JsonNotObject(_))));
            } else {
                prop_assert_eq!(decode_body(encoded.as_bytes()).unwrap(), bytes.clone());
                prop_assert_eq!(decode_body(wrapped.as_bytes()).unwrap(), bytes);
            }
        }

        #[test]
        fn json_objects_become_ascii_json_with_the_same_content(
            map in proptest::collection::btree_map("\\PC{0,12}", "\\PC{0,24}", 0..8),
        ) {
            let body = serde_json::to_vec(&map).unwrap();
            let written = decode_body(&body).unwrap();
            prop_assert!(written.is_ascii());
            let back: std::collections::BTreeMap<String, String> = serde_json::from_slice(&written).unwrap();
            prop_assert_eq!(back, map);
        }

        #[test]
        fn outputs_pack_losslessly(
            files in proptest::collection::btree_map(
                "[a-z]{1,8}(/[a-z0-9._-]{1,12}){0,2}",
                proptest::collection::vec(any::<u8>(), 0..300),
                1..12,
            ),
        ) {
            // A name cannot be both a file and a folder.
            let names: Vec<&String> = files.keys().collect();
            prop_assume!(!names.iter().any(|a| names.iter().any(|b| b.starts_with(&format!("{a}/")))));
            let outputs: Vec<OutputFile> =
                files.iter().map(|(path, bytes)| OutputFile { path: path.clone(), bytes: bytes.clone() }).collect();
            let base64 = base64::engine::general_purpose::STANDARD;
            match sync_response(outputs, &[], LogLevel::Info, b"").unwrap() {
                SyncResponse::File(b64) => {
                    prop_assert_eq!(files.len(), 1);
                    prop_assert_eq!(&base64.decode(b64).unwrap(), files.values().next().unwrap());
                }
                SyncResponse::Zip(b64) => {
                    let mut archive = zip::ZipArchive::new(Cursor::new(base64.decode(b64).unwrap())).unwrap();
                    prop_assert_eq!(archive.len(), files.len());
                    for (path, bytes) in &files {
                        let mut entry = archive.by_name(path).unwrap();
                        let mut got = Vec::new();
                        std::io::Read::read_to_end(&mut entry, &mut got).unwrap();
                        prop_assert_eq!(&got, bytes);
                    }
                }
                SyncResponse::Logs(_) => prop_assert!(false, "files were given"),
            }
        }
    }
}
