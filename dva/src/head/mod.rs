//! A filter trained from human labels on top of the CLIP embeddings, as DFN does: a small head
//! (logistic regression on the image embedding, the text embedding, their product and the
//! cosine) that says how likely a reviewer is to accept a pair.
//!
//! `gata dva train` fits it ([`train`]) and writes a head directory: `head.onnx` ([`onnx`]) and
//! `head.json` ([`HeadCard`]: the base model it belongs to, the hash of its training set, label
//! counts, held-out measures and the threshold calibrated for a target precision). The DVA
//! opens it beside its base model ([`Head::open`]) and publishes its probabilities as a scorer
//! version of their own, next to the base cosine.

pub mod fit;
pub mod onnx;
pub mod train;

use serde::{Deserialize, Serialize};

use crate::{
    Clip, DvaError, Engine, ModelSource, Result,
    engine::{Encoder, Input},
};

/// The base model a head was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    /// Its card's id.
    pub id: String,
    /// Its encoders' fingerprint ([`Clip::fingerprint`]).
    pub fingerprint: String,
}

/// Labels per split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelCounts {
    /// Pairs labelled accept.
    pub accept: usize,
    /// Pairs labelled reject.
    pub reject: usize,
    /// Contributors the pairs come from.
    pub contributors: usize,
}

/// How one scorer does on the held-out pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measures {
    /// ROC AUC against the human labels.
    pub auc: Option<f64>,
    /// Precision where recall first reaches the card's `at_recall`.
    pub precision_at_recall: Option<f64>,
    /// The threshold calibrated (on the calibration split) for the target precision.
    pub threshold: Option<f64>,
    /// Precision at that threshold, on the held-out split.
    pub precision: Option<f64>,
    /// Recall at that threshold, on the held-out split.
    pub recall: Option<f64>,
}

/// How the head was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Where the labels came from (`lake`, or a labelled set's directory name).
    pub source: String,
    /// SHA-256 over every labelled pair in order (pair id, contributor, decision, caption, image hash).
    pub set_sha256: String,
    /// Seed of the split by contributor.
    pub seed: u64,
    /// L2 strength kept (the best on the calibration split).
    pub l2: f64,
    /// Newton steps taken.
    pub steps: usize,
    /// Labels the head was fitted on.
    pub train: LabelCounts,
    /// Labels the thresholds were calibrated on.
    pub calibration: LabelCounts,
    /// Labels held out for the measures.
    pub test: LabelCounts,
}

/// `head.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadCard {
    /// The head's id (`<base id>+head`).
    pub id: String,
    /// The base model.
    pub base: BaseRef,
    /// ONNX file, relative to the head directory.
    pub file: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Embedding size it takes.
    pub embedding_dim: usize,
    /// Accept threshold on its probability, calibrated for `target_precision`.
    pub threshold: f64,
    /// The precision the thresholds were calibrated for.
    pub target_precision: f64,
    /// The recall `precision_at_recall` is read at.
    pub at_recall: f64,
    /// How it was trained.
    pub training: Training,
    /// The base cosine on the held-out pairs.
    pub base_measures: Measures,
    /// This head on the held-out pairs.
    pub head_measures: Measures,
}

/// A head opened beside its base model.
pub struct Head {
    card: HeadCard,
    graph: Encoder,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head").field("id", &self.card.id).field("sha256", &self.card.sha256).finish()
    }
}

impl Head {
    /// Opens the head in `dir` on `engine`, checking that it was trained on `clip` and that
    /// its graph is the one its card hashes.
    pub fn open(engine: Engine, dir: &std::path::Path, clip: &Clip) -> Result<Head> {
        let source = ModelSource::Dir(dir.to_path_buf());
        let card: HeadCard = serde_json::from_slice(&source.read("head.json")?)
            .map_err(|e| DvaError::Model(format!("{source}/head.json: {e}")))?;
        if card.base.fingerprint != clip.fingerprint() || card.embedding_dim != clip.card().embedding_dim {
            return Err(DvaError::Model(format!(
                "the head in {source} was trained on {} ({}), not on the model opened ({}, {})",
                card.base.id,
                card.base.fingerprint,
                clip.card().id,
                clip.fingerprint()
            )));
        }
        let bytes = source.read_checked(&card.file, &card.sha256)?;
        let (graph, _) = Encoder::load(engine, &card.file, &bytes, 1)?;
        Ok(Head { card, graph })
    }

    /// The card.
    pub fn card(&self) -> &HeadCard {
        &self.card
    }

    /// The probability that a reviewer accepts each pair, from the pairs' L2-normalised
    /// embeddings.
    pub fn probabilities(&self, images: &[Vec<f32>], texts: &[Vec<f32>]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let dim = self.card.embedding_dim;
        let tensor = |rows: &[Vec<f32>]| Input::F32(vec![rows.len(), dim], rows.iter().flatten().copied().collect());
        let inputs = vec![(onnx::IMAGE_INPUT, tensor(images)), (onnx::TEXT_INPUT, tensor(texts))];
        let (shape, data) = self.graph.run(inputs, onnx::OUTPUT)?;
        if shape != [images.len(), 1] {
            return Err(DvaError::Model(format!("the head answered shape {shape:?}; expected [{}, 1]", images.len())));
        }
        Ok(data)
    }
}

/// Writes `card` and its graph `onnx` into `dir` (created if missing).
pub fn write(dir: &std::path::Path, card: &HeadCard, onnx: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(&card.file), onnx)?;
    let mut json = serde_json::to_vec_pretty(card).map_err(std::io::Error::other)?;
    json.push(b'\n');
    std::fs::write(dir.join("head.json"), json)
}
