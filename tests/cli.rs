//! End-to-end tests of the client commands: the real `oscar-wasm` binary as a client, against
//! the real binary as a server.

mod common;

use common::*;
use serde_json::Value;

/// A server, a private HOME for the client, and the endpoint.
struct Setup {
    _dir: TestDir,
    home: tempfile::TempDir,
    server: Server,
}

impl Setup {
    fn new(extra: &[&str]) -> Self {
        let dir = TestDir::new();
        let server = Server::start(&dir.data(), extra);
        Self {
            _dir: dir,
            home: tempfile::tempdir().unwrap(),
            server,
        }
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        oscar_cli(Some(&self.server.base), self.home.path(), args, b"")
    }

    fn cli_stdin(&self, args: &[&str], stdin: &[u8]) -> CliRun {
        oscar_cli(Some(&self.server.base), self.home.path(), args, stdin)
    }

    fn tmp(&self, name: &str) -> String {
        self.home.path().join(name).display().to_string()
    }
}

fn dist(name: &str) -> String {
    format!("examples/wasm/dist/{name}.wasm")
}

#[test]
fn service_apply_list_get_delete() {
    let s = Setup::new(&[]);
    // FDL file plus --module: created, then updated (apply is idempotent).
    let out = s
        .cli(&[
            "service",
            "apply",
            "examples/wasm/uppercase/service.yaml",
            "--module",
            &dist("uppercase"),
        ])
        .ok();
    assert!(
        out.starts_with("service uppercase created (module sha256:"),
        "{out}"
    );
    let token_before: Value =
        serde_json::from_slice(&s.cli(&["service", "get", "uppercase", "--json"]).stdout).unwrap();
    let out = s
        .cli(&[
            "service",
            "apply",
            "examples/wasm/uppercase/service.yaml",
            "--module",
            &dist("uppercase"),
        ])
        .ok();
    assert!(out.starts_with("service uppercase updated"), "{out}");

    // A plain JSON definition naming its module file, relative to the definition.
    let def = s.home.path().join("probe.json");
    std::fs::write(
        &def,
        format!(
            r#"{{"name": "probe", "module": "{}", "log_level": "CRITICAL"}}"#,
            repo_root().join(dist("sandbox-probe")).display()
        ),
    )
    .unwrap();
    let applied: Value = serde_json::from_slice(
        &s.cli(&["service", "apply", def.to_str().unwrap(), "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(applied[0]["name"], "probe");
    assert_eq!(applied[0]["action"], "created");
    assert!(
        applied[0]["module"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // The table.
    let table = s.cli(&["service", "list"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("uppercase") && l.contains("wasm") && l.contains("64Mi")),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.starts_with("probe")), "{table}");
    let listed: Vec<Value> =
        serde_json::from_slice(&s.cli(&["service", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed.len(), 2);

    // get: YAML for people, JSON for scripts; the token is kept across updates.
    let yaml = s.cli(&["service", "get", "uppercase"]).ok();
    assert!(yaml.contains("name: uppercase"), "{yaml}");
    assert!(yaml.contains("memory: 64Mi"), "{yaml}");
    let after: Value =
        serde_json::from_slice(&s.cli(&["service", "get", "uppercase", "--json"]).stdout).unwrap();
    assert_eq!(after["token"], token_before["token"]);

    // delete, then it is gone: 404 is exit code 4.
    let out = s.cli(&["service", "delete", "uppercase", "probe"]).ok();
    assert!(out.contains("service uppercase deleted"), "{out}");
    let gone = s.cli(&["service", "get", "uppercase"]);
    assert_eq!(gone.code, 4, "{gone:?}");
    assert!(gone.stderr.contains("404"), "{gone:?}");
}

#[test]
fn run_turns_answers_back_into_files() {
    let s = Setup::new(&[]);
    for name in ["uppercase", "split-lines"] {
        s.cli(&[
            "service",
            "apply",
            &format!("examples/wasm/{name}/service.yaml"),
            "--module",
            &dist(name),
        ])
        .ok();
    }
    let input = s.home.path().join("in.txt");
    std::fs::write(&input, "one\ntwo\nthree\n").unwrap();
    let input = input.to_str().unwrap();

    // One output file: to standard output, to a file, into a folder under its own name.
    let out = s.cli(&["run", "uppercase", "--input", input]);
    assert_eq!(out.ok(), "ONE\nTWO\nTHREE\n");
    let file = s.tmp("upper.out");
    s.cli(&["run", "uppercase", "-i", input, "-o", &file]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "ONE\nTWO\nTHREE\n");
    let folder = s.home.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    s.cli(&[
        "run",
        "uppercase",
        "-i",
        input,
        "-o",
        folder.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(folder.join("upper.txt")).unwrap(),
        "ONE\nTWO\nTHREE\n"
    );
    // Standard input as the input file.
    let out = s.cli_stdin(&["run", "uppercase", "--input", "-"], b"piped");
    assert_eq!(out.ok(), "PIPED");

    // Several output files: unzipped into the folder.
    let lines = s.home.path().join("lines");
    s.cli(&[
        "run",
        "split-lines",
        "-i",
        input,
        "-o",
        lines.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(lines.join("lines/0002.txt")).unwrap(),
        "> two\n"
    );
    assert_eq!(
        std::fs::read_to_string(lines.join("summary.json")).unwrap(),
        "{\"lines\": 3, \"bytes\": 14}\n"
    );
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let s = Setup::new(&[]);
    s.cli(&[
        "service",
        "apply",
        "examples/wasm/grayscale/service.yaml",
        "--module",
        &dist("grayscale"),
    ])
    .ok();
    let not_an_image = s.home.path().join("x.txt");
    std::fs::write(&not_an_image, "not an image").unwrap();
    let x = not_an_image.to_str().unwrap();

    // 1: the module failed; its message is shown.
    let failed = s.cli(&["run", "grayscale", "-i", x]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("not a PNG or JPEG"), "{failed:?}");
    assert!(failed.stderr.contains("exit:1"), "{failed:?}");
    // 2: a local problem (missing input file, bad service file, bad endpoint).
    assert_eq!(s.cli(&["run", "grayscale", "-i", "/nonexistent"]).code, 2);
    assert_eq!(s.cli(&["service", "apply", x]).code, 2);
    let bad = oscar_cli(Some("ftp://x"), s.home.path(), &["service", "list"], b"");
    assert_eq!(bad.code, 2, "{bad:?}");
    // 4: refused: an unknown service.
    let unknown = s.cli(&["run", "nope", "-i", x]);
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(unknown.stderr.contains("nope"), "{unknown:?}");
    // 3: nobody listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = oscar_cli(
        Some(&format!("http://127.0.0.1:{port}")),
        s.home.path(),
        &["service", "list"],
        b"",
    );
    assert_eq!(down.code, 3, "{down:?}");
    assert!(down.stderr.contains("cannot reach"), "{down:?}");
    // 2: bad usage, from the argument parser.
    assert_eq!(s.cli(&["run"]).code, 2);
}

#[test]
fn no_output_files_print_the_logs() {
    let s = Setup::new(&[]);
    let def = s.home.path().join("probe.yaml");
    std::fs::write(
        &def,
        format!(
            "name: probe\nmodule: {}\nlog_level: CRITICAL\n",
            repo_root().join(dist("sandbox-probe")).display()
        ),
    )
    .unwrap();
    s.cli(&["service", "apply", def.to_str().unwrap()]).ok();
    let out = s.cli_stdin(&["run", "probe", "-i", "-"], b"print hello from the module");
    assert_eq!(out.ok(), "hello from the module\n");
    assert!(out.stderr.contains("no output file"), "{out:?}");
}

#[test]
fn jobs_logs_and_outputs() {
    let s = Setup::new(&[]);
    s.cli(&[
        "service",
        "apply",
        "examples/wasm/word-count/service.yaml",
        "--module",
        &dist("word-count"),
    ])
    .ok();
    let text = s.home.path().join("text.txt");
    std::fs::write(&text, "the cat and the hat\nthe end\n").unwrap();
    let text = text.to_str().unwrap();

    // job prints the job's name; --wait follows it and downloads its outputs.
    let job = s
        .cli(&["job", "word-count", "-i", text])
        .ok()
        .trim()
        .to_string();
    assert!(job.starts_with("word-count-"), "{job}");
    let out_dir = s.home.path().join("out");
    let waited = s.cli(&[
        "job",
        "word-count",
        "-i",
        text,
        "--wait",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    waited.ok();
    assert!(waited.stderr.contains("Succeeded"), "{waited:?}");
    let counts: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("counts.json")).unwrap()).unwrap();
    assert_eq!(counts["words"], 7);
    assert_eq!(counts["lines"], 2);
    assert_eq!(counts["top"][0]["word"], "the");
    assert_eq!(counts["top"][0]["count"], 3);

    // The first job has finished by now too (two workers, oldest first).
    eventually("the job to succeed in the table", || {
        let table = s.cli(&["jobs", "word-count"]).ok();
        let row = table.lines().find(|l| l.starts_with(&job)).unwrap_or("");
        row.contains("Succeeded")
    });
    let listed: Value =
        serde_json::from_slice(&s.cli(&["jobs", "word-count", "--json"]).stdout).unwrap();
    assert_eq!(listed["jobs"].as_object().unwrap().len(), 2);
    assert_eq!(listed["jobs"][&job]["status"], "Succeeded");

    // logs: one job's, and the newest's without a job name; with timestamps.
    let log = s.cli(&["logs", "word-count", &job]).ok();
    assert!(log.contains("7 words"), "{log}");
    let newest = s.cli(&["logs", "word-count"]);
    assert!(newest.ok().contains("7 words"));
    assert!(newest.stderr.starts_with("job word-count-"), "{newest:?}");
    assert_ne!(
        newest.stderr.trim(),
        format!("job {job}"),
        "the newest is the second job"
    );
    let stamped = s.cli(&["logs", "word-count", &job, "--timestamps"]).ok();
    assert!(stamped.lines().all(|l| l.starts_with("20")), "{stamped}");

    // outputs: a table, JSON, and a download.
    let table = s.cli(&["outputs", "word-count", &job]).ok();
    assert!(
        table.lines().any(|l| l.starts_with("counts.json")),
        "{table}"
    );
    let files: Vec<Value> =
        serde_json::from_slice(&s.cli(&["outputs", "word-count", &job, "--json"]).stdout).unwrap();
    assert_eq!(files[0]["path"], "counts.json");
    let dl = s.home.path().join("dl");
    s.cli(&["outputs", "word-count", &job, "-o", dl.to_str().unwrap()])
        .ok();
    assert!(dl.join("counts.json").is_file());

    // A failing job: --wait exits 1.
    s.cli(&[
        "service",
        "apply",
        "examples/wasm/grayscale/service.yaml",
        "--module",
        &dist("grayscale"),
    ])
    .ok();
    let failed = s.cli(&["job", "grayscale", "-i", text, "--wait"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.out().contains("not a PNG or JPEG"), "{failed:?}");

    let missing = s.cli(&["logs", "word-count", "word-count-nope"]);
    assert_eq!(missing.code, 4, "{missing:?}");
}

#[test]
fn clusters_file_and_credentials() {
    let s = Setup::new(&["--password", "s3cret"]);
    let home = s.home.path();
    // Without credentials the server refuses: exit 4.
    let refused = s.cli(&["service", "list"]);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("401"), "{refused:?}");
    // Flags work...
    s.cli(&["service", "list", "--password", "s3cret"]).ok();
    // ...and so does a named cluster, without any flag or endpoint variable.
    oscar_cli(
        None,
        home,
        &[
            "cluster",
            "add",
            "local",
            &s.server.base,
            "--password",
            "s3cret",
        ],
        b"",
    )
    .ok();
    oscar_cli(
        None,
        home,
        &["cluster", "add", "elsewhere", "http://127.0.0.1:9"],
        b"",
    )
    .ok();
    let table = oscar_cli(None, home, &["cluster", "list"], b"").ok();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('*') && l.contains("local")),
        "the first cluster is the default: {table}"
    );
    let out = oscar_cli(None, home, &["service", "list"], b"").ok();
    assert!(out.starts_with("NAME"), "{out}");
    let down = oscar_cli(
        None,
        home,
        &["service", "list", "--cluster", "elsewhere"],
        b"",
    );
    assert_eq!(down.code, 3, "{down:?}");
    oscar_cli(None, home, &["cluster", "default", "elsewhere"], b"").ok();
    assert_eq!(oscar_cli(None, home, &["service", "list"], b"").code, 3);
    oscar_cli(None, home, &["cluster", "remove", "elsewhere"], b"").ok();
    let listed: Vec<Value> =
        serde_json::from_slice(&oscar_cli(None, home, &["cluster", "list", "--json"], b"").stdout)
            .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("password").is_none());
    // The only cluster left is used.
    oscar_cli(None, home, &["service", "list"], b"").ok();
    assert_eq!(
        oscar_cli(None, home, &["service", "list", "--cluster", "nope"], b"").code,
        2
    );

    // A service token invokes without the administrator's password.
    oscar_cli(
        None,
        home,
        &[
            "service",
            "apply",
            "examples/wasm/uppercase/service.yaml",
            "--module",
            &dist("uppercase"),
        ],
        b"",
    )
    .ok();
    let def: Value = serde_json::from_slice(
        &oscar_cli(None, home, &["service", "get", "uppercase", "--json"], b"").stdout,
    )
    .unwrap();
    let token = def["token"].as_str().unwrap();
    let other_home = tempfile::tempdir().unwrap();
    let out = oscar_cli(
        Some(&s.server.base),
        other_home.path(),
        &["run", "uppercase", "-i", "-", "--token", token],
        b"tok",
    );
    assert_eq!(out.ok(), "TOK");
    let bad = oscar_cli(
        Some(&s.server.base),
        other_home.path(),
        &["run", "uppercase", "-i", "-", "--token", "wrong"],
        b"tok",
    );
    assert_eq!(bad.code, 4, "{bad:?}");
}

#[test]
fn storage_files_through_the_cli() {
    let s = Setup::new(&[]);
    let def = s.home.path().join("store.yaml");
    std::fs::write(
        &def,
        format!(
            "name: store\nmodule: {}\ninput:\n- storage_provider: minio\n  path: box/in\n",
            repo_root().join(dist("uppercase")).display()
        ),
    )
    .unwrap();
    s.cli(&["service", "apply", def.to_str().unwrap()]).ok();
    let local = s.home.path().join("a b.txt");
    std::fs::write(&local, "lower").unwrap();
    s.cli(&[
        "service",
        "put-file",
        "store",
        "minio",
        local.to_str().unwrap(),
        "box/in/a b.txt",
    ])
    .ok();
    let listed = s
        .cli(&["service", "list-files", "store", "minio.default", "box/in"])
        .ok();
    assert!(
        listed.lines().any(|l| l.starts_with("in/a b.txt")),
        "{listed}"
    );
    let json: Vec<Value> = serde_json::from_slice(
        &s.cli(&["service", "list-files", "store", "minio", "box", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["key"], "in/a b.txt");
    assert_eq!(json[0]["size"], 5);
    let back = s.home.path().join("back.txt");
    s.cli(&[
        "service",
        "get-file",
        "store",
        "minio",
        "box/in/a b.txt",
        back.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "lower");
    // The put triggered the service; --wait returns once its job has finished.
    let table = s.cli(&["jobs", "store", "--wait"]).ok();
    assert!(table.contains("Succeeded"), "{table}");
    // Providers whose credentials the server keeps to itself are refused with a reason.
    let other = s.cli(&["service", "list-files", "store", "minio.lab", "box"]);
    assert_eq!(other.code, 2, "{other:?}");
    assert!(other.stderr.contains("credentials"), "{other:?}");
    // A missing object is the store's answer, not a crash.
    let missing = s.cli(&[
        "service",
        "get-file",
        "store",
        "minio",
        "box/in/nope.txt",
        back.to_str().unwrap(),
    ]);
    assert_eq!(missing.code, 5, "{missing:?}");
    assert!(
        missing.stderr.contains("s3://box/in/nope.txt"),
        "{missing:?}"
    );
}

/// `service manifest`: offline, the Job of each image service of an FDL file, with its
/// variables and resources in the container (the script is fetched by the supervisor, so it is
/// not in the Job).
#[test]
fn service_manifest_prints_the_job_offline() {
    let home = tempfile::tempdir().unwrap();
    let fdl = home.path().join("fdl.yaml");
    std::fs::write(home.path().join("script.sh"), "echo gray\n").unwrap();
    std::fs::write(
        &fdl,
        "functions:\n  oscar:\n  - my-cluster:\n      name: grayify\n      memory: 256Mi\n      \
         cpu: '0.5'\n      image: ghcr.io/example/imagemagick\n      script: script.sh\n      \
         environment:\n        variables:\n          SIZE: \"64\"\n  - my-cluster:\n      \
         name: wasm-one\n      module: sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    )
    .unwrap();
    // No server at all: nothing listens at this endpoint.
    let out = oscar_cli(
        Some("http://127.0.0.1:9"),
        home.path(),
        &[
            "service",
            "manifest",
            fdl.to_str().unwrap(),
            "--namespace",
            "batch-ns",
            "--async",
        ],
        b"",
    );
    let text = out.ok();
    assert!(out.stderr.contains("wasm-one runs a module"), "{out:?}");
    // An asynchronous Job pulls its image again, as OSCAR's do.
    assert!(text.contains("imagePullPolicy: Always"), "{text}");
    let job: Value = yaml_serde::from_str(&text).unwrap();
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["namespace"], "batch-ns");
    assert_eq!(
        job["metadata"]["labels"]["oscar-wasm.io/service"],
        "grayify"
    );
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/example/imagemagick");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "SIZE" && e["value"] == "64")
    );
    // A definition that cannot run is refused with the reason.
    std::fs::write(&fdl, "name: broken\nimage: alpine\n").unwrap();
    let bad = oscar_cli(
        None,
        home.path(),
        &["service", "manifest", fdl.to_str().unwrap()],
        b"",
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("script"), "{bad:?}");
}
