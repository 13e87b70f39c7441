//! The DVA processor: every image-text pair on the intake topic → one image-caption agreement
//! score on the scores topic (landing in `quality_scores`), computed by a CLIP-style model. As
//! a DVA worker (`gata dva-worker`, when `dva.replicas` > 1) it publishes the same judgement as
//! its vote on the votes topic instead, and [`consensus`] turns the votes into the score.
//!
//! Pairs are batched (`batch_size`, or whatever arrived within `batch_wait`): images are decoded
//! and preprocessed, captions tokenized, each encoder runs once per batch, and each pair's
//! score is the cosine of its two embeddings, in [-1, 1], accepted from the threshold up. A
//! score names the model (id and weights hash) and the time spent per stage; its scorer
//! version is `dva/<model id>@<first 12 hex of the hash>`, so another model's scores live
//! beside these. Images sent by URL are fetched first ([`fetch`]). An image that cannot be
//! used gets a reject score whose reason says why (`undecodable_image`, `image_too_large`,
//! `image_unreachable`) and goes to the dead-letter topic with that reason.
//!
//! With a head trained from reviewers' labels (`dva.head`, written by `gata dva train`), each
//! pair also gets the head's accept probability, in [0, 1], as a score of its own scorer
//! version ([`head_version`]), accepted from the head's calibrated threshold up; restarting
//! with a new head rescores older pairs, since the lake says which pairs its version lacks.
//!
//! Stateless per pair. With the lake at hand, the processor reads from the beginning on every
//! assignment and skips pairs whose score of this version is already there; a worker without
//! one resumes from its group's committed offsets (a vote cast twice lands once: its id is a
//! function of version, worker and pair).

pub mod consensus;
pub mod fetch;
mod images;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use gata_contract::{
    topics::{DVA_VOTES, QUALITY_SCORES, intake_topic},
    {
        EventKind, ImageTextPair, Limits, LogPosition, LogRecord, ModelRef, QualityScore, ScoreReason, SubScores,
        Timings, Verdict,
    },
};
use gata_dva::{Clip, Head, cosine};
use gata_infra::config::DvaConfig;
use gata_lakehouse::{DeadLetter, Lake, TopicPartition};
use gata_parallel::map_ordered;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use rdkafka::producer::FutureProducer;
use uuid::Uuid;

use self::{
    fetch::{FetchFailure, Fetcher},
    images::{decode, raw},
};
use crate::{
    Context, ProcessorError, Result, dead_letters,
    poller::{self, Membership, Polled, PositionSource, Subscription},
    publisher::Publisher,
    skeleton::{self, Handler},
};

/// What the processor publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Scores, on the scores topic: this process is the only judge.
    Scores,
    /// Votes of `validator`, on the votes topic, for the consensus to combine.
    Votes {
        /// This worker's id.
        validator: String,
    },
}

/// The scorer version of `clip`'s scores.
pub fn scorer_version(clip: &Clip) -> String {
    format!("dva/{}@{}", clip.card().id, &clip.fingerprint()[..12])
}

/// The scorer version of `head`'s scores over `clip`.
pub fn head_version(clip: &Clip, head: &Head) -> String {
    format!("{}+head@{}", scorer_version(clip), &head.card().sha256[..12])
}

struct Metrics {
    engine: IntGaugeVec,
    scored: IntCounterVec,
    seconds: Histogram,
    lag: IntGaugeVec,
}

impl Metrics {
    fn register(registry: &Registry) -> gata_infra::Result<Self> {
        use gata_infra::telemetry::register;
        Ok(Self {
            engine: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("gata_dva_engine_info", "The engine and execution provider that score pairs (value 1)"),
                    &["engine", "provider", "model"],
                )?,
            )?,
            scored: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "gata_dva_scored_total",
                        "Image-text pairs scored, by verdict (undecodable images are rejects)",
                    ),
                    &["verdict"],
                )?,
            )?,
            seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("gata_dva_batch_seconds", "Time to decode, preprocess and score one batch")
                        .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )?,
            )?,
            lag: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("gata_dva_lag_records", "Image-text pairs in the log not yet scored, by partition"),
                    &["topic", "partition"],
                )?,
            )?,
        })
    }
}

/// One pair waiting for its batch.
struct Pending {
    pair: ImageTextPair,
    record: LogRecord,
}

