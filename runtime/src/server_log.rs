//! The server's own recent log, kept in memory for GET /system/logs (OSCAR serves its
//! manager's log there): every line the server writes to stderr is also kept here, the last
//! [`MAX_BYTES`] of them.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Bytes of log kept; the oldest lines go first.
pub const MAX_BYTES: usize = 1 << 20;

struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

fn ring() -> &'static Mutex<Ring> {
    static RING: OnceLock<Mutex<Ring>> = OnceLock::new();
    RING.get_or_init(|| {
        Mutex::new(Ring {
            lines: VecDeque::new(),
            bytes: 0,
        })
    })
}

/// Keeps `text` (one or more lines), dropping the oldest lines beyond [`MAX_BYTES`].
pub fn keep(text: &str) {
    let mut ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    for line in text.lines() {
        // A line longer than the whole budget is cut, not allowed to evict everything.
        let line: String = line.chars().take(MAX_BYTES / 4).collect();
        ring.bytes += line.len() + 1;
        ring.lines.push_back(line);
        while ring.bytes > MAX_BYTES {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.len() + 1,
                None => break,
            }
        }
    }
}

/// The kept log, oldest line first.
pub fn text() -> String {
    let ring = ring().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::with_capacity(ring.bytes);
    for line in &ring.lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A writer for the tracing subscriber: what it writes goes to stderr and into the ring.
#[derive(Clone, Copy, Default)]
pub struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        keep(&String::from_utf8_lossy(buf));
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = Tee;

    fn make_writer(&'a self) -> Self::Writer {
        Tee
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_its_budget() {
        keep("first line\nsecond line\n");
        assert!(text().contains("first line\nsecond line\n"));
        let filler = "x".repeat(1000);
        for _ in 0..(2 * MAX_BYTES / 1000) {
            keep(&filler);
        }
        keep("newest");
        let kept = text();
        assert!(kept.len() <= MAX_BYTES);
        assert!(!kept.contains("first line"));
        assert!(kept.ends_with("newest\n"));
    }
}
