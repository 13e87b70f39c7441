//! Training a head from labelled pairs: the split by contributor, the fit, the thresholds
//! calibrated for a target precision, and the held-out measures of the base cosine and the head.
//!
//! Contributors, not rows, are split (by a seeded hash of their id): 60% train the head, 20%
//! calibrate both thresholds, 20% are held out for the measures, so no contributor's style
//! is seen both in training and in the measures. The L2 strength is chosen on the calibration
//! split too, from the ones given.

use sha2::{Digest, Sha256};

use super::{BaseRef, HeadCard, LabelCounts, Measures, Training, fit, onnx};
use crate::{DvaError, Result};

/// One labelled pair, embedded by the base model.
#[derive(Debug, Clone)]
pub struct Example {
    /// The pair's id (its event id, or its name in a labelled set).
    pub key: String,
    /// Its contributor (the unit of the split).
    pub contributor: String,
    /// The human decision.
    pub accept: bool,
    /// SHA-256 of what was labelled: the caption and the image bytes.
    pub content: [u8; 32],
    /// L2-normalised image embedding.
    pub image: Vec<f32>,
    /// L2-normalised text embedding.
    pub text: Vec<f32>,
}

impl Example {
    /// The `content` hash of a pair with `caption` and `image` bytes.
    pub fn content_of(caption: &str, image: &[u8]) -> [u8; 32] {
        let mut content = Sha256::new();
        content.update(caption.as_bytes());
        content.update([0]);
        content.update(image);
        content.finalize().into()
    }
}

/// How to train.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the labels came from, for the card.
    pub source: String,
    /// Seed of the split.
    pub seed: u64,
    /// L2 strengths to try: the one whose head ranks the calibration split best is kept.
    pub l2: Vec<f64>,
    /// Most Newton steps.
    pub steps: usize,
    /// Precision the thresholds are calibrated for.
    pub target_precision: f64,
    /// Recall at which precision is reported.
    pub at_recall: f64,
}

/// Which part of the data a contributor's pairs serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Fit the head.
    Train,
    /// Calibrate the thresholds.
    Calibration,
    /// Measure.
    Test,
}

/// The split of `contributor` under `seed`.
pub fn split_of(contributor: &str, seed: u64) -> Split {
    let hash = Sha256::digest(format!("{seed}/{contributor}"));
    match u64::from_be_bytes(hash[..8].try_into().unwrap_or_default()) % 10 {
        0..=5 => Split::Train,
        6 | 7 => Split::Calibration,
        _ => Split::Test,
    }
}

fn counts(examples: &[&Example]) -> LabelCounts {
    let mut contributors: Vec<&str> = examples.iter().map(|e| e.contributor.as_str()).collect();
    contributors.sort_unstable();
    contributors.dedup();
    LabelCounts {
        accept: examples.iter().filter(|e| e.accept).count(),
        reject: examples.iter().filter(|e| !e.accept).count(),
        contributors: contributors.len(),
    }
}

fn cosine(e: &Example) -> f64 {
    e.image.iter().zip(&e.text).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
}

/// The measures of `score` on `test`, with the threshold calibrated on `calibration`.
fn measures(score: impl Fn(&Example) -> f64, calibration: &[&Example], test: &[&Example], s: &Settings) -> Measures {
    let scored = |set: &[&Example]| -> (Vec<f64>, Vec<bool>) { set.iter().map(|e| (score(e), e.accept)).unzip() };
    let (cal_scores, cal_labels) = scored(calibration);
    let (scores, labels) = scored(test);
    let threshold = fit::threshold_for_precision(&cal_scores, &cal_labels, s.target_precision);
    let (precision, recall) = threshold.map(|t| fit::precision_recall(&scores, &labels, t)).unzip();
    Measures {
        auc: fit::auc(&scores, &labels),
        precision_at_recall: fit::precision_at_recall(&scores, &labels, s.at_recall).map(|(_, p)| p),
        threshold,
        precision,
        recall,
    }
}

