//! BENCHMARKS.md: the figures of one run, the ratios between them, and each target met or not.

use crate::load::Stats;
use crate::scale::Step;
use crate::wrk::Figures;
use std::fmt::Write as _;
use std::time::Duration;

/// Everything measured in one run.
#[derive(Default)]
pub struct Report {
    /// POST /run: concurrency, figures, server CPU per request.
    pub http: Vec<(usize, Figures, Duration)>,
    /// The runtime library without HTTP: concurrency, latencies.
    pub in_process: Vec<(usize, Stats)>,
    /// The bare wasmtime sequence: threads, latencies.
    pub bare: Vec<(usize, Stats)>,
    /// `wasmtime serve`: concurrency, figures, server CPU per request.
    pub wasmtime: Vec<(usize, Figures, Duration)>,
    /// The same component as an HTTP service on our exposed route.
    pub exposed: Vec<(usize, Figures, Duration)>,
    /// FaaS Supervisor: parallel runs, latencies.
    pub peer: Vec<(usize, Stats)>,
    /// Module name, size, upload to first answer.
    pub cold_upload: Vec<(String, usize, Duration)>,
    /// Server start to first answer.
    pub restart: Option<Duration>,
    /// The scale table.
    pub scale: Vec<Step>,
    /// Local mode next to cluster mode.
    pub cluster: Vec<crate::cluster::Mode>,
    /// Python and JavaScript script services next to the Rust module.
    pub scripts: Option<crate::scripts::Scripts>,
    /// The ML inference example's cost per call.
    pub ml: Option<crate::ml::Ml>,
}

