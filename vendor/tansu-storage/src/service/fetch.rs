// Copyright ⓒ 2024-2025 Peter Morgan <peter.james.morgan@gmail.com>
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        LazyLock, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rama::{Context, Service};
use tansu_sans_io::{
    ApiKey, ErrorCode, FetchRequest, FetchResponse, IsolationLevel,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData, SnapshotId,
    },
    metadata_response::MetadataResponseTopic,
    record::deflated::{Batch, Frame},
};
use tokio::{sync::Notify, time::timeout_at};
use tracing::{debug, error, instrument};

use crate::{Error, Result, Storage, Topition};

/// A [`Service`] using [`Storage`] as [`Context`] taking [`FetchRequest`] returning [`FetchResponse`].
/// ```
/// use rama::{Context, Layer as _, Service as _, layer::MapStateLayer};
/// use tansu_sans_io::{
///     CreateTopicsRequest, ErrorCode, FetchRequest,
///     create_topics_request::CreatableTopic,
///     fetch_request::{FetchPartition, FetchTopic},
/// };
/// use tansu_storage::{CreateTopicsService, Error, FetchService, StorageContainer};
/// use url::Url;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Error> {
/// const CLUSTER_ID: &str = "tansu";
/// const NODE_ID: i32 = 111;
/// const HOST: &str = "localhost";
/// const PORT: i32 = 9092;
///
/// let storage = StorageContainer::builder()
///     .cluster_id(CLUSTER_ID)
///     .node_id(NODE_ID)
///     .advertised_listener(Url::parse(&format!("tcp://{HOST}:{PORT}"))?)
///     .storage(Url::parse("memory://tansu/")?)
///     .build()
///     .await?;
///
/// let create_topic = {
///     let storage = storage.clone();
///     MapStateLayer::new(|_| storage).into_layer(CreateTopicsService)
/// };
///
/// let name = "abcba";
///
/// let response = create_topic
///     .serve(
///         Context::default(),
///         CreateTopicsRequest::default()
///             .topics(Some(vec![
///                 CreatableTopic::default()
///                     .name(name.into())
///                     .num_partitions(5)
///                     .replication_factor(3)
///                     .assignments(Some([].into()))
///                     .configs(Some([].into())),
///             ]))
///             .validate_only(Some(false)),
///     )
///     .await?;
///
/// let topics = response.topics.unwrap_or_default();
/// assert_eq!(1, topics.len());
/// assert_eq!(ErrorCode::None, ErrorCode::try_from(topics[0].error_code)?);
///
/// let fetch = {
///     let storage = storage.clone();
///     MapStateLayer::new(|_| storage).into_layer(FetchService)
/// };
///
/// let partition = 0;
///
/// let response = fetch
///     .serve(
///         Context::default(),
///         FetchRequest::default()
///             .topics(Some(
///                 [FetchTopic::default()
///                     .topic(Some(name.into()))
///                     .partitions(Some(
///                         [FetchPartition::default().partition(partition)].into(),
///                     ))]
///                 .into(),
///             ))
///             .max_bytes(Some(0))
///             .max_wait_ms(5_000),
///     )
///     .await?;
///
/// let topics = response.responses.as_deref().unwrap_or_default();
/// assert_eq!(1, topics.len());
/// let partitions = topics[0].partitions.as_deref().unwrap_or_default();
/// assert_eq!(1, partitions.len());
/// assert_eq!(
///     ErrorCode::None,
///     ErrorCode::try_from(partitions[0].error_code)?
/// );
/// # Ok(())
/// # }
/// ```
/// Woken on every produce, so a fetch waiting for records answers when they arrive (patched for
/// gata, see PATCHES.md).
pub(crate) static PRODUCED: Notify = Notify::const_new();

/// Patched for gata (see PATCHES.md): record bytes produced since start, counted before
/// [`PRODUCED`] is notified, so a waiting fetch knows whether reading again can be worth it.
pub(crate) static PRODUCED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Patched for gata (see PATCHES.md): how long a fetch with nothing to return is held past its
/// `max_wait`, waiting for a produce. Well inside a client's request timeout (librdkafka's is
/// `socket.timeout.ms`, 60 s, past `max_wait`).
const IDLE_HOLD: Duration = Duration::from_secs(5);

