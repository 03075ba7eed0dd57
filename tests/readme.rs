//! The README's shell blocks, run as written. Every ```sh block in README.md follows a marker:
//! `<!-- run by tests/readme.rs: NAME -->` (a test here runs it) or `<!-- not run: WHY -->`;
//! a block with neither fails `every_shell_block_is_run_or_says_why`, so a new block is either
//! tested or says why not.
//!
//! A block runs with bash (`set -eu`: a pipe's status is its last command's, as in a user's
//! terminal, where `... | head -3` is no failure) in a scratch folder where `examples` and the
//! script runtimes are linked in, as a user stands in a clone with the binary on the PATH.
//! Where the block does not start a server itself, the test starts `oscar-wasm serve` there
//! with no flag, as `scripts/serve.sh` does. The only change is ports: the README's 8080 (and
//! a registry's 5000) become free ones, through the flags' environment variables and in the
//! block's text, so tests run side by side.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One ```sh block of the README: the marker before it (if any), its text, its line.
struct Block {
    marker: Option<String>,
    text: String,
    line: usize,
}

fn readme_blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if fence != "```sh" {
            i += 1;
            continue;
        }
        let indent = lines[i].len() - fence.len();
        let marker = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .filter(|l| l.starts_with("<!--"))
            .map(str::to_string);
        let mut text = String::new();
        let start = i + 1;
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            text.push_str(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
            text.push('\n');
            i += 1;
        }
        blocks.push(Block {
            marker,
            text,
            line: start,
        });
        i += 1;
    }
    blocks
}

/// The block marked `run by tests/readme.rs: NAME`.
fn block(name: &str) -> String {
    let marker = format!("<!-- run by tests/readme.rs: {name} -->");
    readme_blocks()
        .into_iter()
        .find(|b| b.marker.as_deref() == Some(marker.as_str()))
        .unwrap_or_else(|| panic!("README has no block marked {marker}"))
        .text
}

#[test]
fn every_shell_block_is_run_or_says_why() {
    let blocks = readme_blocks();
    assert!(blocks.len() > 10, "README's ```sh blocks were not found");
    let tests = std::fs::read_to_string(repo_root().join("tests/readme.rs")).unwrap();
    for b in &blocks {
        let marker = b.marker.as_deref().unwrap_or("");
        if let Some(name) = marker
            .strip_prefix("<!-- run by tests/readme.rs: ")
            .and_then(|m| m.strip_suffix(" -->"))
        {
            assert!(
                tests.contains(&format!("block(\"{name}\")")),
                "README line {}: no test runs the block named {name}",
                b.line
            );
        } else {
            assert!(
                marker.starts_with("<!-- not run: ") && marker.len() > "<!-- not run:  -->".len(),
                "README line {}: a ```sh block needs `<!-- run by tests/readme.rs: NAME -->` \
                 or `<!-- not run: WHY -->` on the line before it:\n{}",
                b.line,
                b.text
            );
        }
    }
}

