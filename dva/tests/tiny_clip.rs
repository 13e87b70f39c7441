#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! The shipped model through gata's own pipeline (decode → CLIP preprocessing → tokenizer →
//! ONNX Runtime): matching captions outscore mismatched ones on the held-out scenes the
//! training script wrote, and each score agrees with the one the script computed in Python
//! (Pillow + onnxruntime) for the same file.

use std::path::PathBuf;

use gata_dva::{Clip, Provider, cosine, decode, discover_runtime, load_runtime};
use serde::Deserialize;

#[derive(Deserialize)]
struct Heldout {
    image: String,
    caption: String,
    mismatched: String,
    score: f32,
    mismatched_score: f32,
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

#[test]
fn matching_captions_outscore_mismatched_ones() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/tiny-clip");
    let env = load_runtime(&discover_runtime().unwrap()).unwrap();
    let clip = Clip::open(env, &dir, Provider::Cpu, 2).unwrap();
    assert_eq!(clip.provider(), "CPUExecutionProvider");
    let rows: Vec<Heldout> = serde_json::from_slice(&std::fs::read(dir.join("heldout.json")).unwrap()).unwrap();
    assert!(rows.len() >= 100);

    let tensors: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| {
            clip.preprocessing()
                .tensor(&decode(&std::fs::read(dir.join("heldout").join(&r.image)).unwrap(), 1 << 24).unwrap())
        })
        .collect();
    let mut images = Vec::new();
    for batch in tensors.chunks(16) {
        images.extend(clip.embed_images(batch).unwrap());
    }
    let captions: Vec<&str> = rows.iter().map(|r| r.caption.as_str()).collect();
    let mismatched: Vec<&str> = rows.iter().map(|r| r.mismatched.as_str()).collect();
    let (texts, others) = (clip.embed_texts(&captions).unwrap(), clip.embed_texts(&mismatched).unwrap());
    let pos: Vec<f32> = images.iter().zip(&texts).map(|(i, t)| cosine(i, t)).collect();
    let neg: Vec<f32> = images.iter().zip(&others).map(|(i, t)| cosine(i, t)).collect();

    let worst = rows
        .iter()
        .zip(pos.iter().zip(&neg))
        .map(|(r, (p, n))| (r.score - p).abs().max((r.mismatched_score - n).abs()))
        .fold(0.0, f32::max);
    let area = auc(&pos, &neg);
    println!(
        "tiny-clip held out: {} pairs, AUC {area:.4}, largest |gata − reference| score difference {worst:.4}",
        rows.len()
    );
    assert!(area >= 0.9, "AUC {area}");
    assert!(worst < 0.025, "gata's pipeline and the Python reference disagree by {worst}");
}
