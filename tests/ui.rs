//! The web dashboard at /ui in a real browser: Debian's chromium driven by Playwright (pip),
//! both installed by scripts/test.sh. The script (tests/ui/dashboard.py) logs in, deploys the
//! grayscale example by dropping its FDL and .wasm, invokes it with an image, runs a job,
//! opens its log and outputs, uploads into a bucket and sees the output land, and checks the
//! messages for a wrong password, a 400 and a server that went away. It keeps a screenshot of
//! each page in the build folder (`ui-screenshots/`); with OSCAR_WASM_UPDATE_SCREENSHOTS=1 it
//! also refreshes the README's, in docs/screenshots/.

mod common;

use common::*;

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let python = test_python();
    let dir = TestDir::new();
    let mut server = Server::start(&dir.data(), &["--password", "pw"]);
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = std::process::Command::new(python)
        .arg(repo_root().join("tests/ui/dashboard.py"))
        .arg(&server.base)
        .arg("pw")
        .arg(repo_root().join("examples"))
        .arg(&shots)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python with playwright");
    // The script asks for the server to go away by leaving a marker.
    let marker = shots.join("stop-server");
    let status = loop {
        if marker.exists() {
            server.kill();
            std::fs::remove_file(&marker).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    assert!(stdout.contains("ok a server that went away"), "{stdout}");
    for page in [
        "login", "services", "service", "buckets", "bucket", "metrics",
    ] {
        let path = shots.join(format!("{page}.png"));
        assert!(path.is_file(), "no screenshot of {page}");
        if std::env::var_os("OSCAR_WASM_UPDATE_SCREENSHOTS").is_some() {
            let docs = repo_root().join("docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&path, docs.join(format!("{page}.png"))).unwrap();
        }
    }
}

/// A server without a password (the default on loopback) says on its login page that any
/// login works, and an empty password logs in.
#[test]
fn an_open_server_says_so_on_the_login_page() {
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &[]);
    let script = r##"
import sys
from playwright.sync_api import expect, sync_playwright
expect.set_options(timeout=20_000)
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = browser.new_page()
    page.goto(sys.argv[1] + "/ui")
    expect(page.locator("#open-server")).to_contain_text("any user name and password log in")
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Services")
    print("ok open")
"##;
    let out = run_python(script, &[&server.base], &server);
    assert!(out.contains("ok open"), "{out}");
}

/// OSCAR's own dashboard (grycap/oscar-dashboard@bc98e6c, its built bundle vendored in
/// tests/fixtures/oscar-dashboard, rebuilt by scripts/oscar-dashboard/build.sh) served same-origin
/// in front of this server, as OSCAR serves it at /ui/, and walked in Chromium by
/// tests/ui/oscar_dashboard.py: login, the services list, a service's settings, FDL, invoke,
/// deployment and logs, the buckets and a bucket's files, the other sidebar pages and the info
/// page, each rendered with no uncaught exception and no console error (the metrics page from
/// the usage accounts, its KPIs shown and no "Failed to load metrics").
#[test]
fn oscars_own_dashboard_works_on_every_page() {
    let python = test_python();
    let dir = TestDir::new();
    let server = Server::start(&dir.data(), &["--password", "dash-pw"]);
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("oscar-dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let output = std::process::Command::new(python)
        .arg(repo_root().join("tests/ui/oscar_dashboard.py"))
        .arg(&server.base)
        .arg("dash-pw")
        .arg(repo_root().join("tests/fixtures/oscar-dashboard"))
        .arg("--module")
        .arg(repo_root().join("examples/wasm/dist/uppercase.wasm"))
        .arg("--shots")
        .arg(&shots)
        .output()
        .expect("python with playwright");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_text()
    );
    for page in [
        "services",
        "service settings",
        "service FDL",
        "service invoke",
        "service logs",
        "buckets",
        "bucket",
        "info",
    ] {
        assert!(stdout.contains(&format!("ok {page}\n")), "{page}: {stdout}");
    }
}
