//! The background runtime: the roles that consume the log (sink, scoring, DVA, rewards,
//! maintenance, mirror) run on a Tokio runtime of their own, whose threads can be given a lower
//! CPU priority than the listeners' (`background.nice`; 0, equal, by default).
//!
//! Niced, a request waiting on an answer gets the cores first; the consumers take what is left
//! and catch up when a burst ends, and the log holds what they have not read yet. Linux keeps a
//! nice value per thread and a new thread inherits its creator's, so the threads these roles
//! start (librdkafka's, the pollers', ONNX Runtime's, the scorer's) run niced too. Measured with
//! the embedded broker (docs/scaling.md, sixth round): a burst's p99 ack falls, its throughput
//! does not move, since what intake then waits behind is the broker's own work for the
//! consumers, at the listeners' priority.

use anyhow::Context as _;
use gata_infra::{
    config::{BackgroundConfig, Role},
    runtime::DedicatedRuntime,
};

/// The roles that run on the background runtime.
pub const ROLES: [Role; 6] = [Role::Sink, Role::Scoring, Role::Dva, Role::Rewards, Role::Mirror, Role::Maintenance];

/// Starts the background runtime on a thread of its own; dropping it stops the runtime.
pub fn start(cfg: &BackgroundConfig) -> anyhow::Result<DedicatedRuntime> {
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let nice = cfg.nice;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(threads).thread_name("gata-background").on_thread_start(move || lower_priority(nice));
    DedicatedRuntime::start(builder, "gata-background-runtime").context("starting the background runtime")
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
        let background = start(&BackgroundConfig { nice, threads: 1, ..BackgroundConfig::default() }).expect("runtime");
        let handle = background.handle();
        let seen = handle.block_on(handle.spawn(async {
            let worker = nice_here();
            let blocking = tokio::task::spawn_blocking(nice_here).await.expect("blocking task");
            let started = std::thread::spawn(nice_here).join().expect("thread");
            (worker, blocking, started)
        }));
        assert_eq!(seen.expect("task"), (nice, nice, nice));
        assert_eq!(nice_here(), before, "the calling thread keeps its priority");
        let unchanged =
            start(&BackgroundConfig { nice: 0, threads: 1, ..BackgroundConfig::default() }).expect("runtime");
        let handle = unchanged.handle();
        assert_eq!(handle.block_on(handle.spawn(async { nice_here() })).expect("task"), before);
    }
}