/// The models a DVA scores with: the base CLIP model, and a head trained on it, if any.
pub struct Models {
    /// The base model (its cosine is the score).
    pub clip: Arc<Clip>,
    /// A head from `gata dva train` (its probability is a second score).
    pub head: Option<Arc<Head>>,
}

/// Runs the DVA processor with `models`, as `cfg` says, publishing `output`, until `ctx.stop`
/// is cancelled or a failure it cannot retry. Its accept threshold is `dva.threshold`, else the
/// model card's; the head's is its card's. With `lake`, it skips pairs already scored there (by
/// every version it publishes) and reads every partition from the beginning; without, it
/// resumes from its group's committed offsets. Votes are the base model's only.
pub async fn run_dva(ctx: Context, cfg: DvaConfig, output: Output, models: Models, lake: Option<Lake>) -> Result<()> {
    let Context { group, kafka, limits, registry, stop, foreground } = ctx;
    let Models { clip, head } = models;
    let head = head.filter(|_| output == Output::Scores).map(|h| (head_version(&clip, &h), h));
    let metrics = Metrics::register(&registry)?;
    metrics.engine.with_label_values(&[clip.engine(), clip.provider(), clip.card().id.as_str()]).set(1);
    let version = scorer_version(&clip);
    let (landed, positions): (HashSet<Uuid>, PositionSource) = match &lake {
        Some(lake) => {
            let mut landed = lake.scored_subjects(&version).await?;
            if let Some((head_version, _)) = &head {
                let by_head = lake.scored_subjects(head_version).await?;
                landed.retain(|id| by_head.contains(id));
            }
            (landed, poller::from_the_beginning())
        }
        None => (HashSet::new(), Arc::new(|_: &[TopicPartition]| Ok(BTreeMap::new()))),
    };
    let fetcher = Fetcher::new(&cfg, limits.max_image_bytes)?;
    let topic = match output {
        Output::Scores => QUALITY_SCORES,
        Output::Votes { .. } => DVA_VOTES,
    };
    let producer = kafka.processor_producer()?;
    let done = Arc::new(Mutex::new(BTreeMap::new()));
    let subscription = Subscription {
        name: "gata-dva-poller",
        config: kafka.consumer(&group),
        topics: vec![intake_topic(EventKind::ImageTextPair).to_string()],
        positions,
        committed: done.clone(),
        lag: metrics.lag.clone(),
        mac: kafka.record_mac().cloned(),
        membership: Membership::Group,
        tells_behind: false,
        foreground: foreground.map(|f| (f, gata_infra::foreground::Rank::Derived)),
    };
    let threshold = cfg.threshold.unwrap_or(clip.card().threshold);
    tracing::info!(model = %clip.card().id, version = %version, head = ?head.as_ref().map(|(v, _)| v), engine = clip.engine(), provider = clip.provider(), threshold, landed = landed.len(), output = ?output, "DVA joining its group");
    let queue = cfg.batch_size * 8;
    let dva = Dva {
        clip,
        head,
        version,
        cfg,
        limits,
        threshold,
        output,
        landed,
        seen: HashSet::new(),
        batch: Vec::new(),
        fetcher,
        publisher: Publisher::new(producer.clone(), topic, kafka.record_mac().cloned(), 1000, done),
        dlq: producer,
        metrics,
    };
    skeleton::run("DVA", subscription, queue, stop, dva).await
}

impl Handler for Dva {
    async fn records(&mut self, batch: Vec<Polled>) -> Result<()> {
        for polled in batch {
            self.admit(polled);
            if self.batch.len() >= self.cfg.batch_size {
                self.score_batch().await?;
            }
        }
        Ok(())
    }

    async fn revoked(&mut self, _tps: &[TopicPartition]) -> Result<()> {
        self.finish().await
    }

    /// A partial batch is scored once no pair has joined it for `batch_wait`.
    fn wake_at(&self) -> Option<tokio::time::Instant> {
        self.batch.first().map(|_| tokio::time::Instant::now() + self.cfg.batch_wait)
    }

    async fn tick(&mut self) -> Result<()> {
        self.score_batch().await
    }

    async fn finish(&mut self) -> Result<()> {
        self.score_batch().await?;
        self.publisher.drain().await
    }
}

