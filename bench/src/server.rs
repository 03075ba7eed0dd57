//! Starting the real server (or `wasmtime serve`) as a child process, and reading its CPU time
//! and memory from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child server process.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its embedded S3 store listens (the server's own; `addr` for `wasmtime serve`).
    pub s3: SocketAddr,
}

impl Process {
    /// Starts `oscar-wasm serve` on a free loopback port; returns once it logged its address.
    pub fn oscar(bin: &Path, data_dir: &Path, extra: &[&str]) -> Process {
        let s3 = crate::free_addr().to_string();
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--s3-listen",
                s3.as_str(),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            // The default log filter, as users run it.
            .env_remove("OSCAR_WASM_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oscar-wasm");
        let addr = wait_for_line(&mut child, "listening on http://");
        let s3 = s3.parse().expect("address");
        Process { child, addr, s3 }
    }

    /// Starts `wasmtime serve` on `addr` with `component`; returns once it accepts connections.
    pub fn wasmtime(bin: &Path, component: &Path, addr: SocketAddr) -> Process {
        let child = Command::new(bin)
            .arg("serve")
            .arg(format!("--addr={addr}"))
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wasmtime serve");
        wait_for_port(addr, "wasmtime serve");
        Process {
            child,
            addr,
            s3: addr,
        }
    }

    /// User plus system CPU time used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.child.id())
    }

    /// Peak and current resident memory, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Stops it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` accepts connections; `what` (the program) did not start after 30 s.
pub fn wait_for_port(addr: SocketAddr, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads stderr until a line contains `marker` followed by an address.
fn wait_for_line(child: &mut Child, marker: &'static str) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(marker).nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not start");
    addr.parse().expect("address")
}

/// CPU time of a process, from /proc/PID/stat (utime + stime, in clock ticks of 1/100 s).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
