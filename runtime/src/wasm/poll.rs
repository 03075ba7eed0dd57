//! An interruptible `poll_oneoff` for preview 1 guests.
//!
//! A guest sleeping in `poll_oneoff` runs no wasm, so no epoch tick reaches it: wasmtime-wasi's
//! own would sleep the whole time asked, past the guest's deadline (a module sleeping for an
//! hour would hold its concurrency slot for an hour). This replacement sleeps on tokio's timer
//! (the guest's fiber suspended, its worker free) in short slices, and stops the guest as soon
//! as its deadline passes or its caller goes away.
//!
//! In this sandbox every file descriptor is a regular file or an in-memory pipe, which are
//! always ready; so a poll with any fd subscription returns at once with those events, and a
//! poll of clocks alone is a sleep.

use super::P1State;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::{Caller, Linker};

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;
const EVENTTYPE_CLOCK: u8 = 0;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
/// Longest uninterrupted sleep: the granularity of deadline checks.
const SLICE: Duration = Duration::from_millis(10);
/// Most subscriptions one call may pass. The count comes from the guest, so it is bounded
/// before anything is sized by it; Linux's own `poll` stops at the open-file limit, and no
/// program in this sandbox (which has a handful of descriptors) needs more.
pub const MAX_SUBSCRIPTIONS: usize = 4096;

/// Replaces `wasi_snapshot_preview1::poll_oneoff` in `linker`.
pub fn shadow_poll_oneoff(linker: &mut Linker<P1State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |caller, (subs, events, nsubs, nevents): (i32, i32, i32, i32)| {
            Box::new(poll_oneoff(caller, subs, events, nsubs, nevents))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
}

async fn poll_oneoff(
    mut caller: Caller<'_, P1State>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubs: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Ok(ERRNO_INVAL);
    };
    let Ok(n) = usize::try_from(nsubs) else {
        return Ok(ERRNO_INVAL);
    };
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    // Bounded above: at most MAX_SUBSCRIPTIONS * 48 bytes (192 KiB).
    let mut raw = vec![0u8; n * SUBSCRIPTION_SIZE];
    if memory
        .read(&caller, subs_ptr as u32 as usize, &mut raw)
        .is_err()
    {
        return Ok(ERRNO_FAULT);
    }
    let state = caller.data();
    let started = Instant::now();
    let interrupt = state.interrupt.clone();
    let (mut ready, clocks) = read_subscriptions(&raw, state.clock.origin)?;
    if ready.is_empty() {
        let elapsed = sleep_until_first(&clocks, started, &interrupt).await?;
        ready.extend(
            clocks
                .iter()
                .filter(|(_, wait)| *wait <= elapsed)
                .map(|(userdata, _)| Event {
                    userdata: *userdata,
                    error: 0,
                    kind: EVENTTYPE_CLOCK,
                }),
        );
    }
    let out = encode_events(&ready);
    let count = u32::try_from(ready.len()).unwrap_or(u32::MAX);
    if memory
        .write(&mut caller, events_ptr as u32 as usize, &out)
        .is_err()
        || memory
            .write(
                &mut caller,
                nevents_ptr as u32 as usize,
                &count.to_le_bytes(),
            )
            .is_err()
    {
        return Ok(ERRNO_FAULT);
    }
    Ok(ERRNO_SUCCESS)
}

/// A clock subscription: its userdata, and how long it waits.
type ClockWait = (u64, Duration);

/// The events ready at once (fd subscriptions, unsupported clocks), and each clock
/// subscription as (userdata, how long to wait). `origin` is where the guest's monotonic clock
/// reads zero.
fn read_subscriptions(
    raw: &[u8],
    origin: Instant,
) -> wasmtime::Result<(Vec<Event>, Vec<ClockWait>)> {
    let mut ready = Vec::new();
    let mut clocks = Vec::new();
    for sub in raw.chunks_exact(SUBSCRIPTION_SIZE) {
        let userdata = u64::from_le_bytes(sub[0..8].try_into()?);
        let tag = sub[8];
        if tag != EVENTTYPE_CLOCK {
            // fd_read / fd_write on a file or pipe: ready now.
            ready.push(Event {
                userdata,
                error: if tag <= 2 { 0 } else { ERRNO_INVAL as u16 },
                kind: tag,
            });
            continue;
        }
        let id = u32::from_le_bytes(sub[16..20].try_into()?);
        let timeout = Duration::from_nanos(u64::from_le_bytes(sub[24..32].try_into()?));
        let flags = u16::from_le_bytes(sub[40..42].try_into()?);
        match clock_wait(id, timeout, flags & SUBSCRIPTION_CLOCK_ABSTIME != 0, origin) {
            Some(wait) => clocks.push((userdata, wait)),
            None => ready.push(Event {
                userdata,
                error: ERRNO_NOTSUP as u16,
                kind: EVENTTYPE_CLOCK,
            }),
        }
    }
    Ok((ready, clocks))
}

/// How long a clock subscription waits; `None` for a clock this sandbox does not offer.
fn clock_wait(id: u32, timeout: Duration, absolute: bool, origin: Instant) -> Option<Duration> {
    match (id, absolute) {
        (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => Some(timeout),
        (CLOCK_REALTIME, true) => {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            Some(timeout.saturating_sub(now))
        }
        (CLOCK_MONOTONIC, true) => Some(timeout.saturating_sub(origin.elapsed())),
        _ => None,
    }
}

/// Sleeps in slices until the shortest clock's wait has passed since `started`, raising the
/// guest's deadline as its error; returns the time slept.
async fn sleep_until_first(
    clocks: &[ClockWait],
    started: Instant,
    interrupt: &super::Interrupt,
) -> wasmtime::Result<Duration> {
    let target = clocks
        .iter()
        .map(|(_, wait)| *wait)
        .min()
        .unwrap_or_default();
    loop {
        // Raised as the guest's error: the caller reads it as a timeout.
        interrupt.check().map_err(wasmtime::Error::new)?;
        let elapsed = started.elapsed();
        if elapsed >= target {
            return Ok(elapsed);
        }
        tokio::time::sleep((target - elapsed).min(SLICE)).await;
    }
}

/// The events in WASI's layout, 32 bytes each.
fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = vec![0u8; events.len() * EVENT_SIZE];
    for (event, slot) in events.iter().zip(out.chunks_exact_mut(EVENT_SIZE)) {
        slot[0..8].copy_from_slice(&event.userdata.to_le_bytes());
        slot[8..10].copy_from_slice(&event.error.to_le_bytes());
        slot[10] = event.kind;
    }
    out
}