struct Dva {
    clip: Arc<Clip>,
    /// The head and its scorer version.
    head: Option<(String, Arc<Head>)>,
    version: String,
    /// Batching, threads and image bounds (`[dva]`).
    cfg: DvaConfig,
    limits: Limits,
    /// Accept threshold on the cosine score.
    threshold: f32,
    output: Output,
    landed: HashSet<Uuid>,
    seen: HashSet<Uuid>,
    batch: Vec<Pending>,
    fetcher: Fetcher,
    publisher: Publisher,
    dlq: FutureProducer,
    metrics: Metrics,
}

/// A pair's cosine and head probability, or why its image could not be used.
type Outcome = std::result::Result<(f32, Option<f32>), FetchFailure>;

impl Dva {
    /// Queues a pair unless it is undecodable (the sink dead-letters those), a repeat, or
    /// already scored in the lake.
    fn admit(&mut self, polled: Polled) {
        let record = polled.record;
        let pair = match gata_contract::Event::parse(EventKind::ImageTextPair, &record.payload, &self.limits) {
            Ok(gata_contract::Event::ImageTextPair(pair)) => pair,
            _ => return self.publisher.skip(record.source, record.offset),
        };
        if self.landed.contains(&pair.event_id) || !self.seen.insert(pair.event_id) {
            return self.publisher.skip(record.source, record.offset);
        }
        self.batch.push(Pending { pair, record });
    }

