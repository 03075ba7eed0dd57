//! Counts a text's lines, words and bytes (as `wc` does) and its most frequent words, into
//! `counts.json`: `{"lines", "words", "bytes", "top": [{"word", "count"}, ...]}`. Words are
//! compared in lower case; `TOP` (service variable, default 10) sets how many are listed.

use std::collections::HashMap;
use std::fmt::Write as _;

fn main() {
    oscar_guest::run(|input| {
        let top: usize = oscar_guest::var_or("TOP", 10)?;
        let bytes = input.read()?;
        // Like `wc`, count bytes and lines of any input; words are read from its text.
        let text = String::from_utf8_lossy(&bytes);
        let lines = bytes.iter().filter(|&&b| b == b'\n').count();
        let mut words = 0usize;
        let mut freq: HashMap<String, usize> = HashMap::new();
        for word in text.split_whitespace() {
            words += 1;
            let key: String = word
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase();
            if !key.is_empty() {
                *freq.entry(key).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, usize)> = freq.into_iter().collect();
        // Most frequent first; ties in alphabetical order, so the answer is deterministic.
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(top);
        let mut json = format!(
            "{{\"lines\": {lines}, \"words\": {words}, \"bytes\": {}, \"top\": [",
            bytes.len()
        );
        for (i, (word, count)) in ranked.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                json,
                "{sep}{{\"word\": {}, \"count\": {count}}}",
                json_string(word)
            )?;
        }
        json.push_str("]}\n");
        oscar_guest::write_output("counts.json", json)?;
        println!("{lines} lines, {words} words, {} bytes", bytes.len());
        Ok(())
    })
}

/// A JSON string literal (words are short; no need for a JSON crate in this module).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