/// Patched for gata (see PATCHES.md): the fetches (their partitions and offsets) whose last
/// answer was empty. Only a fetch that asks again for exactly such a set is held past its
/// `max_wait`: a consumer idling. A fetch for a set not seen empty (a consumer that has just
/// started, or been given other partitions) is answered at `max_wait`, so that its next fetch,
/// for the partitions it now has, is not kept waiting behind a hold.
static EMPTY_FETCHES: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(Mutex::default);

/// The most empty fetches remembered; past it they are forgotten all at once (each consumer's
/// next empty fetch is then answered at `max_wait`, and remembered again).
const EMPTY_FETCHES_MAX: usize = 4096;

/// The identity of a fetch: its topics, partitions and offsets.
fn fetch_key(topics: &[FetchTopic]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for topic in topics {
        topic.topic.hash(&mut hasher);
        topic.topic_id.hash(&mut hasher);
        for partition in topic.partitions.iter().flatten() {
            partition.partition.hash(&mut hasher);
            partition.fetch_offset.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Whether the fetch `key` came back empty last time (then it may be held); remembers that it
/// is empty now.
fn empty_again(key: u64) -> bool {
    let mut empty = EMPTY_FETCHES.lock().unwrap_or_else(PoisonError::into_inner);
    if empty.contains(&key) {
        return true;
    }
    if empty.len() >= EMPTY_FETCHES_MAX {
        empty.clear();
    }
    _ = empty.insert(key);
    false
}

/// What was produced while a fetch waited.
enum Produced {
    /// At least the bytes the fetch was short of.
    Enough,
    /// Less, by the deadline.
    Some,
    /// None, by the deadline.
    Nothing,
}

/// Waits until `short` record bytes have been produced since the counter read `before`, or
/// until `deadline`.
async fn produced_since(before: u64, short: u64, deadline: Instant) -> Produced {
    loop {
        let notified = PRODUCED.notified();
        tokio::pin!(notified);
        _ = notified.as_mut().enable();
        let produced = PRODUCED_BYTES.load(Ordering::Acquire).wrapping_sub(before);
        if produced >= short {
            return Produced::Enough;
        }
        if timeout_at(deadline.into(), notified).await.is_err() {
            return if PRODUCED_BYTES.load(Ordering::Acquire) == before {
                Produced::Nothing
            } else {
                Produced::Some
            };
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct FetchService;

impl ApiKey for FetchService {
    const KEY: i16 = FetchRequest::KEY;
}

impl FetchService {
    #[allow(clippy::too_many_arguments)]
    async fn fetch_partition<G>(
        &self,
        ctx: Context<G>,
        max_wait_ms: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        topic: &str,
        fetch_partition: &FetchPartition,
    ) -> Result<PartitionData>
    where
        G: Storage,
    {
        debug!(
            ?max_wait_ms,
            ?min_bytes,
            ?max_bytes,
            ?isolation,
            ?fetch_partition
        );

        let partition_index = fetch_partition.partition;
        let tp = Topition::new(topic, partition_index);

        let mut batches = Vec::new();

        let mut offset = fetch_partition.fetch_offset;

        // Patched for gata (see PATCHES.md): a partition gets at most its PartitionMaxBytes of
        // the response, as in Kafka, so one deep partition cannot crowd out the others.
        let mut budget = u32::try_from(fetch_partition.partition_max_bytes)
            .ok()
            .filter(|bytes| *bytes > 0)
            .map_or(*max_bytes, |bytes| bytes.min(*max_bytes));

        loop {
            if budget == 0 {
                break;
            }

            debug!(offset);

            let mut fetched = ctx
                .state()
                .fetch(&tp, offset, min_bytes, budget, isolation)
                .await
                .inspect(|r| debug!(?tp, ?offset, ?r))
                .inspect_err(|error| error!(?tp, ?error))?;

            let used = u32::try_from(fetched.byte_size())?;
            budget = budget.saturating_sub(used);
            *max_bytes = max_bytes.saturating_sub(used);

            offset += fetched
                .iter()
                .map(|batch| batch.record_count as i64)
                .sum::<i64>();

            debug!(?offset, ?fetched);

            if fetched.is_empty() || fetched.first().is_some_and(|batch| batch.record_count == 0) {
                break;
            } else {
                batches.append(&mut fetched);
            }
        }

        let offset_stage = ctx
            .state()
            .offset_stage(&tp)
            .await
            .inspect_err(|error| error!(?error, ?tp))?;

        Ok(PartitionData::default()
            .partition_index(partition_index)
            .error_code(ErrorCode::None.into())
            .high_watermark(offset_stage.high_watermark())
            .last_stable_offset(Some(offset_stage.last_stable()))
            .log_start_offset(Some(offset_stage.log_start()))
            .diverging_epoch(None)
            .current_leader(None)
            .snapshot_id(None)
            .aborted_transactions(Some([].into()))
            .preferred_read_replica(Some(-1))
            .records(if batches.is_empty() {
                None
            } else {
                Some(Frame { batches })
            }))
        .inspect(|r| debug!(?r))
    }

    fn unknown_topic_response(&self, fetch: &FetchTopic) -> Result<FetchableTopicResponse> {
        Ok(FetchableTopicResponse::default()
            .topic(fetch.topic.clone())
            .topic_id(Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
            .partitions(fetch.partitions.as_ref().map(|partitions| {
                partitions
                    .iter()
                    .map(|partition| {
                        PartitionData::default()
                            .partition_index(partition.partition)
                            .error_code(ErrorCode::UnknownTopicOrPartition.into())
                            .high_watermark(0)
                            .last_stable_offset(Some(0))
                            .log_start_offset(Some(-1))
                            .diverging_epoch(Some(
                                EpochEndOffset::default().epoch(-1).end_offset(-1),
                            ))
                            .current_leader(Some(
                                LeaderIdAndEpoch::default().leader_id(0).leader_epoch(0),
                            ))
                            .snapshot_id(Some(SnapshotId::default().end_offset(-1).epoch(-1)))
                            .aborted_transactions(Some([].into()))
                            .preferred_read_replica(Some(-1))
                            .records(None)
                    })
                    .collect()
            })))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_topic<G>(
        &self,
        ctx: Context<G>,
        max_wait_ms: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        fetch: &FetchTopic,
        _is_first: bool,
    ) -> Result<FetchableTopicResponse>
    where
        G: Storage,
    {
        debug!(?max_wait_ms, ?min_bytes, ?isolation, ?fetch);

        let metadata = ctx.state().metadata(Some(&[fetch.into()])).await?;

        if let Some(MetadataResponseTopic {
            topic_id,
            name: Some(name),
            ..
        }) = metadata.topics().first()
        {
            let mut partitions = Vec::new();

            for fetch_partition in fetch.partitions.as_ref().unwrap_or(&Vec::new()) {
                let partition = self
                    .fetch_partition(
                        ctx.clone(),
                        max_wait_ms,
                        min_bytes,
                        max_bytes,
                        isolation,
                        name,
                        fetch_partition,
                    )
                    .await?;

                partitions.push(partition);
            }

            Ok(FetchableTopicResponse::default()
                .topic(fetch.topic.to_owned())
                .topic_id(topic_id.to_owned())
                .partitions(Some(partitions)))
        } else {
            self.unknown_topic_response(fetch)
        }
    }

    pub(crate) async fn fetch<G>(
        &self,
        ctx: Context<G>,
        max_wait: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        topics: &[FetchTopic],
    ) -> Result<Vec<FetchableTopicResponse>>
    where
        G: Storage,
    {
        debug!(?max_wait, ?min_bytes, ?isolation, ?topics);

        if topics.is_empty() {
            Ok(vec![])
        } else {
            // Patched for gata (see PATCHES.md): answer as soon as `min_bytes` of records are
            // there, and otherwise wait (up to max_wait) until enough has been produced to make
            // up the difference before reading again, instead of sleeping and polling: a busy
            // consumer is not held back, an idle one costs nothing, and a stream of small
            // produces does not make every waiting consumer read after each one.
            let start = Instant::now();
            let deadline = start + max_wait;
            let budget = *max_bytes;
            let wanted = u64::from(min_bytes.max(1));
            let mut responses = vec![];
            let mut last_pass = false;

            loop {
                let produced_before = PRODUCED_BYTES.load(Ordering::Acquire);

                *max_bytes = budget;
                responses.clear();

                for (i, fetch) in topics.iter().enumerate() {
                    let fetch_response = self
                        .fetch_topic(
                            ctx.clone(),
                            max_wait,
                            min_bytes,
                            max_bytes,
                            isolation,
                            fetch,
                            i == 0,
                        )
                        .await?;

                    responses.push(fetch_response);
                }

                let bytes = responses.byte_size();

                debug!(?max_wait, ?bytes, ?min_bytes, last_pass);

                if bytes >= wanted || last_pass {
                    break;
                }

                if Instant::now() < deadline {
                    match produced_since(produced_before, wanted - bytes, deadline).await {
                        Produced::Enough => continue,
                        // max_wait is up: read once more if anything arrived, then answer.
                        Produced::Some => {
                            last_pass = true;
                            continue;
                        }
                        Produced::Nothing => {}
                    }
                }

                // Patched for gata (see PATCHES.md): max_wait is up and nothing arrived since the
                // last pass. With nothing to return, a fetch that came back empty last time is
                // held until something is produced (then it reads once more and answers) or the
                // hold ends: a record still waits at most max_wait (less, once it is over), and
                // an idle consumer sends one fetch per hold instead of one per max_wait. A fetch
                // that asked not to wait, or for a set of partitions not seen empty, is answered
                // at once.
                let held_until = start + max_wait.max(IDLE_HOLD);
                if bytes > 0
                    || max_wait.is_zero()
                    || Instant::now() >= held_until
                    || !empty_again(fetch_key(topics))
                {
                    break;
                }
                match produced_since(produced_before, 1, held_until).await {
                    Produced::Nothing => break,
                    Produced::Enough | Produced::Some => last_pass = true,
                }
            }

            Ok(responses)
        }
    }
}

impl<G> Service<G, FetchRequest> for FetchService
where
    G: Storage,
{
    type Response = FetchResponse;
    type Error = Error;

    #[instrument(skip(ctx, req))]
    async fn serve(
        &self,
        ctx: Context<G>,
        req: FetchRequest,
    ) -> Result<Self::Response, Self::Error> {
        let responses = Some(if let Some(topics) = req.topics {
            let isolation_level = req
                .isolation_level
                .map_or(Ok(IsolationLevel::ReadUncommitted), |isolation| {
                    IsolationLevel::try_from(isolation)
                })?;

            let max_wait_ms = u64::try_from(req.max_wait_ms).map(Duration::from_millis)?;

            let min_bytes = u32::try_from(req.min_bytes)?;

            const DEFAULT_MAX_BYTES: u32 = 5 * 1024 * 1024;

            let mut max_bytes = req.max_bytes.map_or(Ok(DEFAULT_MAX_BYTES), |max_bytes| {
                u32::try_from(max_bytes).map(|max_bytes| max_bytes.min(DEFAULT_MAX_BYTES))
            })?;

            self.fetch(
                ctx,
                max_wait_ms,
                min_bytes,
                &mut max_bytes,
                isolation_level,
                topics.as_ref(),
            )
            .await?
        } else {
            vec![]
        });

        Ok(FetchResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(Some(ErrorCode::None.into()))
            .session_id(Some(0))
            .node_endpoints(Some([].into()))
            .responses(responses))
        .inspect(|r| debug!(?r))
    }
}

trait ByteSize {
    fn byte_size(&self) -> u64;
}

impl<T> ByteSize for Vec<T>
where
    T: ByteSize,
{
    fn byte_size(&self) -> u64 {
        self.iter().map(|item| item.byte_size()).sum()
    }
}

impl<T> ByteSize for Option<T>
where
    T: ByteSize,
{
    fn byte_size(&self) -> u64 {
        self.as_ref().map_or(0, |some| some.byte_size())
    }
}

impl ByteSize for Batch {
    fn byte_size(&self) -> u64 {
        self.record_data.len() as u64
    }
}

impl ByteSize for Frame {
    fn byte_size(&self) -> u64 {
        self.batches.byte_size()
    }
}

impl ByteSize for PartitionData {
    fn byte_size(&self) -> u64 {
        self.records.byte_size()
    }
}

impl ByteSize for FetchableTopicResponse {
    fn byte_size(&self) -> u64 {
        self.partitions.byte_size()
    }
}
