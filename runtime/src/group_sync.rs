//! Group commit for files: many writers' changes made durable by one `syncfs(2)`.
//!
//! A writer makes its changes (files written, created, renamed) without syncing them, then
//! calls [`GroupSync::sync`], which returns once a `syncfs` that *started after the call* has
//! finished: everything the writer did is then on disk. Writers that arrive while a sync runs
//! wait for the next one, which one of them starts for all of them, so under load one sync
//! covers every writer that queued behind the previous one, instead of one `fsync` per file
//! per writer. `syncfs` flushes the whole file system the folder is on (data and metadata, as
//! `sync_all` on every file and folder touched would).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex};

/// Syncs of one file system, shared by its writers. Blocking: call it from blocking threads.
pub struct GroupSync {
    /// The sync: `syncfs` of a folder's file system.
    flush: Box<dyn Fn() -> io::Result<()> + Send + Sync>,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Syncs started so far; the one running, if any, is number `started`.
    started: u64,
    /// Syncs finished so far (they finish in order).
    finished: u64,
    /// Whether a sync runs now.
    running: bool,
    /// Writers waiting for a sync to finish.
    waiting: usize,
    /// The number of the last sync that succeeded: a writer is covered by any sync started
    /// after its call, not only the first one.
    succeeded: u64,
    /// Why the last sync that failed failed.
    failed: Option<String>,
}

impl GroupSync {
    /// Syncs of the file system `dir` is on.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let dir = File::open(dir)?;
        Ok(Self::with(move || Ok(rustix::fs::syncfs(&dir)?)))
    }

    fn with(flush: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> Self {
        Self {
            flush: Box::new(flush),
            state: Mutex::default(),
            done: Condvar::new(),
        }
    }

    /// Returns once everything written before this call is on disk, or with the error of the
    /// sync that should have put it there.
    pub fn sync(&self) -> io::Result<()> {
        let mut state = self.lock();
        // A sync already running may have missed this writer's changes: the next one covers
        // them.
        let needed = state.started + 1;
        loop {
            if state.finished >= needed {
                if state.succeeded >= needed {
                    return Ok(());
                }
                let why = state.failed.as_deref().unwrap_or("unknown");
                return Err(io::Error::other(format!(
                    "the data could not be synced to disk: {why}"
                )));
            }
            if state.running {
                state.waiting += 1;
                state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                state.waiting -= 1;
                continue;
            }
            state.running = true;
            state.started += 1;
            let number = state.started;
            drop(state);
            let result = (self.flush)();
            state = self.lock();
            state.running = false;
            state.finished = number;
            match result {
                Ok(()) => state.succeeded = number,
                Err(e) => state.failed = Some(e.to_string()),
            }
            self.done.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    /// A group whose syncs each wait for a go-ahead and report that they started.
    fn gated() -> (
        Arc<GroupSync>,
        mpsc::Receiver<()>,
        mpsc::SyncSender<io::Result<()>>,
    ) {
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::sync_channel::<io::Result<()>>(0);
        let go_rx = Mutex::new(go_rx);
        let group = GroupSync::with(move || {
            started_tx.send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap()
        });
        (Arc::new(group), started_rx, go_tx)
    }

    #[test]
    fn a_writer_arriving_during_a_sync_waits_for_the_next() {
        let (group, started, go) = gated();
        let first = std::thread::spawn({
            let group = group.clone();
            move || group.sync()
        });
        started.recv().unwrap();
        // Sync 1 runs; these writers' changes may have missed it.
        let late: Vec<_> = (0..3)
            .map(|_| {
                let group = group.clone();
                std::thread::spawn(move || group.sync())
            })
            .collect();
        while group.lock().waiting < 3 {
            std::thread::yield_now();
        }
        go.send(Ok(())).unwrap();
        first.join().unwrap().unwrap();
        // One sync, started by one of them, covers all three late writers.
        started.recv().unwrap();
        assert!(late.iter().all(|t| !t.is_finished()));
        go.send(Err(io::Error::other("disk gone"))).unwrap();
        for writer in late {
            let error = writer.join().unwrap().unwrap_err();
            assert!(error.to_string().contains("disk gone"), "{error}");
        }
        assert_eq!(group.lock().started, 2);
    }

    #[test]
    fn a_later_failure_does_not_undo_a_sync_that_covered_the_writer() {
        let group = Arc::new(GroupSync::with(|| Err(io::Error::other("not called"))));
        // Sync 1 runs: this writer needs sync 2.
        group.lock().started = 1;
        group.lock().running = true;
        let writer = std::thread::spawn({
            let group = group.clone();
            move || group.sync()
        });
        while group.lock().waiting < 1 {
            std::thread::yield_now();
        }
        // Before it wakes, sync 2 succeeds and sync 3 (another writer's) fails.
        let mut state = group.lock();
        state.running = false;
        state.started = 3;
        state.finished = 3;
        state.succeeded = 2;
        state.failed = Some("disk gone".into());
        group.done.notify_all();
        drop(state);
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn syncs_the_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let group = GroupSync::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        group.sync().unwrap();
        group.sync().unwrap();
        assert_eq!(group.lock().started, 2);
    }
}
