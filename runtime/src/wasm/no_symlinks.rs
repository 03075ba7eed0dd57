//! Guests make no symbolic links: `path_symlink` (preview 1) and `descriptor.symlink-at`
//! (preview 2) answer "not permitted".
//!
//! A guest's folders are, since `mount`, also folders of the embedded store, which other code
//! reads by path: a link a guest left there (WASI lets it make relative ones pointing out of
//! its preopen) would be followed by the store's S3 operations, by the next invocation's
//! preopen, and by a service `mount` naming a folder through it, into other users' buckets or
//! the server's own files. Checking paths before each use would race a guest relinking
//! meanwhile; refusing the links at their source leaves nothing to race.

use super::{P1State, P2State};
use wasmtime::component::Resource;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;

/// WASI preview 1's `perm` errno.
const ERRNO_PERM: i32 = 63;
/// The preview 2 interface, as wasmtime-wasi 48 links it (guests importing any 0.2.x
/// version are matched to it).
const P2_FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `wasi_snapshot_preview1::path_symlink` in `linker`.
pub fn shadow_p1(linker: &mut Linker<P1State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "path_symlink",
        |_: Caller<'_, P1State>, _: i32, _: i32, _: i32, _: i32, _: i32| Ok(ERRNO_PERM),
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Replaces `[method]descriptor.symlink-at` in `linker`.
pub fn shadow_p2(linker: &mut wasmtime::component::Linker<P2State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.instance(P2_FILESYSTEM_TYPES)?.func_wrap(
        "[method]descriptor.symlink-at",
        |_,
         _: (
            Resource<wasmtime_wasi::filesystem::Descriptor>,
            String,
            String,
        )| { Ok((Err::<(), _>(ErrorCode::NotPermitted),)) },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
