//! oscar-wasm: OSCAR's serverless file-processing contract, with each service run as a
//! WebAssembly module under wasmtime instead of a container.
//!
//! Where a request goes, by module (ARCHITECTURE.md draws it):
//! - [`server`] and [`listener`]: the listeners, their connection bounds, graceful shutdown;
//! - [`api`]: the HTTP edge (axum routers; names and bodies checked before handlers; one error
//!   type turned into responses);
//! - [`protocol`]: header names, job statuses, outcomes and names shared with the clients;
//! - [`app`]: the composition root that builds every piece from the settings;
//! - [`deployer`]: service and module changes and the rules that keep them consistent;
//! - [`executor`]: every invocation, on any backend, with admission control and metrics;
//! - [`invoke`]: one wasm invocation: scratch folders, the sandbox run, output collection;
//! - [`kube`]: image services as Kubernetes Jobs, and the table of pods' invocations;
//! - [`delivery`]: outputs to the service's buckets after an invocation;
//! - [`jobs`]: asynchronous jobs: the persisted queue, workers, logs and outputs;
//! - [`background`]: the workers and the poller, started and stopped as one;
//! - [`storage`]: storage providers, bucket events, object downloads and uploads, the poller,
//!   and the embedded S3-compatible store;
//! - [`faas`]: FaaS Supervisor's rules, body to input file and output files to response;
//! - [`auth`]: who may administer and who may invoke;
//! - [`registry`], [`service`] and [`oscar_definition`]: service definitions, decoded as OSCAR
//!   decodes them, validated and persisted;
//! - [`modules`]: the content-addressed module store and its compiled-artifact cache;
//! - [`wasm`]: the wasmtime engine, linkers and pre-instantiated modules;
//! - [`metrics`], [`config`], [`fsutil`]: figures, settings, crash-safe file operations;
//! - [`bounded`]: answers of outbound requests read within a bound;
//! - [`cli`]: the client commands of the binary (service, run, job, jobs, logs, ...).

pub mod access;
pub mod api;
pub mod app;
pub mod auth;
pub mod background;
pub mod bounded;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_settings;
pub mod config;
pub mod deployer;
pub mod documents;
pub mod executions;
pub mod executor;
pub mod faas;
pub mod fsutil;
pub mod group_sync;
pub mod jobs;
pub mod kube;
pub mod listener;
pub mod metrics;
pub mod minio_sync;
pub mod modules;
pub mod oci;
pub mod oidc;
pub mod oscar_definition;
pub mod packages;
pub mod pipeline;
pub mod protocol;
pub mod quantity;
pub mod quotas;
pub mod registry;
pub mod runtimes;
pub mod secrets;
pub mod server;
pub mod service;
pub mod storage;
pub mod stores;
pub mod telemetry;
pub mod usage;
pub mod wasm;