    /// Decodes, preprocesses and scores the batch, publishing one score per pair.
    async fn score_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let started = Instant::now();
        let (clip, limits, max_pixels) = (self.clip.clone(), self.limits.clone(), self.cfg.max_pixels);
        let head = self.head.as_ref().map(|(_, h)| h.clone());
        let captions: Vec<String> = batch.iter().map(|p| p.pair.caption.clone()).collect();
        let fetcher = &self.fetcher;
        let raws = futures::future::join_all(batch.iter().map(|p| raw(fetcher, &p.pair.image))).await;
        let threads = self.cfg.threads;
        let work = tokio::task::spawn_blocking(move || -> gata_dva::Result<(Vec<Outcome>, Timings)> {
            let checked: Vec<_> = raws.into_iter().map(|raw| raw?.check(&limits)).collect();
            // Each image decoded and resized on its own, on as many threads as the encoders use.
            let prepared = map_ordered(&checked, threads, 1, |image| {
                let started = Instant::now();
                let decoded = image.as_ref().map_err(Clone::clone).and_then(|i| decode(i, max_pixels, &clip));
                let decoding = started.elapsed();
                (decoded.map(|rgb| clip.preprocessing().tensor(&rgb)), decoding, started.elapsed() - decoding)
            });
            let (mut tensors, mut texts) = (Vec::new(), Vec::new());
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(prepared.len());
            let (mut decoding, mut resizing) = (Duration::ZERO, Duration::ZERO);
            for ((tensor, decode_took, resize_took), caption) in prepared.into_iter().zip(&captions) {
                decoding += decode_took;
                resizing += resize_took;
                match tensor {
                    Ok(tensor) => {
                        tensors.push(tensor);
                        texts.push(caption.as_str());
                        outcomes.push(Ok((0.0, None)));
                    }
                    Err(reason) => outcomes.push(Err(reason)),
                }
            }
            let inferring = Instant::now();
            let image_embeds = clip.embed_images(&tensors)?;
            let text_embeds = clip.embed_texts(&texts)?;
            let probabilities = match &head {
                Some(head) => head.probabilities(&image_embeds, &text_embeds)?.into_iter().map(Some).collect(),
                None => vec![None; image_embeds.len()],
            };
            let scores = image_embeds.iter().zip(&text_embeds).map(|(i, t)| cosine(i, t)).zip(probabilities);
            for (slot, score) in outcomes.iter_mut().filter_map(|o| o.as_mut().ok()).zip(scores) {
                *slot = score;
            }
            let n = outcomes.len().max(1) as f64;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
            let timings =
                Timings { decode_ms: ms(decoding), preprocess_ms: ms(resizing), inference_ms: ms(inferring.elapsed()) };
            Ok((outcomes, timings))
        });
        let (outcomes, timings) =
            work.await.map_err(|e| ProcessorError::Poller(format!("DVA worker task failed: {e}")))??;
        self.metrics.seconds.observe(started.elapsed().as_secs_f64());
        for (pending, outcome) in batch.into_iter().zip(outcomes) {
            let (base, by_head) = match outcome {
                Ok((cos, probability)) => (
                    self.score_event(&pending, Judge::Base(cos), Vec::new(), Some(timings)),
                    self.head_judge(probability).map(|j| self.score_event(&pending, j, Vec::new(), Some(timings))),
                ),
                Err(FetchFailure { code, reason }) => {
                    dead_letter(&self.dlq, &pending, code, &reason).await?;
                    let why = ScoreReason { code: code.into(), penalty: 1.0, detail: reason };
                    let by_head =
                        self.head_judge(Some(0.0)).map(|j| self.score_event(&pending, j, vec![why.clone()], None));
                    (self.score_event(&pending, Judge::Base(-1.0), vec![why], None), by_head)
                }
            };
            self.metrics.scored.with_label_values(&[base.verdict.name()]).inc();
            // The head's first: the source offset counts as done once the last one is acknowledged.
            for published in by_head.iter().chain([&base]) {
                self.publisher.publish(published, pending.record.source.clone(), pending.record.offset).await?;
            }
        }
        Ok(())
    }

    /// The head's judgement of `probability`, when there is a head and a probability.
    fn head_judge(&self, probability: Option<f32>) -> Option<Judge<'_>> {
        let (version, head) = self.head.as_ref()?;
        Some(Judge::Head { version, head, probability: probability? })
    }

    fn score_event(
        &self,
        p: &Pending,
        judge: Judge<'_>,
        mut reasons: Vec<ScoreReason>,
        timings: Option<Timings>,
    ) -> QualityScore {
        let (version, model, score, threshold, what) = match judge {
            Judge::Head { version, head, probability } => (
                version.to_string(),
                ModelRef { id: head.card().id.clone(), sha256: head.card().sha256.clone() },
                f64::from(probability).clamp(0.0, 1.0),
                head.card().threshold,
                "the trained head's accept probability",
            ),
            Judge::Base(cos) => (
                self.version.clone(),
                ModelRef { id: self.clip.card().id.clone(), sha256: self.clip.fingerprint().to_string() },
                f64::from(cos).clamp(-1.0, 1.0),
                f64::from(self.threshold),
                "image-caption agreement",
            ),
        };
        let verdict = if reasons.is_empty() && score >= threshold { Verdict::Accept } else { Verdict::Reject };
        if reasons.is_empty() && verdict == Verdict::Reject {
            reasons.push(ScoreReason {
                code: "caption_mismatch".into(),
                penalty: 1.0,
                detail: format!("{what} {score:.3} is below the threshold {threshold:.3}"),
            });
        }
        let validator = match &self.output {
            Output::Scores => None,
            Output::Votes { validator } => Some(validator.clone()),
        };
        let score = QualityScore {
            event_id: Uuid::nil(),
            contributor_id: p.pair.contributor_id.clone(),
            subject_event_id: p.pair.event_id,
            subject_kind: EventKind::ImageTextPair,
            scorer_version: version,
            score,
            verdict,
            sub_scores: SubScores::default(),
            reasons,
            language: None,
            occurred_at: p.pair.occurred_at,
            scored_at: Utc::now(),
            source: LogPosition {
                topic: p.record.source.topic.clone(),
                partition: p.record.source.partition,
                offset: p.record.offset.0,
            },
            model: Some(model),
            timings,
            validator,
            consensus: None,
        };
        QualityScore { event_id: score.expected_id(), ..score }
    }
}

/// Which model judges a pair, and its figure.
#[derive(Debug, Clone, Copy)]
enum Judge<'a> {
    /// The base model's cosine, in [-1, 1].
    Base(f32),
    /// A head's accept probability, in [0, 1], under its scorer version.
    Head {
        /// The head's scorer version.
        version: &'a str,
        /// The head.
        head: &'a Head,
        /// Its probability.
        probability: f32,
    },
}

/// Sends the pair's record to the dead-letter topic with `reason`.
async fn dead_letter(dlq: &FutureProducer, p: &Pending, code: &str, reason: &str) -> Result<()> {
    tracing::warn!(source = %p.record.source, offset = %p.record.offset, code, %reason, "DVA cannot use the image; dead-lettering");
    let letter = DeadLetter { record: p.record.clone(), reason: format!("dva: {code}: {reason}") };
    dead_letters::send(dlq, &letter).await
}
