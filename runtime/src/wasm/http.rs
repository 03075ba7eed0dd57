//! HTTP services: `wasi:http/proxy` components (what `wasmtime serve`, Spin and wasmCloud run),
//! linked against wasmtime's own wasi:http host and instantiated once per request.
//!
//! The linker holds the proxy world (clocks, random, stdio, wasi:http) and, as `wasmtime serve
//! -Scli` does, the rest of WASI 0.2, because toolchains import more than they use
//! (componentize-js's StarlingMonkey imports the terminal and file-system interfaces): the
//! guest gets no preopened folder (so no file at all) and its sockets are refused (the WASI
//! context allows no address). Its outbound requests go through [`Outbound`], which answers
//! every one with `HTTP-request-denied` unless the service's allow-list opens it.
//!
//! Stores of HTTP guests are async, as file-processing guests' are: the guest runs on a fiber
//! on tokio's workers, yielding at every epoch tick.

use super::outbound::Outbound;
use std::sync::Arc;
use wasmtime::component::{self, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Store data of an HTTP guest: one request's.
pub struct HttpState {
    /// Its WASI context (stdio captured, no preopens, no network).
    pub ctx: WasiCtx,
    /// Resources handed to the component.
    pub table: ResourceTable,
    /// wasi:http's own state.
    pub http: WasiHttpCtx,
    /// Where its outbound requests go: the service's allow-list.
    pub hooks: Outbound,
    /// Memory and instance limits, and the memory's peak.
    pub limits: super::meter::MeteredLimits,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A linked `wasi:http/proxy` component, ready to instantiate per request.
pub type HttpPre = Arc<ProxyPre<HttpState>>;

/// The HTTP services' linker: WASI 0.2 and wasi:http, as `wasmtime serve -Scli` links them.
pub fn proxy_linker(engine: &wasmtime::Engine) -> wasmtime::Result<component::Linker<HttpState>> {
    let mut linker = component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Links `component` as a proxy: it must import only what the proxy world offers and export
/// `wasi:http/incoming-handler` (any 0.2.x).
pub fn link_proxy(
    linker: &component::Linker<HttpState>,
    component: &component::Component,
) -> Result<HttpPre, String> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("{e:#}"))?;
    ProxyPre::new(pre)
        .map(Arc::new)
        .map_err(|e| format!("it does not export `wasi:http/incoming-handler`: {e:#}"))
}
