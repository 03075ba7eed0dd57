//! oscar-wasm: OSCAR's serverless file-processing contract, with each service run as a
//! WebAssembly module under wasmtime instead of a container.
//!
//! Where a request goes, by module:
//! - [`api`]: the HTTP edge (axum routers, one error type turned into responses);
//! - [`app`]: the shared handle tying the stores together (deploy, look up, invoke);
//! - [`auth`]: who may administer and who may invoke;
//! - [`registry`] and [`service`]: service definitions, validated and persisted;
//! - [`modules`]: the content-addressed module store and its compiled-artifact cache;
//! - [`supervisor`]: FaaS Supervisor's rules, body to input file and output files to response;
//! - [`invoke`]: one invocation: scratch folders, the sandbox run, output collection;
//! - [`kube`]: image services as Kubernetes Jobs, with the supervisor's callback table;
//! - [`jobs`]: asynchronous jobs: the persisted queue, workers, logs and outputs;
//! - [`storage`]: storage providers, bucket events, object downloads and uploads, and the
//!   embedded S3-compatible store;
//! - [`metrics`]: Prometheus metrics;
//! - [`wasm`]: the wasmtime engine, linkers and pre-instantiated modules;
//! - [`cli`]: the client commands of the binary (service, run, job, jobs, logs, ...).

pub mod api;
pub mod app;
pub mod auth;
pub mod background;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod deployer;
pub mod executor;
pub mod fsutil;
pub mod invoke;
pub mod jobs;
pub mod kube;
pub mod listener;
pub mod metrics;
pub mod modules;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod service;
pub mod storage;
pub mod supervisor;
pub mod wasm;
