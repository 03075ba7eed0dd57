//! The server's background tasks (the job workers and the storage poller), started with the
//! narrow pieces each uses and owned by one handle that stops them at shutdown.

use crate::app::App;
use crate::jobs::worker::{self, WorkerParts};
use crate::storage::poller::{self, PollerParts};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stop waits for the tasks (a worker finishing its current job) before it
/// abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running background tasks.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts the job workers and the poller of `app`. Call inside the server's runtime.
    pub fn start(app: &App) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = worker::start(
            Arc::new(WorkerParts {
                jobs: app.jobs.clone(),
                registry: app.registry.clone(),
                storage: app.storage.clone(),
                executor: app.executor.clone(),
            }),
            stopped.clone(),
        );
        tasks.push(tokio::spawn(poller::run(
            PollerParts {
                registry: app.registry.clone(),
                storage: app.storage.clone(),
                deployer: app.deployer.clone(),
                jobs: app.jobs.clone(),
                data_dir: app.data_dir.clone(),
            },
            stopped,
        )));
        Self { stop, tasks }
    }

    /// Stops the tasks: no new job is started, the poller ends its round; a job still running
    /// after the grace period is abandoned (it runs again at the next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
