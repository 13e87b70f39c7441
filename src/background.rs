//! The background runtime: the roles that consume the log (sink, scoring, DVA, rewards,
//! maintenance, mirror) run on a Tokio runtime of their own whose threads have a lower CPU
//! priority (`background.nice`) than the listener's.
//!
//! On a machine that is CPU-bound as a whole, every role competing on equal terms made a burst
//! of intake wait behind the consumers landing the previous burst: intake beside every role ran
//! at 0.31–0.96x of intake alone. With the consumers niced, a request waiting on an answer gets
//! the cores first, and the consumers take what is left and catch up when the burst ends; the
//! log holds what they have not read yet. Linux keeps a nice value per thread and a new thread
//! inherits its creator's, so the threads these roles start (librdkafka's, the pollers',
//! ONNX Runtime's, the scorer's) run niced too.

use anyhow::Context as _;
use gata_infra::config::BackgroundConfig;
use tokio::sync::oneshot;

/// A running background runtime; dropping it stops the runtime (its tasks are dropped).
#[derive(Debug)]
pub struct Background {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Background {
    /// Starts the runtime on a thread of its own.
    pub fn start(cfg: &BackgroundConfig) -> anyhow::Result<Self> {
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let nice = cfg.nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("gata-background")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()
            .context("starting the background runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("gata-background-runtime".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .context("starting the background runtime's thread")?;
        Ok(Self { handle, stop: Some(stop) })
    }

    /// Where background roles are spawned.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Raises the calling thread's nice value to `nice` (never lowers it: that needs privileges).
fn lower_priority(nice: i32) {
    let thread = Some(rustix::thread::gettid());
    let current = rustix::process::getpriority_process(thread).unwrap_or(0);
    if nice > current
        && let Err(e) = rustix::process::setpriority_process(thread, nice)
    {
        tracing::warn!(error = %e, nice, "cannot lower a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_here() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    #[test]
    fn background_threads_and_the_threads_they_start_run_niced_and_no_other() {
        let before = nice_here();
        let nice = (before + 5).min(19);
        let background = Background::start(&BackgroundConfig { nice, threads: 1 }).expect("runtime");
        let handle = background.handle();
        let seen = handle.block_on(handle.spawn(async {
            let worker = nice_here();
            let blocking = tokio::task::spawn_blocking(nice_here).await.expect("blocking task");
            let started = std::thread::spawn(nice_here).join().expect("thread");
            (worker, blocking, started)
        }));
        assert_eq!(seen.expect("task"), (nice, nice, nice));
        assert_eq!(nice_here(), before, "the calling thread keeps its priority");
        let unchanged = Background::start(&BackgroundConfig { nice: 0, threads: 1 }).expect("runtime");
        let handle = unchanged.handle();
        assert_eq!(handle.block_on(handle.spawn(async { nice_here() })).expect("task"), before);
    }
}
