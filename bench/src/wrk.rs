//! HTTP load from `wrk` (Debian's package), a tool users know that runs outside the server with
//! little CPU of its own: keep-alive connections, each sending one request after another. Its
//! Lua `done` hook prints the figures as one JSON line, which is all that is read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What wrk measured in one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Successful requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 90th percentile latency.
    pub p90: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Requests answered: successes plus errors.
    pub requests: u64,
    /// Connection errors, timeouts and answers other than 2xx/3xx.
    pub errors: u64,
}

/// One POST endpoint and the body sent to it.
pub struct Load<'a> {
    /// `http://host:port/path`.
    pub url: String,
    /// The request body.
    pub body: &'a [u8],
    /// Extra request headers.
    pub headers: Vec<(&'a str, String)>,
}

/// The `wrk` program.
pub struct Wrk {
    bin: PathBuf,
    scripts: tempfile::TempDir,
}

impl Wrk {
    /// Uses the wrk binary at `bin`.
    pub fn new(bin: &Path) -> Self {
        Self {
            bin: bin.to_path_buf(),
            scripts: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Runs `load` on `concurrency` connections for `duration` (whole seconds, at least one).
    pub fn run(&self, load: &Load<'_>, concurrency: usize, duration: Duration) -> Figures {
        let script = self.scripts.path().join("post.lua");
        std::fs::write(&script, lua_script(load)).expect("write wrk script");
        let url = &load.url;
        // One wrk thread per connection up to two: the machine's cores are the server's.
        let threads = concurrency.clamp(1, 2);
        let output = Command::new(&self.bin)
            .arg(format!("-t{threads}"))
            .arg(format!("-c{concurrency}"))
            .arg(format!("-d{}s", duration.as_secs_f64().ceil().max(1.0)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&script)
            .arg(url)
            .output()
            .expect("run wrk");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("WRK "))
            .unwrap_or_else(|| panic!("wrk printed no figures: {stdout}"));
        let v: serde_json::Value = serde_json::from_str(line).expect("wrk figures");
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let us = |k: &str| Duration::from_micros(n(k));
        let seconds = n("duration_us") as f64 / 1e6;
        let (requests, errors) = (n("requests"), n("errors"));
        Figures {
            rps: requests.saturating_sub(errors) as f64 / seconds.max(1e-9),
            p50: us("p50"),
            p90: us("p90"),
            p99: us("p99"),
            max: us("max"),
            requests,
            errors,
        }
    }
}

/// The wrk script: a POST with the body and headers, and a `done` hook printing the figures.
fn lua_script(load: &Load<'_>) -> String {
    let mut s = String::from("wrk.method = \"POST\"\n");
    s.push_str(&format!("wrk.body = {}\n", lua_string(load.body)));
    for (name, value) in &load.headers {
        s.push_str(&format!(
            "wrk.headers[{}] = {}\n",
            lua_string(name.as_bytes()),
            lua_string(value.as_bytes())
        ));
    }
    s.push_str(
        r#"done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#,
    );
    s
}

/// A Lua string literal holding `bytes` exactly.
fn lua_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\{b:03}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn lua_strings_escape_what_lua_would_read_differently() {
        assert_eq!(
            super::lua_string(b"a \"b\"\\\n"),
            r#""a \034b\034\092\010""#
        );
    }
}
