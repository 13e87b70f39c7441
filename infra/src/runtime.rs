//! A Tokio runtime of its own, driven on a thread of its own until dropped: for work that must
//! not share the listeners' workers (queries, the roles that consume the log).

use tokio::{runtime::Handle, sync::oneshot};

/// A running runtime; dropping it stops the runtime and drops its tasks.
#[derive(Debug)]
pub struct DedicatedRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl DedicatedRuntime {
    /// Builds the runtime `builder` describes (every driver enabled) and drives it on a thread
    /// named `name`.
    pub fn start(mut builder: tokio::runtime::Builder, name: &str) -> std::io::Result<Self> {
        let runtime = builder.enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Self { handle, stop: Some(stop) })
    }

    /// Where its tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for DedicatedRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
