//! `gata dva train`: fits the DVA's head on human labels and writes it beside the base model.
//!
//! Labels come from the lake (`review_labels`: each reviewer's newest label of a pair, the
//! majority per pair, ties left out; the pair's caption and inline image from
//! `image_text_pairs`), or from a labelled set on disk (`--set DIR`: `labels.json` and its
//! images, as `models/tiny-clip/labelled/` ships). Each pair is embedded by the configured base
//! model, then [`gata_dva::head::train`] splits contributors, fits, calibrates and measures,
//! streaming a line per step. The head directory it writes is what `dva.head` names.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gata_dva::{
    Clip,
    head::{
        self, BaseRef,
        train::{Example, Settings},
    },
};
use gata_infra::config::GataConfig;
use gata_lakehouse::{Lake, TableId, deltalake::datafusion::prelude::SessionContext};
use serde::Deserialize;

use crate::{Flags, resolve};

/// `gata dva` arguments.
#[derive(Debug, Args)]
pub struct DvaArgs {
    #[command(subcommand)]
    cmd: DvaCmd,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
enum DvaCmd {
    /// Train the DVA's head on human labels and write it to a directory (`dva.head`).
    Train(TrainArgs),
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Where to write `head.onnx` and `head.json`.
    #[arg(long)]
    out: PathBuf,
    /// A labelled set on disk (`labels.json` and images) instead of the lake's review labels.
    #[arg(long)]
    set: Option<PathBuf>,
    /// Seed of the split by contributor.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// L2 strengths on the standardised weights to try (comma-separated); the one whose head
    /// ranks the calibration split best is kept.
    #[arg(long, value_delimiter = ',', default_values_t = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])]
    l2: Vec<f64>,
    /// Most Newton steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Precision the accept thresholds are calibrated for.
    #[arg(long, default_value_t = 0.9)]
    target_precision: f64,
    /// Recall at which the held-out precision is reported.
    #[arg(long, default_value_t = 0.8)]
    at_recall: f64,
}

/// One labelled pair before its image is read.
#[derive(Clone)]
struct Labelled {
    key: String,
    contributor: String,
    caption: String,
    accept: bool,
}

/// Where the labelled pairs and their images come from.
enum Source {
    /// A labelled set on disk: its images directory, each pair's file name by key.
    Set { images: PathBuf, files: HashMap<String, String> },
    /// The lake's review labels; images read from `image_text_pairs` a chunk at a time.
    Lake(SessionContext),
}

/// Pairs embedded per step: only this many images are in memory at once.
const CHUNK: usize = 64;

/// Runs `gata dva …`.
pub async fn run(cfg: GataConfig, args: DvaArgs) -> anyhow::Result<()> {
    let DvaCmd::Train(train) = args.cmd;
    if !(0.0..=1.0).contains(&train.target_precision)
        || !(0.0..=1.0).contains(&train.at_recall)
        || train.l2.iter().any(|l| l.is_nan() || *l <= 0.0)
    {
        bail!("--target-precision and --at-recall are shares in [0, 1], --l2 is above 0");
    }
    let (pairs, source, name) = match &train.set {
        Some(dir) => {
            let (pairs, source) = from_set(dir)?;
            (pairs, source, format!("set:{}", dir.file_name().unwrap_or_default().to_string_lossy()))
        }
        None => {
            let (pairs, source) = from_lake(&cfg).await?;
            (pairs, source, "lake".to_string())
        }
    };
    println!("{} labelled pairs from {name}", pairs.len());
    let clip = resolve::dva_model(&cfg.dva).await?;
    let max_pixels = cfg.dva.max_pixels;
    let mut examples = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        let images = source.images(chunk).await?;
        let (clip, chunk) = (clip.clone(), chunk.iter().map(Labelled::clone).collect::<Vec<_>>());
        examples.extend(tokio::task::spawn_blocking(move || embed(&clip, chunk, images, max_pixels)).await??);
        println!("embedded {} pairs", examples.len());
    }
    let source = name;
    let settings = Settings {
        source,
        seed: train.seed,
        l2: train.l2.clone(),
        steps: train.steps,
        target_precision: train.target_precision,
        at_recall: train.at_recall,
    };
    let base = BaseRef { id: clip.card().id.clone(), fingerprint: clip.fingerprint().to_string() };
    let (card, graph) =
        head::train::train(base, clip.card().embedding_dim, examples, &settings, |line| println!("{line}"))?;
    head::write(&train.out, &card, &graph).with_context(|| format!("writing the head to {}", train.out.display()))?;
    println!(
        "wrote {} (sha256 {}, threshold {:.4}); set dva.head = {:?} to score with it",
        train.out.join(&card.file).display(),
        card.sha256,
        card.threshold,
        train.out.display().to_string()
    );
    Ok(())
}

/// `labels.json` of a labelled set.
#[derive(Deserialize)]
struct SetRow {
    key: String,
    contributor_id: String,
    image: String,
    caption: String,
    accept: bool,
}

