//! Cost as the work grows: one server with 100 distinct modules and more and more services
//! over them (100, 1,000, 10,000 by default). At each step: the /run rate of one service
//! (wrk, 16 connections), restart to its first answer, `GET /system/services`, and resident
//! memory once every module has run.

use crate::server::Process;
use crate::wrk::{Load, Wrk};
use crate::{deploy_service, get, post, upload, with_custom_section};
use bytes::Bytes;
use std::path::Path;
use std::time::{Duration, Instant};

/// Distinct modules the services share.
pub const MODULES: usize = 100;

/// The figures at one step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Services deployed.
    pub services: usize,
    /// POST /run of one service at concurrency 16.
    pub rps: f64,
    /// Start of the server process to the first 200 of that service.
    pub restart: Duration,
    /// `GET /system/services`, median of five.
    pub list: Duration,
    /// Resident memory after every module ran and the load, in KiB.
    pub memory_kib: u64,
}

/// What a step needs.
pub struct Setup<'a> {
    pub server_bin: &'a Path,
    pub wasm: &'a [u8],
    pub body: &'a Bytes,
    pub expect: &'a Bytes,
    pub wrk: &'a Wrk,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs every step in `steps` (ascending), growing one data folder.
pub fn measure(rt: &tokio::runtime::Runtime, setup: &Setup<'_>, steps: &[usize]) -> Vec<Step> {
    let dir = crate::workdir();
    let data = dir.path().join("data");
    let extra = ["--max-concurrency", "64"];
    let mut server = Process::oscar(setup.server_bin, &data, &extra);
    let digests: Vec<String> = (0..MODULES)
        .map(|i| {
            let wasm = with_custom_section(setup.wasm, &format!("scale-module-{i}"));
            rt.block_on(upload(server.addr, &wasm))
        })
        .collect();
    let mut deployed = 0;
    let mut results = Vec::new();
    for &n in steps {
        rt.block_on(create_services(server.addr, &digests, deployed, n));
        deployed = n;
        // The creations' writes reach the disk now, not during the measurement.
        let _ = std::process::Command::new("sync").status();
        // Every module once, so that all are loaded (memory) and the first is warm.
        for i in 0..MODULES.min(n) {
            let (status, _) = rt.block_on(post(
                server.addr,
                &format!("/run/svc-{i}"),
                setup.body.clone(),
            ));
            assert_eq!(status, 200, "svc-{i}");
        }
        let load = Load {
            url: format!("http://{}/run/svc-0", server.addr),
            body: setup.body,
            headers: vec![],
        };
        setup.wrk.run(&load, 16, setup.warmup);
        let figures = setup.wrk.run(&load, 16, setup.duration);
        let (_, memory_kib) = server.memory_kib();
        let mut lists: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                let (status, body) = rt.block_on(get(server.addr, "/system/services"));
                assert_eq!(status, 200);
                assert!(body.len() > n * 50, "the listing holds every service");
                started.elapsed()
            })
            .collect();
        lists.sort();
        server.stop();
        let started = Instant::now();
        server = Process::oscar(setup.server_bin, &data, &extra);
        loop {
            let (status, body) = rt.block_on(post(server.addr, "/run/svc-0", setup.body.clone()));
            if status == 200 {
                assert_eq!(body, setup.expect.to_vec());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no answer after restart"
            );
        }
        let restart = started.elapsed();
        eprintln!(
            "scale {n}: {:.0}/s, restart {restart:?}, list {:?}, {} KiB",
            figures.rps, lists[2], memory_kib
        );
        results.push(Step {
            services: n,
            rps: figures.rps,
            restart,
            list: lists[2],
            memory_kib,
        });
    }
    server.stop();
    results
}

/// Creates services `svc-{from}`..`svc-{to}`, eight requests at a time, module by turns.
async fn create_services(addr: std::net::SocketAddr, digests: &[String], from: usize, to: usize) {
    let mut next = from;
    while next < to {
        let batch: Vec<_> = (next..to.min(next + 8))
            .map(|i| {
                let digest = digests[i % digests.len()].clone();
                tokio::spawn(
                    async move { deploy_service(addr, &digest, &format!("svc-{i}")).await },
                )
            })
            .collect();
        for task in batch {
            task.await.expect("create task");
        }
        next = to.min(next + 8);
    }
}
