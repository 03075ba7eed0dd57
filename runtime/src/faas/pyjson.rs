//! Python's `json.dumps` output for a parsed JSON value.
//!
//! FaaS Supervisor writes a JSON body back with `json.dumps(json.loads(body))`, so the input file
//! of `{"a":1}` is `{"a": 1}`. Users' scripts depend on those exact bytes: `", "` and `": "`
//! separators, `ensure_ascii` escapes, key order kept, and Python's number forms (arbitrary
//! precision integers, shortest float `repr`). serde_json runs with `arbitrary_precision`, so a
//! number reaches us as the text that was received and is re-formatted the way Python would.

use serde_json::{Number, Value};

/// Serialises `value` exactly as Python's `json.dumps(value)` would with default arguments.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// `ensure_ascii=True`: everything outside printable ASCII becomes `\uXXXX` (UTF-16 units).
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) {
    // With arbitrary_precision, to_string() gives back the literal as received.
    let text = n.to_string();
    let is_float = text.contains(['.', 'e', 'E']);
    if !is_float {
        // Python ints are exact; only "-0" changes (to "0").
        if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
            out.push('0');
        } else {
            out.push_str(&text);
        }
        return;
    }
    match text.parse::<f64>() {
        Ok(f) => out.push_str(&float_repr(f)),
        // Unreachable for JSON number syntax, but never lose the input.
        Err(_) => out.push_str(&text),
    }
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for decimal exponents in
/// [-4, 16), scientific (`1e+16`, `1.5e-07`) otherwise, and `Infinity` for overflowed literals.
pub fn float_repr(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip form, e.g. "-1.5e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let ndigits = digits.len() as i32;
    let decpt = exp + 1;
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if ndigits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp.abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-decpt) as usize));
        out.push_str(&digits);
    } else if decpt >= ndigits {
        out.push_str(&digits);
        out.push_str(&"0".repeat((decpt - ndigits) as usize));
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(input: &str) -> String {
        dumps(&serde_json::from_str(input).unwrap())
    }

    #[test]
    fn matches_python_separators_and_escapes() {
        // The row measured with faas-supervisor 1.5.8 in the contract notes.
        assert_eq!(
            py("{\"message\":  \"h\u{e9}llo\",\n \"n\": [1,2.50, true]}"),
            r#"{"message": "h\u00e9llo", "n": [1, 2.5, true]}"#
        );
        assert_eq!(py(r#"{"a":1}"#), r#"{"a": 1}"#);
        assert_eq!(
            py(r#"{"z":{},"y":[],"x":null}"#),
            r#"{"z": {}, "y": [], "x": null}"#
        );
        assert_eq!(
            py(r#"{"s":"q\"b\\n\n\u0001\u007f/"}"#),
            r#"{"s": "q\"b\\n\n\u0001\u007f/"}"#
        );
        assert_eq!(py(r#"{"e":"😀"}"#), r#"{"e": "\ud83d\ude00"}"#);
    }

    #[test]
    fn keeps_key_order_and_last_duplicate() {
        assert_eq!(py(r#"{"b":1,"a":2,"b":3}"#), r#"{"b": 3, "a": 2}"#);
    }

    #[test]
    fn numbers_follow_python() {
        assert_eq!(
            py(r#"{"n":12345678901234567890123}"#),
            r#"{"n": 12345678901234567890123}"#
        );
        assert_eq!(py(r#"{"n":-0}"#), r#"{"n": 0}"#);
        assert_eq!(py(r#"{"n":-0.0}"#), r#"{"n": -0.0}"#);
        assert_eq!(py(r#"{"n":1E2}"#), r#"{"n": 100.0}"#);
        assert_eq!(py(r#"{"n":1e400}"#), r#"{"n": Infinity}"#);
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (2.5, "2.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789.125, "123456789.125"),
            (-3.0, "-3.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "repr({f:e})");
        }
    }
}