fn from_set(dir: &Path) -> anyhow::Result<(Vec<Labelled>, Source)> {
    let path = dir.join("labels.json");
    let rows: Vec<SetRow> =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("{}", path.display()))?)
            .with_context(|| format!("{} is not a list of labelled pairs", path.display()))?;
    let files = rows.iter().map(|r| (r.key.clone(), r.image.clone())).collect();
    let pairs = rows
        .into_iter()
        .map(|r| Labelled { key: r.key, contributor: r.contributor_id, caption: r.caption, accept: r.accept })
        .collect();
    Ok((pairs, Source::Set { images: dir.join("images"), files }))
}

/// Each pair's majority among its reviewers' newest labels (ties left out), with its caption;
/// pairs sent by URL (no image in the lake) are left out.
const MAJORITY: &str = "SELECT p.event_id, p.contributor_id, p.caption, v.accepts * 2 > v.labels AS accept
FROM votes v JOIN image_text_pairs p ON p.event_id = v.subject_event_id
WHERE v.accepts * 2 <> v.labels AND p.image IS NOT NULL ORDER BY p.event_id";

#[derive(Deserialize)]
struct LakeRow {
    event_id: String,
    contributor_id: String,
    caption: String,
    accept: bool,
}

#[derive(Deserialize)]
struct ImageRow {
    event_id: String,
    image_hex: String,
}

async fn from_lake(cfg: &GataConfig) -> anyhow::Result<(Vec<Labelled>, Source)> {
    let lake = resolve::lake(cfg)?;
    let ctx = lake.session(&[TableId::ReviewLabels, TableId::ImageTextPairs]).await?;
    let sql = format!("{}\n{MAJORITY}", crate::labelling::LABEL_VOTES);
    let rows: Vec<LakeRow> = Lake::rows(&ctx, TableId::ReviewLabels, &sql).await?;
    let pairs = rows
        .into_iter()
        .map(|r| Labelled { key: r.event_id, contributor: r.contributor_id, caption: r.caption, accept: r.accept })
        .collect();
    Ok((pairs, Source::Lake(ctx)))
}

impl Source {
    /// The image bytes of `pairs`, in their order.
    async fn images(&self, pairs: &[Labelled]) -> anyhow::Result<Vec<Vec<u8>>> {
        match self {
            Source::Set { images, files } => pairs
                .iter()
                .map(|p| {
                    let path = images.join(&files[&p.key]);
                    std::fs::read(&path).with_context(|| format!("{}", path.display()))
                })
                .collect(),
            Source::Lake(ctx) => {
                // Keys are event ids the lake returned (UUIDs): safe to inline.
                let ids: Vec<String> = pairs.iter().map(|p| format!("'{}'", p.key.replace('\'', ""))).collect();
                let sql = format!(
                    "SELECT event_id, encode(image, 'hex') AS image_hex FROM image_text_pairs WHERE event_id IN ({})",
                    ids.join(",")
                );
                let rows: Vec<ImageRow> = Lake::rows(ctx, TableId::ImageTextPairs, &sql).await?;
                let mut by_id: HashMap<String, String> = rows.into_iter().map(|r| (r.event_id, r.image_hex)).collect();
                pairs
                    .iter()
                    .map(|p| {
                        let hex =
                            by_id.remove(&p.key).with_context(|| format!("pair {}: no image in the lake", p.key))?;
                        hex::decode(hex).with_context(|| format!("pair {}: image bytes", p.key))
                    })
                    .collect()
            }
        }
    }
}

/// Embeds `pairs` (with their `images`, in order) with `clip`; pairs whose image cannot be
/// decoded are left out, with a line saying so.
fn embed(clip: &Clip, pairs: Vec<Labelled>, images: Vec<Vec<u8>>, max_pixels: u64) -> anyhow::Result<Vec<Example>> {
    let mut kept = Vec::new();
    let mut tensors = Vec::new();
    for (pair, image) in pairs.into_iter().zip(images) {
        match gata_dva::decode(&image, max_pixels) {
            Ok(rgb) => {
                tensors.push(clip.preprocessing().tensor(&rgb));
                kept.push((pair, image));
            }
            Err(e) => println!("left out {}: {e}", pair.key),
        }
    }
    let captions: Vec<&str> = kept.iter().map(|(p, _)| p.caption.as_str()).collect();
    let image_embeds = clip.embed_images(&tensors)?;
    let text_embeds = clip.embed_texts(&captions)?;
    Ok(kept
        .iter()
        .zip(image_embeds)
        .zip(text_embeds)
        .map(|(((pair, bytes), image), text)| Example {
            key: pair.key.clone(),
            contributor: pair.contributor.clone(),
            accept: pair.accept,
            content: Example::content_of(&pair.caption, bytes),
            image,
            text,
        })
        .collect())
}
