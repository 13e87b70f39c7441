//! The one skeleton every processor runs in: its poller thread hands it records and
//! rebalances through a bounded queue, a timer wakes it when it asks to be woken, and on stop
//! it finishes what it holds before the poller leaves the group.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    Result,
    poller::{self, Input, Polled, Subscription},
};
use gata_lakehouse::TopicPartition;

/// What a processor does with what its poller hands it.
pub(crate) trait Handler {
    /// Takes a batch of records, in log order per partition.
    async fn records(&mut self, batch: Vec<Polled>) -> Result<()>;

    /// Partitions now owned.
    async fn assigned(&mut self, _tps: Vec<TopicPartition>) -> Result<()> {
        Ok(())
    }

    /// Partitions being taken away: finish what is held of them (the poller waits for this
    /// before the next owner may read them).
    async fn revoked(&mut self, tps: &[TopicPartition]) -> Result<()>;

    /// When [`Handler::tick`] must run next; `None` sleeps until the next input.
    fn wake_at(&self) -> Option<Instant> {
        None
    }

    /// Runs at [`Handler::wake_at`].
    async fn tick(&mut self) -> Result<()> {
        Ok(())
    }

    /// Runs once the processor stops: finish and commit what is held.
    async fn finish(&mut self) -> Result<()>;

    /// Runs after every input and tick (gauges).
    fn observe(&self) {}
}

/// Runs `handler` on what the poller of `sub` hands it (at most `queue` records waiting in
/// between) until `stop` is cancelled or a step fails; then stops and joins the poller. `name`
/// names the processor in the log.
pub(crate) async fn run(
    name: &str,
    sub: Subscription,
    queue: usize,
    stop: CancellationToken,
    mut handler: impl Handler,
) -> Result<()> {
    let (tx, mut rx) = poller::channel(queue);
    let foreground = sub.foreground.clone();
    let poller = poller::spawn(sub, tx, stop.clone())?;
    tracing::info!("{name} started");
    let result = async {
        // An input (or the end of them) that came while records handed over waited their turn.
        let mut next: Option<Option<Input>> = None;
        loop {
            let wake_at = handler.wake_at();
            let input = match next.take() {
                Some(input) => input,
                None => tokio::select! {
                    input = rx.recv() => input,
                    () = sleep_until(wake_at) => {
                        handler.tick().await?;
                        handler.observe();
                        continue;
                    }
                },
            };
            match input {
                None => break,
                Some(Input::Records(batch)) => {
                    // Records already handed over wait too while the consumers step aside; a
                    // rebalance meanwhile (the poller's only other input while its partitions
                    // are paused) ends the wait, so that it never waits for the turn.
                    if let Some((foreground, rank)) = &foreground {
                        tokio::select! {
                            () = foreground.turn(*rank) => {}
                            input = rx.recv() => next = Some(input),
                        }
                    }
                    handler.records(batch).await?
                }
                Some(Input::Assigned(tps)) => handler.assigned(tps).await?,
                Some(Input::Revoked(tps, ack)) => {
                    let finished = handler.revoked(&tps).await;
                    let _ = ack.send(());
                    finished?;
                }
            }
            handler.observe();
        }
        handler.finish().await
    }
    .await;
    poller::stop_and_join(poller, rx, &stop, result, name).await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