/// One line of wrk figures, for the progress log.
pub fn line(f: &Figures) -> String {
    format!(
        "{:.0}/s p50 {} p99 {} max {} errors {}",
        f.rps,
        us(f.p50),
        us(f.p99),
        us(f.max),
        f.errors
    )
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn best(stats: &[(usize, Stats)]) -> f64 {
    stats
        .iter()
        .map(|(_, s)| s.throughput())
        .fold(0.0, f64::max)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

impl Report {
    /// The Markdown report.
    pub fn render(&self, commit: &str, duration: Duration) -> String {
        let mut out = String::new();
        self.header(&mut out, commit, duration);
        self.load_tables(&mut out);
        self.process_tables(&mut out);
        self.cold_tables(&mut out);
        self.scripts_table(&mut out);
        self.scale_table(&mut out);
        self.cluster_table(&mut out);
        self.targets(&mut out);
        out
    }

    fn header(&self, out: &mut String, commit: &str, duration: Duration) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            })
            .unwrap_or(0);
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `scripts/bench.sh` (`just bench`); re-run it to refresh this file. Every figure below comes from the same run.\n"
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(
            out,
            "| machine | {cpu}, {cores} cores, {:.0} GiB |",
            mem_kib as f64 / 1024.0 / 1024.0
        );
        let _ = writeln!(out, "| date | {date} |\n| commit | `{commit}` |");
        let _ = writeln!(
            out,
            "| workload | the `uppercase` example: a 1 KiB text input sent base64-encoded to POST /run, one output file returned base64-encoded |"
        );
        let _ = writeln!(
            out,
            "| HTTP load | `wrk` (Debian's package), keep-alive HTTP/1.1, on the same machine; {} s measured per level after a warm-up |",
            duration.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| in-process figures | measured inside the benchmark's own process, where no HTTP tool applies |\n"
        );
    }

    fn load_tables(&self, out: &mut String) {
        let table = |out: &mut String, rows: &[(usize, Figures, Duration)]| {
            let _ = writeln!(
                out,
                "| concurrency | requests/s | p50 | p90 | p99 | max | server CPU per request | errors |\n|---|---|---|---|---|---|---|---|"
            );
            for (c, f, cpu) in rows {
                let _ = writeln!(
                    out,
                    "| {c} | {:.0} | {} | {} | {} | {} | {} | {} |",
                    f.rps,
                    us(f.p50),
                    us(f.p90),
                    us(f.p99),
                    us(f.max),
                    us(*cpu),
                    f.errors
                );
            }
        };
        let _ = writeln!(out, "## POST /run over HTTP\n");
        table(out, &self.http);
        if !self.wasmtime.is_empty() {
            let _ = writeln!(
                out,
                "\n## `wasmtime serve` 48 with a wasi-http component (no files)\n"
            );
            let _ = writeln!(
                out,
                "The body upper-cased in memory by a wasi-http handler: what a user could run instead, without OSCAR's file contract. Same `wrk`, same levels.\n"
            );
            table(out, &self.wasmtime);
        }
        if !self.exposed.is_empty() {
            let _ = writeln!(
                out,
                "\n## HTTP service: the same component on `/system/services/{{name}}/exposed/`\n"
            );
            let _ = writeln!(
                out,
                "The wasi-http component above deployed as an HTTP service (`expose`), a fresh instance per request, the service's limits and the server's admission, loaded like `wasmtime serve` in the same run.\n"
            );
            table(out, &self.exposed);
        }
    }

    fn process_tables(&self, out: &mut String) {
        let table = |out: &mut String, what: &str, rows: &[(usize, Stats)]| {
            let _ = writeln!(
                out,
                "| {what} | invocations/s | p50 | p99 | max | errors |\n|---|---|---|---|---|---|"
            );
            for (c, s) in rows {
                let _ = writeln!(
                    out,
                    "| {c} | {:.0} | {} | {} | {} | {} |",
                    s.throughput(),
                    us(s.percentile(50.0)),
                    us(s.percentile(99.0)),
                    us(s.max()),
                    s.errors
                );
            }
        };
        let _ = writeln!(out, "\n## In-process path (runtime library, no HTTP)\n");
        let _ = writeln!(
            out,
            "Body decoding, admission, invocation (scratch folders, instantiate, run, outputs, cleanup) and response building, on a tokio runtime with one worker per core.\n"
        );
        table(out, "concurrency", &self.in_process);
        let _ = writeln!(out, "\n## Bare wasmtime sequence (bench/src/bare.rs)\n");
        let _ = writeln!(
            out,
            "wasmtime and wasmtime-wasi alone, per invocation: scratch folder with `in/` and `out/`, input written, WASI preview 1 context with both preopens, instantiate from an `InstancePre`, `_start`, outputs read, folder removed. Same engine settings as the server.\n"
        );
        table(out, "threads", &self.bare);
        if !self.peer.is_empty() {
            let _ = writeln!(
                out,
                "\n## Peer: OSCAR's FaaS Supervisor, once per request\n"
            );
            let _ = writeln!(
                out,
                "PyPI faas-supervisor 1.5.8 run as OSCAR runs it in a container (minus Kubernetes): one process per invocation, the body on stdin, a /bin/sh script doing the same upper-casing.\n"
            );
            let _ = writeln!(
                out,
                "| parallel runs | invocations/s | p50 | p99 |\n|---|---|---|---|"
            );
            for (c, s) in &self.peer {
                let _ = writeln!(
                    out,
                    "| {c} | {:.2} | {} | {} |",
                    s.throughput(),
                    ms(s.percentile(50.0)),
                    ms(s.percentile(99.0))
                );
            }
        }
    }

    fn cold_tables(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n## Upload to first answer\n\nUpload of a module new to the server, creation of a service, first POST /run answered.\n\n| module | size | time |\n|---|---|---|"
        );
        for (name, size, took) in &self.cold_upload {
            let _ = writeln!(out, "| `{name}` | {} KiB | {} |", size / 1024, ms(*took));
        }
        if let Some(t) = self.restart {
            let _ = writeln!(
                out,
                "\nServer start to first answer of a deployed service (nothing recompiled): {}.",
                ms(t)
            );
        }
        if let Some(ml) = &self.ml {
            let _ = writeln!(
                out,
                "\n## ML inference example\n\n`digits` (examples/wasm/digits): a 64-48-10 neural network in ONNX run by tract inside the guest (the model parsed and optimized on every call), one 32x32 PNG in, the digit and its probabilities out as JSON. Sequential POST /run calls on an idle server; CPU time and peak linear memory per call from the server's usage meters.\n\n| module | p50 | p99 | guest CPU per call | peak linear memory |\n|---|---|---|---|---|\n| `digits` ({} KiB) | {} | {} | {} | {} KiB |",
                ml.size / 1024,
                ms(ml.p50),
                ms(ml.p99),
                ms(ml.cpu),
                ml.peak_memory / 1024
            );
        }
    }

    fn scripts_table(&self, out: &mut String) {
        let Some(scripts) = &self.scripts else {
            return;
        };
        let _ = writeln!(
            out,
            "\n## Python and JavaScript services\n\nOne server runs the `uppercase` module and two script services doing the same (read the input, write it upper-cased): `oscar-wasm/python:3.14` (CPython 3.14 from componentize-py, 31 MB component) and `oscar-wasm/javascript:1` (StarlingMonkey from componentize-js, 14 MB). \"First answer\" is the creation of the first service of that language on a new server (its runtime compiled by Winch, Cranelift following in the background) to its first answer; the load runs on Cranelift's code. \"Memory per call\" is the growth of the server's resident memory at concurrency 16, divided by 16.\n\n| service | first answer | concurrency | requests/s | p50 | p99 | server CPU per request | memory per call |\n|---|---|---|---|---|---|---|---|"
        );
        for row in &scripts.rows {
            for (c, f, cpu) in &row.load {
                let first = match (row.first_answer, *c) {
                    (Some(t), 1) => ms(t),
                    _ => String::new(),
                };
                let memory = if *c == 16 {
                    format!("{} KiB", row.per_call_kib)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "| {} | {first} | {c} | {:.0} | {} | {} | {} | {memory} |",
                    row.what,
                    f.rps,
                    us(f.p50),
                    us(f.p99),
                    us(*cpu)
                );
            }
        }
        let _ = writeln!(
            out,
            "\nResident memory of the server: {} before any call, {} idle after both runtimes ran (their compiled code, both compilers' while Cranelift's replaced Winch's, and the pool slots their calls used; not yet broken down, see issue 27).",
            mib(scripts.empty_kib),
            mib(scripts.idle_kib)
        );
    }

    fn scale_table(&self, out: &mut String) {
        if self.scale.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\n## Cost as services grow\n\nOne server, {} distinct modules shared by every service; each step adds services to the same data folder. Memory is resident memory after every module ran and the load.\n",
            crate::scale::MODULES
        );
        let _ = writeln!(
            out,
            "| services | POST /run req/s (concurrency 16) | restart to first answer | `GET /system/services` | memory |\n|---|---|---|---|---|"
        );
        for s in &self.scale {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} |",
                s.services,
                s.rps,
                ms(s.restart),
                ms(s.list),
                mib(s.memory_kib)
            );
        }
    }

    fn cluster_table(&self, out: &mut String) {
        let mode = |name: &str| self.cluster.iter().find(|m| m.name == name);
        let (Some(local), Some(cluster)) = (mode("local"), mode("cluster")) else {
            return;
        };
        let _ = writeln!(
            out,
            "\n## Cluster mode\n\nThe same server alone (`local`: its data folder) and as a cluster member (`--cluster`, one `nats-server` 2.9 with JetStream on file storage, on this machine, one replica). A synchronous call touches no NATS; a job is stored, queued, taken, recorded and acknowledged through it. Jobs: {} submitted by {} clients at once, default 8 job workers; CPU is the process's user and system time over the batch, divided by the jobs. Durability differs: local mode makes each job's input, record, log and outputs durable (a group commit, one `syncfs` shared by the jobs written meanwhile) before it answers or records them; JetStream acknowledges a write once it is in its file store and flushes to disk on its own schedule (its `sync_interval`, 2 minutes by default), so with one NATS server an acknowledged job survives a crash of oscar-wasm but not a power cut, and `--cluster-replicas 3` on a three-node NATS cluster is what makes it survive the loss of a machine.\n",
            local.jobs.count,
            crate::cluster::SUBMITTERS
        );
        let _ = writeln!(
            out,
            "| | local | cluster | cluster / local |\n|---|---|---|---|"
        );
        let mut row = |what: &str, a: String, b: String, ratio: String| {
            let _ = writeln!(out, "| {what} | {a} | {b} | {ratio} |");
        };
        for (c, ours, cpu) in &local.run {
            if let Some((_, theirs, their_cpu)) = cluster.run.iter().find(|(k, ..)| k == c) {
                row(
                    &format!("POST /run, concurrency {c}: req/s"),
                    format!("{:.0}", ours.rps),
                    format!("{:.0}", theirs.rps),
                    format!("{:.2}", theirs.rps / ours.rps),
                );
                row(
                    &format!("POST /run, concurrency {c}: p50, server CPU per call"),
                    format!("{}, {}", us(ours.p50), us(*cpu)),
                    format!("{}, {}", us(theirs.p50), us(*their_cpu)),
                    String::new(),
                );
            }
        }
        let pct = crate::cluster::Jobs::accept_percentile;
        let (a, b) = (&local.jobs, &cluster.jobs);
        row(
            "POST /job answered (201): p50 / p99",
            format!("{} / {}", ms(pct(a, 0.5)), ms(pct(a, 0.99))),
            format!("{} / {}", ms(pct(b, 0.5)), ms(pct(b, 0.99))),
            format!(
                "{:.1}",
                pct(b, 0.5).as_secs_f64() / pct(a, 0.5).as_secs_f64()
            ),
        );
        let rate = |j: &crate::cluster::Jobs| j.count as f64 / j.drained.as_secs_f64();
        row(
            "jobs per second, first submission to last Succeeded",
            format!("{:.0}", rate(a)),
            format!("{:.0}", rate(b)),
            format!("{:.2}", rate(b) / rate(a)),
        );
        row(
            "server CPU per job",
            us(a.server_cpu),
            us(b.server_cpu),
            format!(
                "{:.1}",
                b.server_cpu.as_secs_f64() / a.server_cpu.as_secs_f64()
            ),
        );
        row(
            "NATS CPU per job",
            "—".into(),
            b.nats_cpu.map_or_else(|| "—".into(), us),
            String::new(),
        );
        let (a, b) = (&local.bulk, &cluster.bulk);
        row(
            &format!(
                "bulk: {} files uploaded by {} S3 clients, all uploads acknowledged",
                a.files,
                crate::bulk::UPLOADERS
            ),
            ms(a.uploaded),
            ms(b.uploaded),
            String::new(),
        );
        row(
            "bulk: files per second, first upload to last output",
            format!("{:.0}", a.rate()),
            format!("{:.0}", b.rate()),
            format!("{:.2}", b.rate() / a.rate()),
        );
        row(
            "bulk: server CPU per file",
            us(a.server_cpu),
            us(b.server_cpu),
            format!(
                "{:.1}",
                b.server_cpu.as_secs_f64() / a.server_cpu.as_secs_f64()
            ),
        );
        let (a, b) = (&local.polled, &cluster.polled);
        row(
            "bulk through the poller of an external store (poll_interval 1 s): files per second, first upload to last output",
            format!("{:.0}", a.rate()),
            format!("{:.0}", b.rate()),
            format!("{:.2}", b.rate() / a.rate()),
        );
        row(
            "bulk through the poller: server CPU per file (the external store's not counted)",
            us(a.server_cpu),
            us(b.server_cpu),
            format!(
                "{:.1}",
                b.server_cpu.as_secs_f64() / a.server_cpu.as_secs_f64()
            ),
        );
    }

    /// Jobs and bulk files against issue 29's targets.
    fn job_targets(&self, row: &mut impl FnMut(&str, String, &str, bool)) {
        let mode = |name: &str| self.cluster.iter().find(|m| m.name == name);
        let rate = |j: &crate::cluster::Jobs| j.count as f64 / j.drained.as_secs_f64();
        if let Some(local) = mode("local") {
            row(
                "jobs per second, local (accepted to Succeeded)",
                format!("{:.0}", rate(&local.jobs)),
                "≥ 2000",
                rate(&local.jobs) >= 2000.0,
            );
            let p99 = local.jobs.accept_percentile(0.99);
            row(
                "POST /job p99, local, during that batch",
                ms(p99),
                "< 10 ms",
                p99 < Duration::from_millis(10),
            );
            row(
                "bulk files per second through a bucket, local",
                format!("{:.0}", local.bulk.rate()),
                "≥ 1500",
                local.bulk.rate() >= 1500.0,
            );
        }
        if let Some(cluster) = mode("cluster") {
            row(
                "jobs per second, cluster (one NATS server)",
                format!("{:.0}", rate(&cluster.jobs)),
                "≥ 1000",
                rate(&cluster.jobs) >= 1000.0,
            );
        }
    }

    fn script_targets(&self, row: &mut impl FnMut(&str, String, &str, bool)) {
        let Some(scripts) = &self.scripts else {
            return;
        };
        for (r, limit) in scripts.rows.iter().skip(1).zip([2, 5]) {
            if let Some((_, f, _)) = r.load.first() {
                row(
                    &format!("{} p50 at concurrency 1", r.what),
                    us(f.p50),
                    &format!("≤ {limit} ms"),
                    f.p50 <= Duration::from_millis(limit),
                );
            }
            if let Some(t) = r.first_answer {
                row(
                    &format!("{}: first service on a new server to first answer", r.what),
                    ms(t),
                    "≤ 5 s",
                    t <= Duration::from_secs(5),
                );
            }
        }
    }

    /// The HTTP service against `wasmtime serve` (issue 28's targets).
    fn exposed_targets(&self, row: &mut impl FnMut(&str, String, &str, bool)) {
        let at = |rows: &[(usize, Figures, Duration)], c: usize| {
            rows.iter()
                .find(|(k, ..)| *k == c)
                .map(|(_, f, cpu)| (*f, *cpu))
        };
        if let (Some((ours, our_cpu)), Some((theirs, their_cpu))) =
            (at(&self.exposed, 16), at(&self.wasmtime, 16))
        {
            let ratio = ours.rps / theirs.rps;
            row(
                "HTTP service / `wasmtime serve`, requests/s at concurrency 16",
                format!(
                    "{:.0}% ({:.0} / {:.0})",
                    100.0 * ratio,
                    ours.rps,
                    theirs.rps
                ),
                "≥ 100%",
                ratio >= 1.0,
            );
            row(
                "HTTP service CPU per request at concurrency 16, ours / theirs",
                format!("{} / {}", us(our_cpu), us(their_cpu)),
                "≤ theirs",
                our_cpu <= their_cpu,
            );
        }
        if let (Some((ours, _)), Some((theirs, _))) = (at(&self.exposed, 1), at(&self.wasmtime, 1))
        {
            row(
                "HTTP service p50 at concurrency 1, ours / theirs",
                format!("{} / {}", us(ours.p50), us(theirs.p50)),
                "≤ theirs",
                ours.p50 <= theirs.p50,
            );
        }
    }

    fn targets(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n## Targets\n\n| figure | value | target | |\n|---|---|---|---|"
        );
        let mut row = |figure: &str, value: String, target: &str, met: bool| {
            let _ = writeln!(out, "| {figure} | {value} | {target} | {} |", verdict(met));
        };
        let http = |c: usize| self.http.iter().find(|(k, ..)| *k == c);
        let bare = best(&self.bare);
        if let (Some((_, ours, our_cpu)), Some((_, theirs, their_cpu))) =
            (http(16), self.wasmtime.iter().find(|(k, ..)| *k == 16))
        {
            let ratio = ours.rps / theirs.rps;
            row(
                "POST /run / `wasmtime serve`, requests/s at concurrency 16",
                format!(
                    "{:.0}% ({:.0} / {:.0})",
                    100.0 * ratio,
                    ours.rps,
                    theirs.rps
                ),
                "≥ 100%",
                ratio >= 1.0,
            );
            row(
                "server CPU per request at concurrency 16, ours / theirs",
                format!("{} / {}", us(*our_cpu), us(*their_cpu)),
                "≤ theirs",
                our_cpu <= their_cpu,
            );
        }
        self.exposed_targets(&mut row);
        if bare > 0.0 {
            let in_process = best(&self.in_process);
            row(
                "in-process path / bare wasmtime (best of each)",
                format!(
                    "{:.0}% ({in_process:.0} / {bare:.0})",
                    100.0 * in_process / bare
                ),
                "≥ 80%",
                in_process >= 0.8 * bare,
            );
            if let Some((_, f, _)) = http(16) {
                row(
                    "HTTP at concurrency 16 / bare wasmtime",
                    format!("{:.0}% ({:.0} / {bare:.0})", 100.0 * f.rps / bare, f.rps),
                    "≥ 75%",
                    f.rps >= 0.75 * bare,
                );
            }
        }
        if let Some((_, f, _)) = http(1) {
            row(
                "p50 at concurrency 1",
                us(f.p50),
                "≤ 150 µs",
                f.p50 <= Duration::from_micros(150),
            );
        }
        if let Some((_, f, _)) = http(4) {
            row(
                "p99 at concurrency 4",
                us(f.p99),
                "≤ 1 ms",
                f.p99 <= Duration::from_millis(1),
            );
        }
        self.job_targets(&mut row);
        if let Some((name, _, slowest)) = self.cold_upload.iter().max_by_key(|(_, _, t)| *t) {
            row(
                "upload to first answer, slowest module",
                format!("{} (`{name}`)", ms(*slowest)),
                "≤ 50 ms",
                *slowest <= Duration::from_millis(50),
            );
        }
        self.script_targets(&mut row);
        let (Some(first), Some(last)) = (self.scale.first(), self.scale.last()) else {
            return;
        };
        let n = last.services;
        if let Some((_, one, _)) = http(16) {
            row(
                &format!("POST /run with {n} services / with one"),
                format!(
                    "{:.0}% ({:.0} / {:.0})",
                    100.0 * last.rps / one.rps,
                    last.rps,
                    one.rps
                ),
                "≥ 90%",
                last.rps >= 0.9 * one.rps,
            );
        }
        row(
            &format!("restart to first answer, {n} services"),
            ms(last.restart),
            "≤ 1 s",
            last.restart <= Duration::from_secs(1),
        );
        row(
            &format!("`GET /system/services`, {n} services"),
            ms(last.list),
            "≤ 100 ms",
            last.list <= Duration::from_millis(100),
        );
        row(
            &format!("memory, {n} services / {} services", first.services),
            format!("{} / {}", mib(last.memory_kib), mib(first.memory_kib)),
            "≤ 2x",
            last.memory_kib <= 2 * first.memory_kib,
        );
    }
}
