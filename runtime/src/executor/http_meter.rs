//! What one request to an HTTP service used: a meter shared by the guest's task (CPU time over
//! its polls, wall time, peak memory, how it ended) and the request and response bodies (bytes
//! as they stream), recorded in the usage accounts and the Prometheus counters when the last
//! of them lets go, since a response body may still be streaming after the guest returned.

use crate::metrics::Metrics;
use crate::usage::Accounting;
use crate::usage::meters::{Channel, Meters, Usage};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;

/// Where a meter's figures go.
pub struct Sinks {
    /// The Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// The usage accounts.
    pub usage: Arc<Accounting>,
}

/// One request's meter; see the module's documentation.
pub struct HttpMeter {
    sinks: Sinks,
    service: String,
    user: String,
    state: Mutex<(Meters, bool)>,
}

impl HttpMeter {
    /// A meter of a request to `service` accounted to `user`.
    pub fn new(sinks: Sinks, service: String, user: String) -> Arc<Self> {
        Arc::new(Self {
            sinks,
            service,
            user,
            state: Mutex::new((Meters::default(), false)),
        })
    }

    fn with(&self, change: impl FnOnce(&mut (Meters, bool))) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Adds CPU time of one poll of the guest.
    pub fn add_cpu(&self, used: Duration) {
        self.with(|(m, _)| m.cpu = m.cpu.saturating_add(used));
    }

    /// The guest's end: whether it returned, how long it took, its largest memory.
    pub fn finish(&self, ok: bool, wall: Duration, peak_memory: u64) {
        self.with(|(m, done)| {
            m.wall = wall;
            m.peak_memory = m.peak_memory.max(peak_memory);
            *done = ok;
        });
    }

    /// `body` with its data counted as bytes in (`incoming`) or out; the meter lives as long
    /// as the body does.
    pub fn count(self: &Arc<Self>, body: WasiBody, incoming: bool) -> WasiBody {
        let meter = self.clone();
        body.map_frame(move |frame: http_body::Frame<Bytes>| {
            if let Some(data) = frame.data_ref() {
                let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                meter.with(|(m, _)| {
                    let counter = if incoming {
                        &mut m.bytes_in
                    } else {
                        &mut m.bytes_out
                    };
                    *counter = counter.saturating_add(n);
                });
            }
            frame
        })
        .boxed_unsync()
    }
}

impl Drop for HttpMeter {
    fn drop(&mut self) {
        let (meters, ok) = *self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let service = std::mem::take(&mut self.service);
        self.sinks
            .metrics
            .metered(&service, Channel::Exposed.label(), &meters);
        self.sinks.usage.record(&Usage {
            at_ms: crate::clock::now_ms(),
            service,
            user: std::mem::take(&mut self.user),
            channel: Channel::Exposed,
            ok,
            meters,
        });
    }
}