/// A scratch folder standing for a clone, with the ports of one test.
struct Scratch {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples")).unwrap();
        std::fs::create_dir(dir.path().join("runtimes")).unwrap();
        std::os::unix::fs::symlink(runtimes_dir(), dir.path().join("runtimes/dist")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Scratch {
            dir,
            port: free_port(),
            server: None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command in the scratch folder with the test's ports in the environment.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_oscar-wasm"));
        let path = format!(
            "{}:{}",
            bin.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(program);
        command
            .current_dir(self.path())
            .env("PATH", path)
            .env("HOME", self.path().join("home"))
            .env("OSCAR_WASM_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("OSCAR_WASM_S3_LISTEN", "127.0.0.1:0")
            .env(
                "OSCAR_WASM_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env_remove("OSCAR_WASM_CLUSTER")
            .env_remove("OSCAR_WASM_PASSWORD");
        command
    }

    /// `oscar-wasm serve`, as `scripts/serve.sh` ends, once it answers /health.
    fn serve(&mut self) {
        let log = std::fs::File::create(self.path().join("server.log")).unwrap();
        let child = self
            .command(env!("CARGO_BIN_EXE_oscar-wasm"))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start oscar-wasm");
        self.server = Some(child);
        let health = format!("http://127.0.0.1:{}/health", self.port);
        let client = client();
        eventually("the server answers /health", || {
            client.get(&health).send().is_ok_and(|r| r.status() == 200)
        });
    }

    /// Runs `block` after replacing each `(from, to)` and the README's port 8080; its stdout.
    fn run(&self, block: &str, replace: &[(&str, String)]) -> String {
        let mut text = block.replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.port));
        for (from, to) in replace {
            text = text.replace(from, to);
        }
        // Servers a block starts in the background end with it.
        let script = format!("set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{text}");
        let output = self
            .command("timeout")
            .args(["900", "bash", "-c", &script])
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let logs: String = ["server.log", "registry.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.path().join(f)).ok())
            .collect();
        assert!(
            output.status.success(),
            "README block failed ({}):\n{text}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- logs\n{logs}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Quick start with curl: upload, create with the digest the upload answered, invoke.
#[test]
fn curl_quick_start_runs() {
    let mut s = Scratch::new();
    s.serve();
    let out = s.run(&block("curl"), &[]);
    assert!(out.contains("\"digest\":\"sha256:"), "{out}");
    assert!(out.ends_with("HELLO WORLD\n"), "{out}");
}

/// The walkthrough from nothing: it ends with a gray image and a job's outputs.
#[test]
fn walkthrough_runs() {
    let mut s = Scratch::new();
    s.serve();
    s.run(&block("walkthrough"), &[]);
    let gray = image::open(s.path().join("gray.png")).expect("the walkthrough wrote gray.png");
    assert_eq!((gray.width(), gray.height()), (320, 200));
    assert!(matches!(
        gray.color(),
        image::ColorType::L8 | image::ColorType::L16
    ));
    assert!(
        s.path()
            .join("gray-job")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}

/// A file dropped into the embedded store's input folder comes back as its checksum.
#[test]
fn storage_walkthrough_runs() {
    let mut s = Scratch::new();
    s.serve();
    s.run(&block("storage"), &[]);
    let sample = std::fs::read(repo_root().join("examples/images/sample.jpg")).unwrap();
    let digest: String =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&sample))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_eq!(
        std::fs::read_to_string(s.path().join("sample.jpg.sha256")).unwrap(),
        format!("{digest}  sample.jpg\n")
    );
}

/// From a registry started as the README starts it to a wasm service deployed from an FDL
/// naming the pushed artifact; the block starts its own server.
#[test]
fn registry_walkthrough_runs() {
    let s = Scratch::new();
    let registry = free_port();
    s.run(
        &block("registry"),
        &[("127.0.0.1:5000", format!("127.0.0.1:{registry}"))],
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("upper.txt")).unwrap(),
        "HELLO REGISTRY\n"
    );
}

/// A Python script as a service, with no build.
#[test]
fn python_service_runs() {
    let mut s = Scratch::new();
    s.serve();
    let out = s.run(&block("python"), &[]);
    assert!(out.ends_with("HELLO PYTHON\n"), "{out}");
}

/// The Python example service from its service.yaml, through our CLI.
#[test]
fn word_frequency_example_runs() {
    let mut s = Scratch::new();
    s.serve();
    let out = s.run(&block("word-frequency"), &[]);
    // `service apply` says what it did; counts.json follows.
    let json = out.find("\n{").map_or(out.as_str(), |at| &out[at + 1..]);
    let counts: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("counts.json ({e}): {out}"));
    assert_eq!(counts["words"], 6, "{out}");
    assert_eq!(counts["distinct"], 4, "{out}");
}

/// The examples of "Writing a module": a thumbnail, CSV as JSON, a C hexdump, a digit.
#[test]
fn module_examples_run() {
    let mut s = Scratch::new();
    s.serve();
    let out = s.run(&block("examples"), &[]);
    let thumb = image::open(s.path().join("thumb.png")).expect("thumb.png");
    assert_eq!((thumb.width(), thumb.height()), (64, 40));
    assert!(out.contains("\"name\": \"Ada\""), "{out}");
    assert!(out.contains("{\"digit\":7,"), "{out}");
}
