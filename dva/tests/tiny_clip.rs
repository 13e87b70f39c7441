#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The shipped model through gata's own pipeline (decode → CLIP preprocessing → tokenizer →
//! encoders): matching captions outscore mismatched ones on the held-out scenes the training
//! script wrote, each score agrees with the one the script computed in Python (Pillow +
//! onnxruntime) for the same file, and both engines (ONNX Runtime and tract) give the same
//! scores.

use std::path::PathBuf;

use gata_dva::{Clip, Engine, ModelSource, Provider, cosine, decode, load_runtime};
use serde::Deserialize;

#[derive(Deserialize)]
struct Heldout {
    image: String,
    caption: String,
    mismatched: String,
    score: f32,
    mismatched_score: f32,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-clip")
}

/// Probability that a matching pair outscores a mismatched one (ties count half).
fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    let mut wins = 0.0;
    for p in pos {
        for n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// The held-out scenes scored by `clip`: (matching, mismatched) scores, and the scenes.
fn score_heldout(clip: &Clip) -> (Vec<f32>, Vec<f32>, Vec<Heldout>) {
    let rows: Vec<Heldout> = serde_json::from_slice(&std::fs::read(dir().join("heldout.json")).unwrap()).unwrap();
    assert!(rows.len() >= 100);
    let tensors: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| {
            clip.preprocessing()
                .tensor(&decode(&std::fs::read(dir().join("heldout").join(&r.image)).unwrap(), 1 << 24).unwrap())
        })
        .collect();
    let mut images = Vec::new();
    for batch in tensors.chunks(16) {
        images.extend(clip.embed_images(batch).unwrap());
    }
    let captions: Vec<&str> = rows.iter().map(|r| r.caption.as_str()).collect();
    let mismatched: Vec<&str> = rows.iter().map(|r| r.mismatched.as_str()).collect();
    let (texts, others) = (clip.embed_texts(&captions).unwrap(), clip.embed_texts(&mismatched).unwrap());
    let pos = images.iter().zip(&texts).map(|(i, t)| cosine(i, t)).collect();
    let neg = images.iter().zip(&others).map(|(i, t)| cosine(i, t)).collect();
    (pos, neg, rows)
}

/// Checks `clip`'s held-out scores against the Python reference; returns them.
fn agrees_with_the_reference(clip: &Clip) -> (Vec<f32>, Vec<f32>) {
    let (pos, neg, rows) = score_heldout(clip);
    let worst = rows
        .iter()
        .zip(pos.iter().zip(&neg))
        .map(|(r, (p, n))| (r.score - p).abs().max((r.mismatched_score - n).abs()))
        .fold(0.0, f32::max);
    let area = auc(&pos, &neg);
    println!(
        "tiny-clip held out on {}: {} pairs, AUC {area:.4}, largest |gata − reference| score difference {worst:.4}",
        clip.engine(),
        rows.len()
    );
    assert!(area >= 0.9, "AUC {area}");
    assert!(worst < 0.025, "gata's pipeline and the Python reference disagree by {worst}");
    (pos, neg)
}

#[test]
fn tract_scores_the_shipped_model_without_onnx_runtime() {
    let clip = Clip::open(Engine::Tract, &ModelSource::Shipped, 1).unwrap();
    assert_eq!((clip.engine(), clip.provider()), ("tract", "tract-cpu"));
    agrees_with_the_reference(&clip);
}

#[test]
fn both_engines_give_the_same_scores() {
    let env = load_runtime(&gata_infra::host::onnxruntime_library(None).unwrap()).unwrap();
    let ort = Clip::open(Engine::OnnxRuntime { env, provider: Provider::Cpu }, &ModelSource::Dir(dir()), 2).unwrap();
    assert_eq!((ort.engine(), ort.provider()), ("onnxruntime", "CPUExecutionProvider"));
    let tract = Clip::open(Engine::Tract, &ModelSource::Shipped, 1).unwrap();
    assert_eq!(ort.fingerprint(), tract.fingerprint(), "one model, two engines");
    let (ort_pos, ort_neg) = agrees_with_the_reference(&ort);
    let (tract_pos, tract_neg) = agrees_with_the_reference(&tract);
    let worst = ort_pos.iter().chain(&ort_neg).zip(tract_pos.iter().chain(&tract_neg)).map(|(a, b)| (a - b).abs());
    let worst = worst.fold(0.0, f32::max);
    println!("onnxruntime vs tract on {} scores: largest difference {worst:.2e}", ort_pos.len() * 2);
    assert!(worst <= 1e-4, "the engines disagree by {worst}");
}
