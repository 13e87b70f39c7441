//! `gata dva train`: fits the DVA's head on human labels and writes it beside the base model.
//!
//! Labels come from the lake (`review_labels`: each reviewer's newest label of a pair, the
//! majority per pair, ties left out; the pair's caption and inline image from
//! `image_text_pairs`), or from a labelled set on disk (`--set DIR`: `labels.json` and its
//! images, as `models/tiny-clip/labelled/` ships). Each pair is embedded by the configured base
//! model, then [`gata_dva::head::train`] splits contributors, fits, calibrates and measures,
//! streaming a line per step. The head directory it writes is what `dva.head` names.

use std::path::{Path, PathBuf};

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
use gata_lakehouse::TableId;
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

/// One labelled pair before embedding.
struct Labelled {
    key: String,
    contributor: String,
    caption: String,
    image: Vec<u8>,
    accept: bool,
}

/// Runs `gata dva …`.
pub async fn run(cfg: GataConfig, args: DvaArgs) -> anyhow::Result<()> {
    let DvaCmd::Train(train) = args.cmd;
    if !(0.0..=1.0).contains(&train.target_precision)
        || !(0.0..=1.0).contains(&train.at_recall)
        || train.l2.iter().any(|l| l.is_nan() || *l <= 0.0)
    {
        bail!("--target-precision and --at-recall are shares in [0, 1], --l2 is above 0");
    }
    let (pairs, source) = match &train.set {
        Some(dir) => (from_set(dir)?, format!("set:{}", dir.file_name().unwrap_or_default().to_string_lossy())),
        None => (from_lake(&cfg).await?, "lake".to_string()),
    };
    println!("{} labelled pairs from {source}", pairs.len());
    let clip = resolve::dva_model(&cfg.dva).await?;
    let max_pixels = cfg.dva.max_pixels;
    let examples = tokio::task::spawn_blocking(move || embed(&clip, pairs, max_pixels).map(|e| (clip, e))).await??;
    let (clip, examples) = examples;
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

fn from_set(dir: &Path) -> anyhow::Result<Vec<Labelled>> {
    let path = dir.join("labels.json");
    let rows: Vec<SetRow> =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("{}", path.display()))?)
            .with_context(|| format!("{} is not a list of labelled pairs", path.display()))?;
    rows.into_iter()
        .map(|r| {
            let image_path = dir.join("images").join(&r.image);
            let image = std::fs::read(&image_path).with_context(|| format!("{}", image_path.display()))?;
            Ok(Labelled { key: r.key, contributor: r.contributor_id, caption: r.caption, image, accept: r.accept })
        })
        .collect()
}

/// Each pair's majority among its reviewers' newest labels (ties left out), with its caption
/// and inline image.
const LAKE_LABELS_SQL: &str = "WITH newest AS (
  SELECT subject_event_id, decision FROM (SELECT subject_event_id, reviewer, decision, ROW_NUMBER() OVER
    (PARTITION BY subject_event_id, reviewer ORDER BY labelled_at DESC, kafka_offset DESC) AS n FROM review_labels)
  WHERE n = 1),
votes AS (SELECT subject_event_id, SUM(CASE WHEN decision = 'accept' THEN 1 ELSE 0 END) AS accepts, COUNT(*) AS labels
  FROM newest GROUP BY subject_event_id)
SELECT p.event_id, p.contributor_id, p.caption, encode(p.image, 'hex') AS image_hex, v.accepts * 2 > v.labels AS accept
FROM votes v JOIN image_text_pairs p ON p.event_id = v.subject_event_id
WHERE v.accepts * 2 <> v.labels AND p.image IS NOT NULL ORDER BY p.event_id";

#[derive(Deserialize)]
struct LakeRow {
    event_id: String,
    contributor_id: String,
    caption: String,
    image_hex: String,
    accept: bool,
}

async fn from_lake(cfg: &GataConfig) -> anyhow::Result<Vec<Labelled>> {
    let lake = resolve::lake(cfg)?;
    let ctx = lake.session(&[TableId::ReviewLabels, TableId::ImageTextPairs]).await?;
    let rows: Vec<LakeRow> = gata_lakehouse::Lake::rows(&ctx, TableId::ReviewLabels, LAKE_LABELS_SQL).await?;
    rows.into_iter()
        .map(|r| {
            let image = hex::decode(&r.image_hex).with_context(|| format!("pair {}: image bytes", r.event_id))?;
            Ok(Labelled { key: r.event_id, contributor: r.contributor_id, caption: r.caption, image, accept: r.accept })
        })
        .collect()
}

/// Embeds every pair with `clip`, 32 at a time; pairs whose image cannot be decoded are left
/// out, with a line saying so.
fn embed(clip: &Clip, pairs: Vec<Labelled>, max_pixels: u64) -> anyhow::Result<Vec<Example>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(32) {
        let mut kept = Vec::new();
        let mut tensors = Vec::new();
        for pair in chunk {
            match gata_dva::decode(&pair.image, max_pixels) {
                Ok(rgb) => {
                    tensors.push(clip.preprocessing().tensor(&rgb));
                    kept.push(pair);
                }
                Err(e) => println!("left out {}: {e}", pair.key),
            }
        }
        let captions: Vec<&str> = kept.iter().map(|p| p.caption.as_str()).collect();
        let images = clip.embed_images(&tensors)?;
        let texts = clip.embed_texts(&captions)?;
        for ((pair, image), text) in kept.into_iter().zip(images).zip(texts) {
            out.push(Example {
                key: pair.key.clone(),
                contributor: pair.contributor.clone(),
                accept: pair.accept,
                content: Example::content_of(&pair.caption, &pair.image),
                image,
                text,
            });
        }
        println!("embedded {} pairs", out.len());
    }
    Ok(out)
}