/// Trains a head over `base`'s `dim`-sized embeddings from `examples`; `progress` gets a line
/// per step. Returns the card and the ONNX graph.
pub fn train(
    base: BaseRef,
    dim: usize,
    mut examples: Vec<Example>,
    s: &Settings,
    mut progress: impl FnMut(String),
) -> Result<(HeadCard, Vec<u8>)> {
    examples.sort_by(|a, b| a.key.cmp(&b.key));
    let mut set = Sha256::new();
    for e in &examples {
        if e.image.len() != dim || e.text.len() != dim {
            return Err(DvaError::Model(format!("pair {}: embeddings are not {dim} long", e.key)));
        }
        set.update(format!("{}\n{}\n{}\n", e.key, e.contributor, e.accept));
        set.update(e.content);
    }
    let part = |want: Split| -> Vec<&Example> {
        examples.iter().filter(|e| split_of(&e.contributor, s.seed) == want).collect()
    };
    let (train, calibration, test) = (part(Split::Train), part(Split::Calibration), part(Split::Test));
    let (train_counts, calibration_counts, test_counts) = (counts(&train), counts(&calibration), counts(&test));
    for (name, c) in [("train", train_counts), ("calibration", calibration_counts), ("test", test_counts)] {
        progress(format!(
            "{name}: {} pairs ({} accepted, {} rejected) from {} contributors",
            c.accept + c.reject,
            c.accept,
            c.reject,
            c.contributors
        ));
        if c.accept == 0 || c.reject == 0 {
            return Err(DvaError::Model(format!(
                "the {name} split needs accepted and rejected pairs; label more pairs from more contributors"
            )));
        }
    }
    let x: Vec<Vec<f64>> = train.iter().map(|e| fit::features(&e.image, &e.text)).collect();
    let y: Vec<bool> = train.iter().map(|e| e.accept).collect();
    let (cal_x, cal_y): (Vec<Vec<f64>>, Vec<bool>) =
        calibration.iter().map(|e| (fit::features(&e.image, &e.text), e.accept)).unzip();
    // Each strength fitted on train, ranked by its AUC on the calibration split.
    let mut best: Option<(f64, f64, usize, fit::Logistic)> = None;
    for l2 in &s.l2 {
        let mut steps = 0;
        let model = fit::fit(&x, &y, *l2, s.steps, |step| {
            steps = step.step;
            progress(format!(
                "l2 {l2}: step {}: loss {:.5}, largest weight change {:.2e}",
                step.step, step.loss, step.change
            ));
        })?;
        let scores: Vec<f64> = cal_x.iter().map(|r| model.probability(r)).collect();
        let auc = fit::auc(&scores, &cal_y).unwrap_or(0.5);
        progress(format!("l2 {l2}: calibration AUC {auc:.4}"));
        if best.as_ref().is_none_or(|(_, b, ..)| auc > *b) {
            best = Some((*l2, auc, steps, model));
        }
    }
    let (l2, _, steps, model) = best.ok_or_else(|| DvaError::Model("no L2 strength to try".into()))?;
    progress(format!("kept l2 {l2}"));
    // What the graph computes: the weights as f32.
    let weights: Vec<f32> = model.weights.iter().map(|w| *w as f32).collect();
    let bias = model.bias as f32;
    let rounded = fit::Logistic { weights: weights.iter().map(|w| f64::from(*w)).collect(), bias: f64::from(bias) };
    let head = |e: &Example| rounded.probability(&fit::features(&e.image, &e.text));
    let base_measures = measures(cosine, &calibration, &test, s);
    let head_measures = measures(head, &calibration, &test, s);
    let threshold = head_measures.threshold.ok_or_else(|| {
        DvaError::Model(format!("no threshold reaches precision {} on the calibration split", s.target_precision))
    })?;
    progress(format!("held out, base cosine: {}", describe(&base_measures, s)));
    progress(format!("held out, trained head: {}", describe(&head_measures, s)));
    let graph = onnx::head_graph(dim, &weights, bias);
    let card = HeadCard {
        id: format!("{}+head", base.id),
        base,
        file: "head.onnx".into(),
        sha256: hex::encode(Sha256::digest(&graph)),
        embedding_dim: dim,
        threshold,
        target_precision: s.target_precision,
        at_recall: s.at_recall,
        training: Training {
            source: s.source.clone(),
            set_sha256: hex::encode(set.finalize()),
            seed: s.seed,
            l2,
            steps,
            train: train_counts,
            calibration: calibration_counts,
            test: test_counts,
        },
        base_measures,
        head_measures,
    };
    Ok((card, graph))
}

fn describe(m: &Measures, s: &Settings) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    format!(
        "AUC {}, precision at recall {} {}, threshold {} for precision {} gives precision {} recall {}",
        f(m.auc),
        s.at_recall,
        f(m.precision_at_recall),
        f(m.threshold),
        s.target_precision,
        f(m.precision),
        f(m.recall)
    )
}
